package main

// End-to-end tests of the media service: the storeedge binary fetching from Azurite (the
// Microsoft Blob emulator) the container that the cloudsim binary fills and names, and serving
// the files on the media port, checked with curl.

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/tools/testenv"
)

// mediaStatus is the media section of the status.
type mediaStatus struct {
	Media struct {
		State        string `json:"state"`
		LastError    string `json:"last_error"`
		Files        int64  `json:"files"`
		Bytes        int64  `json:"bytes"`
		Pending      int    `json:"pending"`
		PendingBytes int64  `json:"pending_bytes"`
		Failed       int64  `json:"failed"`
		Quarantined  int64  `json:"quarantined"`
		Problems     []struct {
			ID, Kind, Reason string
		} `json:"problems"`
	} `json:"media"`
}

func (s *shop) media(t *testing.T) mediaStatus {
	t.Helper()
	var st mediaStatus
	s.get(t, "/api/v1/status", &st)
	return st
}

// manifests are the cloud's live media manifests, by id.
func (c *cloudProc) manifests(t *testing.T) map[string]cloudapi.MediaManifest {
	t.Helper()
	out := map[string]cloudapi.MediaManifest{}
	for id, it := range c.export(t, cloudapi.Media) {
		var m cloudapi.MediaManifest
		if err := json.Unmarshal(it.Doc, &m); err != nil {
			t.Fatal(err)
		}
		out[id] = m
	}
	return out
}

func totalSize(ms map[string]cloudapi.MediaManifest) int64 {
	var n int64
	for _, m := range ms {
		n += m.Size
	}
	return n
}

// mediaShop starts a shop whose media port is open, and returns its media base URL.
func mediaShop(t *testing.T, dir string, cloud *cloudProc, sets ...string) (*shop, string) {
	t.Helper()
	port := testenv.FreePort(t)
	sets = append([]string{"lan.services.media=" + strconv.Itoa(port), "media.retry_max=2s", "log.level=debug"}, sets...)
	s := startShop(t, shopOptions{dataDir: dir, cloud: cloud.url, sets: sets})
	return s, "http://127.0.0.1:" + strconv.Itoa(port)
}

// curlResult is what curl got.
type curlResult struct {
	status  int
	headers http.Header
	body    []byte
}

// curl asks with curl, a client nobody in this project wrote, as a device with its token.
func curl(t *testing.T, s *shop, url string, args ...string) curlResult {
	t.Helper()
	bin := testenv.Require(t, "curl")
	token, err := s.deviceToken("e2e")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hdr, body := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
	all := append([]string{"-sS", "--max-time", "30", "-D", hdr, "-o", body, "-H", "Authorization: Bearer " + token}, args...)
	out, err := exec.Command(bin, append(all, url)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	raw, _ := os.ReadFile(hdr)
	b, _ := os.ReadFile(body)
	res := curlResult{headers: http.Header{}, body: b}
	for _, line := range strings.Split(string(raw), "\r\n") {
		if strings.HasPrefix(line, "HTTP/") {
			f := strings.Fields(line)
			res.status, _ = strconv.Atoi(f[1])
			res.headers = http.Header{}
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			res.headers.Add(k, strings.TrimSpace(v))
		}
	}
	return res
}

func md5Of(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// assertCacheVerified checks every file of the cache on disk against its name (its MD5): no
// partial file lies under a final name.
func assertCacheVerified(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	root := filepath.Join(dir, "media")
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasSuffix(e.Name(), ".part") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := md5.Sum(b)
		if hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("%s: content MD5 %x does not match its name", path, sum)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The whole path: cloudsim fills a container in Azurite and names it; the shop fetches every
// media item, verifies it and serves it on the media port, with Range, conditional requests and
// HEAD as curl sees them; a media change and a media deletion follow.
func TestMediaEndToEnd(t *testing.T) {
	az := testenv.StartAzurite(t, testenv.AzuriteOptions{})
	cloud := startCloud(t, "-products", "400", "-media-connection-string", az.ConnectionString)
	want := cloud.manifests(t)
	dir := t.TempDir()
	s, media := mediaShop(t, dir, cloud)
	waitFor(t, s, "the prefetch of every media item", 2*time.Minute, func() bool {
		m := s.media(t).Media
		return m.Files == int64(len(want)) && m.Pending == 0
	})
	if st := s.media(t).Media; st.State != "ok" || st.Bytes != totalSize(want) {
		t.Errorf("media status %+v, want ok and %d bytes", st, totalSize(want))
	}
	for id, m := range want {
		r := curl(t, s, media+"/api/v1/media/"+id)
		if r.status != 200 || md5Of(r.body) != m.MD5 || r.headers.Get("Content-Type") != m.ContentType {
			t.Fatalf("%s: %d, %d bytes, type %q", id, r.status, len(r.body), r.headers.Get("Content-Type"))
		}
	}
	var video cloudapi.MediaManifest
	for _, m := range want {
		if m.ContentType == "video/mp4" {
			video = m
		}
	}
	u := media + "/api/v1/media/" + video.ID
	full := curl(t, s, u)
	etag := full.headers.Get("ETag")
	if r := curl(t, s, u, "-r", "1000-1999"); r.status != 206 || !bytes.Equal(r.body, full.body[1000:2000]) ||
		r.headers.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", video.Size) {
		t.Errorf("Range: %d %v", r.status, r.headers)
	}
	if r := curl(t, s, u, "-r", "-100"); r.status != 206 || !bytes.Equal(r.body, full.body[len(full.body)-100:]) {
		t.Errorf("suffix Range: %d", r.status)
	}
	if r := curl(t, s, u, "-r", fmt.Sprintf("%d-", video.Size+10)); r.status != 416 ||
		r.headers.Get("Content-Type") != "application/problem+json" || r.headers.Get("Content-Range") != fmt.Sprintf("bytes */%d", video.Size) {
		t.Errorf("unsatisfiable Range: %d %v", r.status, r.headers)
	}
	if r := curl(t, s, u, "-H", "If-None-Match: "+etag); r.status != 304 || len(r.body) != 0 {
		t.Errorf("If-None-Match: %d", r.status)
	}
	if r := curl(t, s, u, "-H", "If-Modified-Since: "+full.headers.Get("Last-Modified")); r.status != 304 {
		t.Errorf("If-Modified-Since: %d", r.status)
	}
	// With -I curl writes the headers where the body would go: there is no body.
	if r := curl(t, s, u, "-I"); r.status != 200 || r.headers.Get("Content-Length") != strconv.FormatInt(video.Size, 10) ||
		r.headers.Get("ETag") != etag || r.headers.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD: %d %v", r.status, r.headers)
	}
	if r := curl(t, s, s.base+"/api/v1/media/"+video.ID, "-r", "0-9"); r.status != 206 || !bytes.Equal(r.body, full.body[:10]) {
		t.Errorf("front door Range: %d", r.status)
	}
	if r := curl(t, s, media+"/api/v1/media/M9999999"); r.status != 404 {
		t.Errorf("unknown id: %d", r.status)
	}

	// A new version is fetched beside the old one and replaces it; a deleted item leaves the disk.
	var res struct {
		Upserted map[string][]string `json:"upserted"`
		Deleted  map[string][]string `json:"deleted"`
	}
	cloud.post(t, "/_sim/mutate", map[string]int{"media_changes": 2, "media_deletes": 2}, &res)
	after := cloud.manifests(t)
	waitFor(t, s, "the changed media fetched and the deleted removed", time.Minute, func() bool {
		m := s.media(t).Media
		return m.Files == int64(len(after)) && m.Pending == 0 && m.Bytes == totalSize(after)
	})
	for _, id := range res.Upserted[cloudapi.Media] {
		if r := curl(t, s, media+"/api/v1/media/"+id); r.status != 200 || md5Of(r.body) != after[id].MD5 {
			t.Errorf("changed %s: %d, MD5 %s, want %s", id, r.status, md5Of(r.body), after[id].MD5)
		}
	}
	for _, id := range res.Deleted[cloudapi.Media] {
		if r := curl(t, s, media+"/api/v1/media/"+id); r.status != 404 {
			t.Errorf("deleted %s: %d", id, r.status)
		}
		if _, err := os.Stat(filepath.Join(dir, "media", hexOf(want[id].MD5)[:2], hexOf(want[id].MD5))); !os.IsNotExist(err) {
			t.Errorf("deleted %s: file still on disk (%v)", id, err)
		}
	}
	if n := assertCacheVerified(t, dir); n != len(after) {
		t.Errorf("%d files on disk, want %d", n, len(after))
	}
}

func hexOf(b64 string) string {
	b, _ := base64.StdEncoding.DecodeString(b64)
	return hex.EncodeToString(b)
}

// countingLink forwards TCP to a target and counts the bytes that come back: the bytes the
// shop downloads from Blob storage. down cuts it, as a WAN outage would.
type countingLink struct {
	addr, target string
	bytes        atomic.Int64
	mu           sync.Mutex // protects the fields below
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newCountingLink(t *testing.T, target string) *countingLink {
	t.Helper()
	l := &countingLink{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	l.serve(ln)
	t.Cleanup(l.down)
	return l
}

func (l *countingLink) serve(ln net.Listener) {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", l.target)
			if err != nil {
				c.Close()
				continue
			}
			l.mu.Lock()
			l.conns[c], l.conns[up] = true, true
			l.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { n, _ := io.Copy(c, up); l.bytes.Add(n); c.Close() }()
		}
	}()
}

func (l *countingLink) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for c := range l.conns {
		c.Close()
	}
	l.conns = map[net.Conn]bool{}
}

func (l *countingLink) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	l.serve(ln)
}

var storedLine = regexp.MustCompile(`msg="media: stored" media_id=(\S+)`)

// The same fetch over HTTPS with a test CA (wan.extra_ca_file), through an HTTP CONNECT proxy
// (tinyproxy) and a SOCKS5 proxy (dante).
func TestMediaThroughProxiesOverHTTPS(t *testing.T) {
	cert, key, ca, _ := testenv.TestCertWithCAFile(t)
	az := testenv.StartAzurite(t, testenv.AzuriteOptions{TLSCert: cert, TLSKey: key})
	if !strings.HasPrefix(az.BlobURL, "https://") {
		t.Fatalf("Azurite at %s", az.BlobURL)
	}
	cloud := startCloud(t, "-products", "200", "-media-connection-string", az.ConnectionString, "-media-ca-file", ca)
	want := cloud.manifests(t)
	logFile := filepath.Join(t.TempDir(), "tinyproxy.log")
	for _, tc := range []struct{ name, proxy string }{
		{"http-connect", "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{LogFile: logFile})},
		{"socks5", "socks5://" + testenv.StartDante(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, media := mediaShop(t, dir, cloud, "wan.proxy="+tc.proxy, "wan.extra_ca_file="+ca)
			waitFor(t, s, "the prefetch through the proxy", 2*time.Minute, func() bool {
				m := s.media(t).Media
				return m.Files == int64(len(want)) && m.Pending == 0
			})
			for id, m := range want {
				if r := curl(t, s, media+"/api/v1/media/"+id); r.status != 200 || md5Of(r.body) != m.MD5 {
					t.Fatalf("%s: %d", id, r.status)
				}
				break
			}
			if n := assertCacheVerified(t, dir); n != len(want) {
				t.Errorf("%d files on disk, want %d", n, len(want))
			}
			s.stop(t)
		})
	}
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), "CONNECT "+az.Addr) {
		t.Errorf("tinyproxy's log shows no tunnel to Blob storage at %s", az.Addr)
	}
}

// A SAS that expires every few seconds, and SAS tokens the store refuses, make the shop read the
// remote configuration again; the downloads carry on and every item arrives.
func TestMediaSASExpiryAndRefusal(t *testing.T) {
	az := testenv.StartAzurite(t, testenv.AzuriteOptions{})
	cloud := startCloud(t, "-products", "2000", "-media-connection-string", az.ConnectionString, "-media-sas-lifetime", "3s")
	want := cloud.manifests(t)
	total := totalSize(want)
	// The prefetch takes about 8 s: longer than two SAS lifetimes.
	s, _ := mediaShop(t, t.TempDir(), cloud, "media.max_bandwidth="+strconv.FormatInt(total/8, 10))
	waitFor(t, s, "a quarter of the prefetch", time.Minute, func() bool { return s.media(t).Media.Bytes > total/4 })
	cloud.post(t, "/_sim/faults", map[string]int{"sas_refusals": 3}, nil)
	waitFor(t, s, "the whole prefetch", 2*time.Minute, func() bool {
		m := s.media(t).Media
		return m.Files == int64(len(want)) && m.Pending == 0
	})
	if n := cloud.configRequests(t); n < 4 {
		t.Errorf("the shop read the configuration %d times during a prefetch that outlived several SAS tokens", n)
	}
	if !strings.Contains(s.log.String(), "refused the SAS") {
		t.Errorf("no refusal seen in the log")
	}
	if st := s.media(t).Media; st.State != "ok" || st.Failed != 0 || st.Quarantined != 0 {
		t.Errorf("media status %+v", st)
	}
	if strings.Contains(s.log.String(), "sig=") {
		t.Error("a SAS signature appears in the log")
	}
}

// With Blob storage down, status says so, the cache keeps serving what it holds, and an item it
// does not hold is answered 503 with Retry-After; when Blob storage is back, the item comes.
func TestMediaBlobDown(t *testing.T) {
	az := testenv.StartAzurite(t, testenv.AzuriteOptions{})
	link := newCountingLink(t, az.Addr)
	cloud := startCloud(t, "-products", "200", "-media-connection-string", testenv.AzuriteConnectionString("http://"+link.addr+"/"+testenv.AzuriteAccount))
	want := cloud.manifests(t)
	s, media := mediaShop(t, t.TempDir(), cloud, "media.prefetch=false")
	waitFor(t, s, "the shop's catalog", time.Minute, func() bool { return s.caughtUp(t) })
	if r := curl(t, s, media+"/api/v1/media/M0000001"); r.status != 200 || md5Of(r.body) != want["M0000001"].MD5 {
		t.Fatalf("on demand: %d %s", r.status, r.body)
	}
	link.down()
	r := curl(t, s, media+"/api/v1/media/M0000002")
	if ra, _ := strconv.Atoi(r.headers.Get("Retry-After")); r.status != 503 || ra < 1 || r.headers.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(r.body), "cannot be served now: it is not cached yet, and Blob storage cannot be reached") {
		t.Errorf("uncached with Blob storage down: %d, Retry-After %q: %s", r.status, r.headers.Get("Retry-After"), r.body)
	}
	waitFor(t, s, "status to say Blob storage is unreachable", time.Minute, func() bool { return s.media(t).Media.State == "unreachable" })
	if r := curl(t, s, media+"/api/v1/media/M0000001"); r.status != 200 || md5Of(r.body) != want["M0000001"].MD5 {
		t.Errorf("cached with Blob storage down: %d", r.status)
	}
	link.up(t)
	waitFor(t, s, "the item once Blob storage is back", time.Minute, func() bool {
		return curl(t, s, media+"/api/v1/media/M0000002").status == 200
	})
	if st := s.media(t).Media; st.State != "ok" {
		t.Errorf("state %q after Blob storage came back", st.State)
	}
}

// mediaKills is the number of SIGKILLs of the prefetch campaign (at least 10), and
// mediaKillProducts the catalog size: 2,000 media items, two of them large videos. The
// STOREEDGE_MEDIA_KILLS and STOREEDGE_MEDIA_KILL_PRODUCTS variables make a bigger campaign.
func mediaCampaign() (kills, products int) {
	kills, products = 10, 8000
	if n, err := strconv.Atoi(os.Getenv("STOREEDGE_MEDIA_KILLS")); err == nil && n > kills {
		kills = n
	}
	if n, err := strconv.Atoi(os.Getenv("STOREEDGE_MEDIA_KILL_PRODUCTS")); err == nil && n > products {
		products = n
	}
	return kills, products
}

// TestMediaKilledDuringPrefetch kills the daemon with SIGKILL again and again during the prefetch
// of 2,000 blobs, large videos included, while a device reads media all along. Afterwards every
// file verifies, every answer the device got was the verified content, and nothing complete was
// fetched twice.
func TestMediaKilledDuringPrefetch(t *testing.T) {
	kills, products := mediaCampaign()
	az := testenv.StartAzurite(t, testenv.AzuriteOptions{})
	link := newCountingLink(t, az.Addr)
	cloud := startCloud(t, "-products", strconv.Itoa(products), "-media-connection-string",
		testenv.AzuriteConnectionString("http://"+link.addr+"/"+testenv.AzuriteAccount))
	want := cloud.manifests(t)
	total := totalSize(want)
	uploaded := link.bytes.Load()
	t.Logf("%d media items, %d bytes", len(want), total)
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	dir := t.TempDir()
	// About 2 s of downloading per kill, so that the kills fall in every phase: images,
	// documents, videos.
	sets := []string{"media.max_bandwidth=" + strconv.FormatInt(total/int64(2*kills), 10), "media.on_demand_wait=2s"}
	var logs []string
	var served, bad atomic.Int64
	for life := 0; ; life++ {
		s, media := mediaShop(t, dir, cloud, sets...)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); readWhileRunning(s, media, ids, want, stop, &served, &bad) }()
		done := false
		if life < kills {
			waitFor(t, s, "this life to fetch something", time.Minute, func() bool { return s.media(t).Media.Files > 0 })
			time.Sleep(time.Duration(500+life*137%1500) * time.Millisecond)
			m := s.media(t).Media
			done = m.Files == int64(len(want))
			s.kill()
		} else {
			waitFor(t, s, "the prefetch after the kills", 3*time.Minute, func() bool {
				m := s.media(t).Media
				return m.Files == int64(len(want)) && m.Pending == 0
			})
			s.stop(t)
		}
		close(stop)
		wg.Wait()
		logs = append(logs, s.log.String())
		if done {
			t.Fatalf("the prefetch ended after %d kills; make it longer", life+1)
		}
		if life >= kills {
			break
		}
	}
	all := strings.Join(logs, "\n")
	if n := assertCacheVerified(t, dir); n != len(want) {
		t.Errorf("%d verified files on disk, want %d", n, len(want))
	}
	if served.Load() == 0 {
		t.Error("the device got no media answer during the campaign: nothing says what it would have been served")
	}
	if n := bad.Load(); n > 0 {
		t.Errorf("%d answers of %d were not the verified content", n, served.Load())
	}
	stored := map[string]int{}
	for _, m := range storedLine.FindAllStringSubmatch(all, -1) {
		stored[m[1]]++
	}
	for id, n := range stored {
		if n > 1 {
			t.Errorf("%s was fetched and stored %d times", id, n)
		}
	}
	resumed := strings.Count(all, "media: resuming a download")
	// What came back from Blob storage: every blob once, plus what the kills cut off before it
	// reached a partial file (at most the socket buffers of the downloads in flight), plus HTTP.
	got := link.bytes.Load() - uploaded
	slack := int64(kills)*8*(8<<20) + int64(len(want))*4<<10
	t.Logf("%d kills, %d downloads resumed, %d answers served during the campaign, %d bytes downloaded for %d", kills, resumed, served.Load(), got, total)
	if got > total+slack {
		t.Errorf("downloaded %d bytes for %d bytes of blobs: something complete was fetched again", got, total)
	}
	if resumed == 0 {
		t.Error("no download was resumed: the kills never cut one")
	}
}

// readWhileRunning plays a device that asks for media items until stop, counting the answers
// that are not the manifest's content.
func readWhileRunning(s *shop, media string, ids []string, want map[string]cloudapi.MediaManifest, stop chan struct{}, served, bad *atomic.Int64) {
	token, err := s.deviceToken("reader")
	if err != nil {
		return // the shop was killed before the device paired
	}
	c := &http.Client{Timeout: 10 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		id := ids[i*7919%len(ids)]
		req, _ := http.NewRequest(http.MethodGet, media+"/api/v1/media/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			continue // killed
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			continue
		}
		served.Add(1)
		if md5Of(body) != want[id].MD5 {
			bad.Add(1)
		}
	}
}
