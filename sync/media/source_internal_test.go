package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud"
)

func TestContentRangeTotal(t *testing.T) {
	for in, want := range map[string]int64{
		"bytes 0-99/100": 100, "bytes 5-9/3000000000": 3000000000, "bytes */42": 42,
		"": -1, "bytes 0-99": -1, "bytes 0-9/x": -1, "bytes 0-9/-5": -1, "bytes 0-9/*": -1,
	} {
		if got := contentRangeTotal(in); got != want {
			t.Errorf("contentRangeTotal(%q) = %d, want %d", in, got, want)
		}
	}
	for in, want := range map[string]int64{
		"bytes 0-99/100": 0, "bytes 5-9/10": 5, "Bytes 5-9/10": 5, "BYTES 7-9/*": 7,
		"bytes */42": -1, "": -1, "bytes": -1, "items 5-9/10": -1, "bytes -5-9/10": -1, "bytes 5": -1,
	} {
		if got := contentRangeStart(in); got != want {
			t.Errorf("contentRangeStart(%q) = %d, want %d", in, got, want)
		}
	}
}

// Blob storage's answers (Content-Range) come from the WAN: no panic, a size or -1.
func FuzzContentRangeTotal(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes */42", "", "/", "bytes 0-1/99999999999999999999"} {
		f.Add(s)
	}
	f.Add("bytes 5-9/10")
	f.Add("Bytes 5-9/10")
	f.Add("bytes -5-9/10")
	f.Fuzz(func(t *testing.T, s string) {
		if n := contentRangeTotal(s); n < -1 {
			t.Fatalf("%q: %d", s, n)
		}
		if n := contentRangeStart(s); n < -1 {
			t.Fatalf("%q: start %d", s, n)
		}
	})
}

func TestSASExpiry(t *testing.T) {
	u := "https://a.blob.core.windows.net/media?sv=2023-11-03&se=2026-12-02T10%3A00%3A00Z&sr=c&sp=rl&sig=abc"
	if got := sasExpiry(u); !got.Equal(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("sasExpiry = %v", got)
	}
	// Azure also takes the time to the minute, or a date alone.
	for se, want := range map[string]time.Time{
		"2026-12-02T10%3A15Z": time.Date(2026, 12, 2, 10, 15, 0, 0, time.UTC),
		"2026-12-02":          time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC),
	} {
		if got := sasExpiry("https://a/media?sr=c&se=" + se + "&sig=x"); !got.Equal(want) {
			t.Errorf("se=%s: sasExpiry = %v, want %v", se, got, want)
		}
	}
	if got := sasExpiry("https://a/media?sig=x"); !got.IsZero() {
		t.Errorf("no se: %v", got)
	}
}

// An error text that quotes a URL or a connection string keeps no signature or key.
func FuzzRedactSAS(f *testing.F) {
	f.Add("GET https://a.blob.core.windows.net/media/x.jpg?sv=1&sig=SECRETSIG&se=2 failed")
	f.Add("AccountName=a;AccountKey=SECRETKEY;BlobEndpoint=http://127.0.0.1")
	f.Add(`parse "http://h/c?sig=SECRET": invalid`)
	f.Add("SharedAccessSignature=sv=1&sig=SECRET;x")
	f.Fuzz(func(t *testing.T, s string) {
		out := redactSAS(s)
		for _, key := range []string{"?", "sig=", "AccountKey=", "SharedAccessSignature="} {
			for rest := out; ; {
				i := strings.Index(rest, key)
				if i < 0 {
					break
				}
				rest = rest[i+len(key):]
				if !strings.HasPrefix(rest, "xxxxx") {
					t.Fatalf("%q -> %q: %s not followed by the redaction", s, out, key)
				}
			}
		}
	})
}

// FuzzSASExpiry reads the se= of arbitrary container URLs, as the cloud's configuration or a
// shop's own setting gives them: never a panic, and an expiry read is the one the URL says.
func FuzzSASExpiry(f *testing.F) {
	for _, s := range []string{"https://a.blob.core.windows.net/media?se=2026-12-02T10%3A00%3A00Z&sig=x",
		"https://a/m?se=2026-12-02", "https://a/m?se=2026-12-02T10:15Z", "https://a/m?se=x", "%zz", "https://a/m?se=2026-13-40"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := sasExpiry(raw)
		if got.IsZero() {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("an expiry %v from a URL that does not parse", got)
		}
		if se := u.Query().Get("se"); len(se) < len("2006-01-02") || got.Format(time.DateOnly) != se[:10] {
			t.Fatalf("se=%q read as %v", se, got)
		}
	})
}

// While the cloud names no container, the shop asks it again at most every minRefresh, however
// many downloads a busy shop starts meanwhile (cloud-api.md: it asks again with backoff).
func TestNoContainerIsNotAskedAtEveryDownload(t *testing.T) {
	var asked int
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	c := NewContainer(Locator{Remote: func(context.Context) (string, error) { asked++; return "", nil }}, http.DefaultClient)
	c.now = func() time.Time { return now }
	for range 50 {
		if _, _, err := c.Download(context.Background(), "m1.jpg", 0); !errors.Is(err, ErrNotConfigured) {
			t.Fatalf("download without a container: %v", err)
		}
	}
	if asked != 1 {
		t.Fatalf("the cloud was asked %d times for 50 downloads within %v", asked, minRefresh)
	}
	now = now.Add(minRefresh)
	c.Download(context.Background(), "m1.jpg", 0)
	if asked != 2 {
		t.Fatalf("the cloud was asked %d times once %v had passed, want 2", asked, minRefresh)
	}
}

// A reading cut short by its caller's end (the item left the catalog while it waited) is not
// the cloud's answer: the next download asks the cloud itself.
func TestCancelledReadingIsNotKept(t *testing.T) {
	var asked int
	c := NewContainer(Locator{Remote: func(ctx context.Context) (string, error) {
		asked++
		if err := ctx.Err(); err != nil {
			return "", err
		}
		return "", nil
	}}, http.DefaultClient)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Download(gone, "m1.jpg", 0); err == nil {
		t.Fatal("a cancelled download succeeded")
	}
	if _, _, err := c.Download(context.Background(), "m1.jpg", 0); !errors.Is(err, ErrNotConfigured) || asked != 2 {
		t.Fatalf("the next download: %v, the cloud asked %d times; want not configured, asked twice", err, asked)
	}
}

// A container (the cloud names it) that answers with a redirect sends the shop nowhere: the
// request is not repeated elsewhere (another host, a LAN address, plain HTTP), and the read
// fails.
func TestContainerRedirectIsNotFollowed(t *testing.T) {
	var followed atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followed.Store(true)
		w.Write([]byte("abc"))
	}))
	defer elsewhere.Close()
	blob := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/admin/reboot", http.StatusFound))
	defer blob.Close()
	c := NewContainer(Locator{URL: blob.URL + "/media?sv=2024-01-01&sr=c&sp=rl&sig=abc"}, &http.Client{})
	body, _, err := c.Download(t.Context(), "M1.jpg", 0)
	if err == nil {
		body.Close()
		t.Fatal("a redirect answered the download, and it succeeded")
	}
	if followed.Load() {
		t.Fatal("the redirect was followed")
	}
}

// A store (or a proxy on the way) that answers a ranged read with the whole blob makes the
// download start again from the beginning, as a 416 does, rather than pause every download as
// if Blob storage were away.
func TestWholeBlobToARangedReadStartsAgain(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "3")
		w.Write([]byte("abc"))
	}))
	defer srv.Close()
	c := NewContainer(Locator{URL: srv.URL + "/media?sv=2024-01-01&sr=c&sp=rl&sig=abc"}, &http.Client{})
	body, _, err := c.Download(t.Context(), "M1.jpg", 1)
	var be *BlobError
	if !errors.As(err, &be) || be.Kind != KindRange {
		if body != nil {
			body.Close()
		}
		t.Fatalf("the whole blob to a ranged read: %v; want a %s error", err, KindRange)
	}
	body, total, err := c.Download(t.Context(), "M1.jpg", 0)
	if err != nil || total != 3 {
		t.Fatalf("from the start: total %d, %v", total, err)
	}
	body.Close()
}

// A part other than the one asked for (a proxy or cache on the way that got the range wrong) is
// not appended to what the download has: the download starts again from the beginning, where
// appending would make a blob that fails its MD5 and is quarantined as corrupted.
func TestAnotherPartThanAskedStartsAgain(t *testing.T) {
	data := []byte("abcdefghij")
	var start atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := start.Load()
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-9/10", s))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)-int(s)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[s:])
	}))
	defer srv.Close()
	c := NewContainer(Locator{URL: srv.URL + "/media?sv=2024-01-01&sr=c&sp=rl&sig=abc"}, &http.Client{})
	body, _, err := c.Download(t.Context(), "M1.jpg", 4) // the server sends from byte 0
	var be *BlobError
	if !errors.As(err, &be) || be.Kind != KindRange {
		if body != nil {
			body.Close()
		}
		t.Fatalf("another part than asked: %v; want a %s error", err, KindRange)
	}
	start.Store(4)
	body, total, err := c.Download(t.Context(), "M1.jpg", 4)
	if err != nil || total != 10 {
		t.Fatalf("the part asked for: total %d, %v", total, err)
	}
	got, _ := io.ReadAll(body)
	body.Close()
	if string(got) != "efghij" {
		t.Fatalf("the part asked for: %q", got)
	}
}

// A Blob store that does not answer in time (the WAN down behind a proxy, say) gives an error
// that tells so without the SAS: it goes to the log, the status and devices' 503s.
func TestTimeoutDoesNotShowTheSAS(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	c := NewContainer(Locator{URL: srv.URL + "/media?sv=2024-01-01&sr=c&sp=rl&sig=TOPSECRETSIG"}, &http.Client{Timeout: 100 * time.Millisecond})
	ctx := t.Context()
	_, _, err := c.Download(ctx, "M1.jpg", 0)
	res := blobResult(err)
	if res.kind != KindUnreachable || !errors.Is(res.err, context.DeadlineExceeded) {
		t.Errorf("a store that does not answer: %s, %v; want unreachable, a timeout", res.kind, res.err)
	}
	if strings.Contains(res.err.Error(), "TOPSECRETSIG") || !strings.Contains(res.err.Error(), "M1.jpg") {
		t.Errorf("the error shows the SAS, or not the blob: %v", res.err)
	}
	if _, err := c.Check(ctx); err == nil || strings.Contains(err.Error(), "TOPSECRETSIG") {
		t.Errorf("the check after the timeout: %v", err)
	}
}

// cloudContainer is a Container whose Remote answers reading n (from 1) with answer(n), on a
// clock the test moves, and the count of readings.
func cloudContainer(answer func(n int) (string, error)) (c *Container, now *time.Time, readings *int) {
	now, readings = new(time.Time), new(int)
	*now = time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	c = NewContainer(Locator{Remote: func(context.Context) (string, error) {
		*readings++
		return answer(*readings)
	}}, http.DefaultClient)
	c.now = func() time.Time { return *now }
	return c, now, readings
}

// While the SAS in hand is still good, a failed early reading of the container URL (the cloud
// busy a moment) does not fail downloads: the client in hand is used, and the cloud asked again
// at the next request after minRefresh. Once the SAS has expired, the failure is the caller's.
func TestEarlyRefreshFailureKeepsTheValidSAS(t *testing.T) {
	c, now, calls := cloudContainer(func(n int) (string, error) {
		if n == 1 {
			return "https://a.blob.core.windows.net/media?se=2026-12-05T09%3A00%3A20Z&sig=x", nil
		}
		return "", errors.New("cloud: config: 503 Service Unavailable")
	})
	first, err := c.current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // 18.5 s, then 17 s… of the SAS left: inside the early window (30 s)
		*now = now.Add(1500 * time.Millisecond)
		if cl, err := c.current(context.Background()); err != nil || cl != first {
			t.Fatalf("%v before expiry: %v, %v; want the client in hand", time.Date(2026, 12, 5, 9, 0, 20, 0, time.UTC).Sub(*now), cl, err)
		}
	}
	if *calls < 2 {
		t.Errorf("the cloud was asked %d times; want the early readings tried", *calls)
	}
	*now = time.Date(2026, 12, 5, 9, 0, 21, 0, time.UTC) // expired
	if _, err := c.current(context.Background()); err == nil {
		t.Error("an expired SAS was used when the cloud gave no new one")
	}
}

// A cloud that gives a SAS already expired is asked again no sooner than minRefresh, however
// many requests wait, and the expired SAS is never handed out.
func TestExpiredSASFromTheCloudIsNotUsedNorAskedForEachRequest(t *testing.T) {
	c, now, calls := cloudContainer(func(int) (string, error) {
		return "https://a.blob.core.windows.net/media?se=2026-12-05T08%3A00%3A00Z&sig=x", nil
	})
	for i := range 100 {
		cl, err := c.current(context.Background())
		var be *BlobError
		if cl != nil || !errors.As(err, &be) || be.Kind != KindAuth {
			t.Fatalf("request %d: %v, %v; want no client and a refusal", i, cl, err)
		}
	}
	if *calls != 1 {
		t.Errorf("the cloud was asked %d times for 100 requests at once, want once", *calls)
	}
	*now = now.Add(minRefresh)
	c.current(context.Background())
	if *calls != 2 {
		t.Errorf("the cloud was asked %d times after minRefresh, want twice", *calls)
	}
}

// An early reading the cloud answers with Retry-After is not tried again before it has passed,
// while the SAS in hand serves.
func TestEarlyRefreshWaitsTheRetryAfter(t *testing.T) {
	c, now, calls := cloudContainer(func(n int) (string, error) {
		if n == 1 {
			return "https://a.blob.core.windows.net/media?se=2026-12-05T09%3A00%3A25Z&sig=x", nil
		}
		return "", &cloud.Error{Op: "config", Status: http.StatusTooManyRequests, RetryAfter: 10 * time.Second}
	})
	if _, err := c.current(context.Background()); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(minRefresh) // inside the early window: asked, 429 for 10 s
	if _, err := c.current(context.Background()); err != nil || *calls != 2 {
		t.Fatalf("early reading: %v, %d calls", err, *calls)
	}
	for range 4 { // 4, 6, 8, 10 s: within the Retry-After
		*now = now.Add(2 * time.Second)
		if _, err := c.current(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if *calls != 2 {
		t.Errorf("the cloud was asked %d times within its Retry-After of 10 s, want once", *calls-1)
	}
	*now = now.Add(2 * time.Second) // 12 s: asked again
	c.current(context.Background())
	if *calls != 3 {
		t.Errorf("the cloud was asked %d times after the Retry-After, want twice", *calls-1)
	}
	// A Retry-After beyond the SAS's expiry holds nothing back once it has expired.
	c.holdUntil = now.Add(time.Hour)
	*now = time.Date(2026, 12, 5, 9, 0, 30, 0, time.UTC)
	if _, err := c.current(context.Background()); err == nil || *calls != 4 {
		t.Errorf("after the SAS expired, within the cloud's Retry-After: %v, %d readings; want the cloud asked and the expired SAS not used", err, *calls-1)
	}
	// Nor a moment later, before the cloud may be asked again (minRefresh).
	*now = now.Add(time.Second)
	if cl, err := c.current(context.Background()); err == nil || cl != nil {
		t.Errorf("a second after the expired SAS was refused a new one: %v, %v; want no client", cl, err)
	}
}

// A refusal of the cloud with Retry-After (429, 503) while reading the container URL pauses the
// downloads at least that long (up to an hour), as cloud-api.md says of every call to the cloud.
func TestContainerURLRetryAfterIsWaited(t *testing.T) {
	for _, c := range []struct {
		header string
		want   time.Duration
	}{{"600", 10 * time.Minute}, {"86400", time.Hour}} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", c.header)
			w.WriteHeader(http.StatusTooManyRequests)
		}))
		cl, _ := cloud.New(ts.URL, "k", ts.Client(), "t")
		src := NewContainer(Locator{Remote: func(ctx context.Context) (string, error) {
			rc, err := cl.Config(ctx)
			if err != nil {
				return "", err
			}
			return cloud.RemoteContainerURL(rc)
		}}, ts.Client())
		now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
		f, _, _ := newTestFetcher(t, Options{RetryMax: 5 * time.Minute, Now: func() time.Time { return now }, Source: src})
		m, md5hex := picture("M1")
		f.mu.Lock()
		f.enqueueLocked("M1", m, md5hex, classOnDemand)
		task := f.q.take(true)
		f.mu.Unlock()
		_, _, err := src.Download(context.Background(), m.Blob, 0)
		ts.Close()
		f.unreachable(task, blobResult(err))
		f.mu.Lock()
		pause := f.pausedTo.Sub(now)
		f.mu.Unlock()
		if pause != c.want {
			t.Errorf("Retry-After: %s: downloads paused %v, want %v", c.header, pause, c.want)
		}
	}
}
