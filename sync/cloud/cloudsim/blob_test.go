package cloudsim

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// getBlob fetches a blob from a container URL with its SAS, with an optional x-ms-range.
func getBlob(t *testing.T, hc *http.Client, containerURL, name, rng string) (int, []byte) {
	t.Helper()
	u, err := url.Parse(containerURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path += "/" + name
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	if rng != "" {
		req.Header.Set("x-ms-range", rng)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The built-in Blob endpoint serves, for every media manifest, a blob of the manifest's size and
// MD5, whole and in ranges, to whoever holds the SAS of the remote configuration.
func TestBuiltInBlobsMatchManifests(t *testing.T) {
	h := newHarness(t, Options{Products: 4000, Media: MediaOptions{BuiltIn: true}})
	var rc cloudapi.RemoteConfig
	if status := h.callJSON(http.MethodGet, "/v1/config", nil, &rc); status != 200 || !strings.Contains(rc.Media.ContainerURL, "sig=") {
		t.Fatalf("config: %d %+v", status, rc)
	}
	items := h.export(cloudapi.Media)
	if len(items) != 1000 {
		t.Fatalf("%d media", len(items))
	}
	kinds := map[string]int{}
	var large int
	for _, it := range items {
		var m cloudapi.MediaManifest
		if err := json.Unmarshal(it.Doc, &m); err != nil {
			t.Fatal(err)
		}
		kinds[m.ContentType]++
		if m.Size >= 20<<20 {
			large++
		}
		if m.ContentType == "image/jpeg" && kinds[m.ContentType] > 3 && m.Size < 20<<20 {
			continue // a sample of each kind is enough to check
		}
		status, body := getBlob(t, h.hc, rc.Media.ContainerURL, m.Blob, "")
		sum := md5.Sum(body)
		if status != 200 || int64(len(body)) != m.Size || base64.StdEncoding.EncodeToString(sum[:]) != m.MD5 {
			t.Fatalf("%s: %d, %d bytes, want %d with MD5 %s", m.Blob, status, len(body), m.Size, m.MD5)
		}
		status, part := getBlob(t, h.hc, rc.Media.ContainerURL, m.Blob, "bytes=5000-")
		if status != 206 || string(part) != string(body[5000:]) {
			t.Fatalf("%s from 5000: %d, %d bytes", m.Blob, status, len(part))
		}
	}
	if large != 1 || kinds["video/mp4"] < 10 || kinds["application/pdf"] < 50 || kinds["image/png"] < 50 {
		t.Errorf("kinds %v, %d large videos", kinds, large)
	}
	if status, _ := getBlob(t, h.hc, strings.Replace(rc.Media.ContainerURL, "sig=", "sig=x", 1), "products/M0000001.jpg", ""); status != http.StatusForbidden {
		t.Errorf("a wrong signature: %d, want 403", status)
	}
	h.setFaults(Faults{SASRefusals: 1})
	var refused cloudapi.RemoteConfig
	h.callJSON(http.MethodGet, "/v1/config", nil, &refused)
	if status, _ := getBlob(t, h.hc, refused.Media.ContainerURL, "products/M0000001.jpg", ""); status != http.StatusForbidden {
		t.Errorf("the SAS of a refusal fault: %d, want 403", status)
	}
	h.callJSON(http.MethodGet, "/v1/config", nil, &refused)
	if status, _ := getBlob(t, h.hc, refused.Media.ContainerURL, "products/M0000001.jpg", ""); status != 200 {
		t.Errorf("the SAS after the refusal: %d, want 200", status)
	}
}

// A media change gives the item a new blob with a new MD5; a media delete removes it.
func TestMediaMutations(t *testing.T) {
	h := newHarness(t, Options{Products: 400, Media: MediaOptions{BuiltIn: true}})
	before := map[string]string{}
	for _, it := range h.export(cloudapi.Media) {
		before[it.ID] = string(it.Doc)
	}
	var res MutationResult
	h.callJSON(http.MethodPost, "/_sim/mutate", Mutation{MediaChanges: 3, MediaDeletes: 2}, &res)
	if len(res.Upserted[cloudapi.Media]) != 3 || len(res.Deleted[cloudapi.Media]) != 2 {
		t.Fatalf("mutation %+v", res)
	}
	after := map[string]string{}
	for _, it := range h.export(cloudapi.Media) {
		after[it.ID] = string(it.Doc)
	}
	for _, id := range res.Upserted[cloudapi.Media] {
		if after[id] == before[id] {
			t.Errorf("%s unchanged", id)
		}
	}
	if len(after) != len(before)-2 {
		t.Errorf("%d media after deleting 2 of %d", len(after), len(before))
	}
}
