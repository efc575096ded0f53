package server

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/media"
)

// fakeMedia serves files from a folder: the part of the media cache the server sees.
type fakeMedia struct {
	dir    string
	files  map[string][]byte // by id
	down   map[string]time.Duration
	types  map[string]string // content type by id, video/mp4 when not there
	served atomic.Int64
	state  string        // the status's state; "" is ok
	wait   time.Duration // Open waits so long first, as for an on-demand download
}

func newFakeMedia(t *testing.T) *fakeMedia {
	return &fakeMedia{dir: t.TempDir(), files: map[string][]byte{}, down: map[string]time.Duration{}, types: map[string]string{}}
}

func (m *fakeMedia) add(t *testing.T, id string, data []byte) string {
	sum := md5.Sum(data)
	h := hex.EncodeToString(sum[:])
	if err := os.WriteFile(filepath.Join(m.dir, h), data, 0o600); err != nil {
		t.Fatal(err)
	}
	m.files[id] = data
	return h
}

func (m *fakeMedia) Open(_ context.Context, id string) (*media.File, error) {
	if m.wait > 0 {
		time.Sleep(m.wait) // the wait for an on-demand download
	}
	if d, ok := m.down[id]; ok {
		return nil, &media.UnavailableError{Reason: "Blob storage cannot be reached", RetryAfter: d}
	}
	data, ok := m.files[id]
	if !ok {
		return nil, media.ErrUnknown
	}
	sum := md5.Sum(data)
	h := hex.EncodeToString(sum[:])
	f, err := os.Open(filepath.Join(m.dir, h))
	if err != nil {
		return nil, err
	}
	ct, ok := m.types[id]
	if !ok {
		ct = "video/mp4"
	}
	return &media.File{File: f, ID: id, MD5: h, Size: int64(len(data)), ContentType: ct, ModTime: testNow.Add(-time.Hour)}, nil
}

func (m *fakeMedia) Served(string) { m.served.Add(1) }

func (m *fakeMedia) Hits() (int64, int64) { return m.served.Load(), 0 }

func (m *fakeMedia) Status(context.Context) (media.Status, error) {
	state := m.state
	if state == "" {
		state = media.StateOK
	}
	return media.Status{State: state, Files: int64(len(m.files)), Problems: []storage.MediaFailure{}}, nil
}

func TestMediaAnswers(t *testing.T) {
	fm := newFakeMedia(t)
	data := []byte(strings.Repeat("0123456789", 1000))
	etag := `"` + fm.add(t, "M1", data) + `"`
	fm.down["M2"] = 42 * time.Second
	fm.add(t, "M3", []byte("no type in the manifest"))
	fm.types["M3"] = ""
	f := newFixture(t, func(o *Options) { o.Media = fm })

	get := func(method, id string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/api/v1/media/"+id, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return f.do(t, req)
	}
	rec := get(http.MethodGet, "M1")
	if rec.Code != 200 || rec.Body.String() != string(data) || rec.Header().Get("Content-Type") != "video/mp4" ||
		rec.Header().Get("ETag") != etag || rec.Header().Get("Content-Length") != "10000" ||
		rec.Header().Get("Last-Modified") != testNow.Add(-time.Hour).Format(http.TimeFormat) ||
		rec.Header().Get("Cache-Control") != "private, no-cache" || rec.Header().Get("Accept-Ranges") != "bytes" {
		t.Errorf("GET: %d %v", rec.Code, rec.Header())
	}
	if rec := get(http.MethodHead, "M1"); rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "10000" {
		t.Errorf("HEAD: %d %v %d bytes", rec.Code, rec.Header(), rec.Body.Len())
	}
	if rec := get(http.MethodGet, "M1", "Range", "bytes=10-19"); rec.Code != 206 || rec.Body.String() != "0123456789" ||
		rec.Header().Get("Content-Range") != "bytes 10-19/10000" {
		t.Errorf("Range: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	if rec := get(http.MethodGet, "M1", "If-None-Match", etag); rec.Code != 304 || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d", rec.Code)
	}
	if rec := get(http.MethodGet, "M1", "If-Modified-Since", testNow.Format(http.TimeFormat)); rec.Code != 304 {
		t.Errorf("If-Modified-Since: %d", rec.Code)
	}
	// If-Match and If-Unmodified-Since: the file as it is, or a problem saying it changed.
	if rec := get(http.MethodGet, "M1", "If-Match", etag, "Range", "bytes=0-9"); rec.Code != 206 || rec.Body.String() != "0123456789" {
		t.Errorf("If-Match the current ETag: %d %q", rec.Code, rec.Body)
	}
	for _, cond := range [][]string{{"If-Match", `"0123"`}, {"If-Unmodified-Since", testNow.Add(-2 * time.Hour).Format(http.TimeFormat)}} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rec = get(method, "M1", cond...)
			if method == http.MethodHead {
				if rec.Code != 412 {
					t.Errorf("HEAD with %s: %d", cond[0], rec.Code)
				}
				continue
			}
			wantProblem(t, rec, 412, "precondition-failed", "ETag "+etag)
		}
	}
	for _, past := range []string{"bytes=20000-", "bytes=99999999999999999999-"} {
		rec = get(http.MethodGet, "M1", "Range", past)
		wantProblem(t, rec, 416, "range-not-satisfiable", "lies outside the file (bytes */10000)")
		if rec.Header().Get("Content-Range") != "bytes */10000" {
			t.Errorf("416 for %q: Content-Range %q", past, rec.Header().Get("Content-Range"))
		}
	}
	// A Range that cannot be read says so, and gives the file's size too.
	for _, bad := range []string{"bytes=abc", "bytes=5-2"} {
		rec = get(http.MethodGet, "M1", "Range", bad)
		wantProblem(t, rec, 416, "range-not-satisfiable", `"`+bad+`" is not a byte range`)
		if rec.Header().Get("Content-Range") != "bytes */10000" {
			t.Errorf("416 for %q: Content-Range %q", bad, rec.Header().Get("Content-Range"))
		}
	}
	// A suffix of no bytes is unsatisfiable (RFC 9110, 14.1.1): alone, a 416; beside a range
	// that is satisfiable, left out.
	for _, none := range []string{"bytes=-0", "bytes= -00 , -0", "bytes=-0,", "bytes=,-0", "bytes=-0, ,-0"} {
		rec = get(http.MethodGet, "M1", "Range", none)
		wantProblem(t, rec, 416, "range-not-satisfiable", "bytes */10000")
		if rec.Header().Get("Content-Range") != "bytes */10000" {
			t.Errorf("416 for %q: Content-Range %q", none, rec.Header().Get("Content-Range"))
		}
	}
	if rec := get(http.MethodGet, "M1", "Range", "bytes=10-19,-0"); rec.Code != 206 || rec.Body.String() != "0123456789" ||
		rec.Header().Get("Content-Range") != "bytes 10-19/10000" {
		t.Errorf("Range with an empty suffix beside 10-19: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	if rec := get(http.MethodGet, "M1", "Range", "bytes=-10"); rec.Code != 206 || rec.Body.String() != "0123456789" ||
		rec.Header().Get("Content-Range") != "bytes 9990-9999/10000" {
		t.Errorf("Range of the last 10 bytes: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	// A Range in a unit other than bytes is not heeded (RFC 9110, 14.2); the unit's case does
	// not matter; ranges that ask for more than the whole file (overlapping) get the file whole.
	for _, c := range []struct {
		rng  string
		code int
		body string
	}{
		{"items=0-5", 200, string(data)},
		{"Bytes=10-19", 206, "0123456789"},
		{"bytes=0-,0-", 200, string(data)},
		// Positions too large for an int64 are valid (RFC 9110, 14.1.1): a last position past
		// the end means the rest of the file, a suffix longer than the file the whole file.
		{"bytes=9990-99999999999999999999", 206, "0123456789"},
		{"bytes=-99999999999999999999", 206, string(data)},
		{"bytes=0-9,9990-99999999999999999999", 206, ""}, // two parts: multipart, checked by its code
	} {
		if c.code == 206 && c.body == "" {
			if rec := get(http.MethodGet, "M1", "Range", c.rng); rec.Code != 206 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/byteranges") {
				t.Errorf("Range %q: %d %v", c.rng, rec.Code, rec.Header())
			}
			continue
		}
		if rec := get(http.MethodGet, "M1", "Range", c.rng); rec.Code != c.code || rec.Body.String() != c.body {
			t.Errorf("Range %q: %d, %d bytes; want %d, %d bytes", c.rng, rec.Code, rec.Body.Len(), c.code, len(c.body))
		}
	}
	// content_type is optional in the feed: an item without one is sent as bytes.
	if rec := get(http.MethodGet, "M3"); rec.Code != 200 || rec.Header().Get("Content-Type") != "application/octet-stream" {
		t.Errorf("an item without a content type: %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	wantProblem(t, get(http.MethodGet, "M9"), 404, "not-found", `"M9"`)
	wantProblem(t, get(http.MethodGet, strings.Repeat("M", 129)), 400, "bad-parameter", "longer than 128 bytes")
	rec = get(http.MethodGet, "M2")
	wantProblem(t, rec, 503, "media-unavailable", "Blob storage cannot be reached")
	if ra := rec.Header().Get("Retry-After"); ra != "42" {
		t.Errorf("Retry-After %q", ra)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/v1/media/M1", nil)
	if rec := httptest.NewRecorder(); func() bool { f.raw.ServeHTTP(rec, req); return rec.Code != 401 }() {
		t.Errorf("without a device credential: %d", rec.Code)
	}
}

// sendfileConn records whether the server handed a file to the socket's ReadFrom, the path on
// which the kernel copies it (sendfile) rather than the program.
type sendfileConn struct {
	*net.TCPConn
	files *atomic.Int64
}

func (c sendfileConn) ReadFrom(r io.Reader) (int64, error) {
	src := r
	if lr, ok := r.(*io.LimitedReader); ok {
		src = lr.R
	}
	if _, ok := src.(*os.File); ok {
		c.files.Add(1)
	}
	return c.TCPConn.ReadFrom(r)
}

type sendfileListener struct {
	net.Listener
	files *atomic.Int64
}

func (l sendfileListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return sendfileConn{c.(*net.TCPConn), l.files}, nil
}

// A media file goes from the file to the socket without a copy through the program, through
// every wrapper of the answer, for whole files and ranges alike.
func TestMediaUsesSendfile(t *testing.T) {
	fm := newFakeMedia(t)
	data := make([]byte, 1<<20)
	fm.add(t, "M1", data)
	f := newFixture(t, func(o *Options) { o.Media = fm })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var files atomic.Int64
	// The server's own handler, without the tests' answer checks, whose copy of each answer
	// would hide the socket's ReadFrom.
	token := f.device(t, "signage").Token
	srv := httptest.NewUnstartedServer(f.srv.Handler())
	srv.Listener.Close()
	srv.Listener = sendfileListener{ln, &files}
	srv.Start()
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	for _, rng := range []string{"", "bytes=1000-99999"} {
		wg.Add(1)
		func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/media/M1", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if rng != "" {
				req.Header.Set("Range", rng)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 || (rng == "" && n != 1<<20) {
				t.Errorf("Range %q: %s, %d bytes", rng, resp.Status, n)
			}
		}()
	}
	wg.Wait()
	if got := files.Load(); got != 2 {
		t.Errorf("%d of 2 answers handed the file to the socket (sendfile); the others copied it through the program", got)
	}
}

// The wait for an on-demand download (media.on_demand_wait) may be longer than lan.write_timeout:
// the answer after it, the file or a 503 with Retry-After, still reaches the device, where the
// write deadline set when the request was read would cut it.
func TestMediaAnswerAfterALongOnDemandWait(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	fm := newFakeMedia(t)
	fm.wait = 2 * writeTimeout
	fm.add(t, "M1", []byte("a picture of cheese"))
	fm.down["M2"] = 42 * time.Second
	f := newFixture(t, func(o *Options) { o.Media = fm; o.WriteTimeout = writeTimeout })
	ts := httptest.NewUnstartedServer(f.h)
	ts.Config.WriteTimeout = writeTimeout // as the server's own listeners
	ts.Start()
	defer ts.Close()
	for id, want := range map[string]int{"M1": http.StatusOK, "M2": http.StatusServiceUnavailable} {
		resp, err := ts.Client().Get(ts.URL + "/api/v1/media/" + id)
		if err != nil {
			t.Fatalf("%s after a wait of %v: %v", id, fm.wait, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != want {
			t.Fatalf("%s: %d %q (%v), want %d", id, resp.StatusCode, body, err, want)
		}
		if want == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "42" {
			t.Fatalf("503 without its Retry-After: %v", resp.Header)
		}
	}
}

// The conditional requests media.md promises besides the plain ones: If-Range with the current
// ETag or a later date gives the range, with another ETag, a weak one or an earlier date the
// whole file; If-None-Match matches in a list and weakly; If-None-Match, when sent, decides over
// If-Modified-Since (RFC 9110, 13.2.2); several ranges come as multipart/byteranges.
func TestMediaConditionalsAndMultipart(t *testing.T) {
	fm := newFakeMedia(t)
	data := []byte(strings.Repeat("0123456789", 1000))
	etag := `"` + fm.add(t, "M1", data) + `"`
	f := newFixture(t, func(o *Options) { o.Media = fm })
	get := func(hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/media/M1", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return f.do(t, req)
	}
	modified := testNow.Add(-time.Hour)
	for _, c := range []struct {
		ifRange string
		code    int
	}{
		{etag, 206},
		{modified.Format(http.TimeFormat), 206},
		{`"0123"`, 200},
		{"W/" + etag, 200}, // If-Range compares strongly
		{modified.Add(-time.Minute).Format(http.TimeFormat), 200},
	} {
		rec := get("Range", "bytes=10-19", "If-Range", c.ifRange)
		if rec.Code != c.code || c.code == 206 && rec.Body.String() != "0123456789" || c.code == 200 && rec.Body.Len() != len(data) {
			t.Errorf("If-Range %s: %d with %d bytes, want %d", c.ifRange, rec.Code, rec.Body.Len(), c.code)
		}
	}
	for _, inm := range []string{`"0123", ` + etag, "W/" + etag, "*"} {
		if rec := get("If-None-Match", inm); rec.Code != 304 || rec.Body.Len() != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304", inm, rec.Code, rec.Body.Len())
		}
	}
	// An ETag of another version, with a date the file is not newer than: the ETag decides.
	if rec := get("If-None-Match", `"0123"`, "If-Modified-Since", testNow.Format(http.TimeFormat)); rec.Code != 200 || rec.Body.Len() != len(data) {
		t.Errorf("If-None-Match of another version with a later If-Modified-Since: %d, want 200", rec.Code)
	}
	rec := get("Range", "bytes=0-4,100-104")
	mt, params, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	if rec.Code != 206 || err != nil || mt != "multipart/byteranges" {
		t.Fatalf("two ranges: %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	mr := multipart.NewReader(rec.Body, params["boundary"])
	for _, want := range []struct{ rng, body string }{{"bytes 0-4/10000", "01234"}, {"bytes 100-104/10000", "01234"}} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if p.Header.Get("Content-Range") != want.rng || string(b) != want.body || p.Header.Get("Content-Type") != "video/mp4" {
			t.Errorf("part %v %q, want %s %q of type video/mp4", p.Header, b, want.rng, want.body)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("a third part: %v", err)
	}
}
