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

	"github.com/storeedge/storeedge/internal/cloudapi"
	"github.com/storeedge/storeedge/internal/testenv"
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

// assertCacheVerified checks every file of the cache on disk against its name (its MD5), and
// that no partial file lies under a final name.
func assertCacheVerified(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	root := filepath.Join(dir, "media")
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			if e != nil && e.IsDir() && e.Name() == "partial" {
				return fs.SkipDir
			}
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
