package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
)

func TestUploadConfigAndErrors(t *testing.T) {
	sim := cloudsim.New(cloudsim.Options{Products: 5, StoreKey: "k", StoreID: "shop-9"})
	ts := httptest.NewServer(sim.Handler())
	defer ts.Close()
	c, err := New(ts.URL+"/", "k", ts.Client(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev := []cloudapi.Event{
		{Key: "order:1:created", Type: "order.created", At: "2026-11-23T10:00:00Z", Data: json.RawMessage(`{"id":"1"}`)},
		{Key: "order:2:created", Type: "order.created", At: "2026-11-23T10:00:00Z", Data: json.RawMessage(`[1]`)},
	}
	res, err := c.Upload(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) != 1 || res.Accepted[0] != "order:1:created" || len(res.Rejected) != 1 || res.Rejected[0].Reason == "" {
		t.Fatalf("first upload: %+v", res)
	}
	res, err = c.Upload(ctx, ev[:1])
	if err != nil || len(res.Duplicate) != 1 {
		t.Fatalf("retried upload: %+v %v", res, err)
	}
	cfg, err := c.Config(ctx)
	if err != nil || cloudapi.Text(cfg.StoreID, 128) != "shop-9" || cfg.ServiceBus.Queue == "" {
		t.Fatalf("config: %+v %v", cfg, err)
	}

	if err := sim.SetFaults(cloudsim.Faults{UploadErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Upload(ctx, ev[:1])
	var ce *Error
	if !errors.As(err, &ce) || !ce.Retryable() || ce.Status != 503 {
		t.Fatalf("failing upload: %v", err)
	}
	bad, _ := New(ts.URL, "wrong", ts.Client(), "test")
	if _, err := bad.Config(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := New("ftp://cloud", "k", ts.Client(), "test"); err == nil {
		t.Fatal("ftp base URL accepted")
	}
}

// TestFeedTimeoutIsPerPause checks that cloud.request_timeout cuts a stalled feed stream, with a
// clear error, but not a long one that keeps delivering.
func TestFeedTimeoutIsPerPause(t *testing.T) {
	stall := make(chan struct{})
	defer close(stall)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		f := w.(http.Flusher)
		// Twenty-five lines, 20 ms apart: 500 ms in all, longer than the timeout, with pauses far
		// below it even on a loaded machine.
		for i := 0; i < 25; i++ {
			fmt.Fprintf(w, "{\"i\":%d}\n", i)
			f.Flush()
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		if r.URL.Path == "/v1/feed/stock" { // then nothing at all
			select {
			case <-stall:
			case <-r.Context().Done():
			}
		}
	}))
	defer ts.Close()
	c, _ := New(ts.URL, "k", ts.Client(), "test")
	c.SetRequestTimeout(300 * time.Millisecond)

	body, err := c.Feed(context.Background(), "prices", "", 10, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(body)
	body.Close()
	if err != nil || strings.Count(string(b), "\n") != 25 {
		t.Fatalf("a moving stream longer than the timeout was cut: %d lines, %v", strings.Count(string(b), "\n"), err)
	}

	body, err = c.Feed(context.Background(), "stock", "", 10, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(body)
	body.Close()
	if err == nil || !strings.Contains(err.Error(), "no data from the cloud") || !errors.Is(err, ErrStalled) {
		t.Fatalf("a stalled stream: %v", err)
	}

	// The shop taking longer than the timeout over what it read (applying a page) is not the
	// cloud's pause: the stream goes on. The sleep is the slow reader under test.
	body, err = c.Feed(context.Background(), "prices", "", 10, true)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 8)
	n, err := io.ReadFull(body, first)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	rest, err := io.ReadAll(body)
	body.Close()
	if got := string(first[:n]) + string(rest); err != nil || strings.Count(got, "\n") != 25 {
		t.Fatalf("a stream read slowly by the shop: %d lines, %v", strings.Count(got, "\n"), err)
	}
}

// TestRemoteValues: the queue and the container URL of the remote configuration keep the rules
// of servicebus.queue and media.container_url before the server uses them, and an unusable URL
// is reported without its signature.
func TestRemoteValues(t *testing.T) {
	var rc cloudapi.RemoteConfig
	if q, err := RemoteQueue(rc); q != "" || err != nil {
		t.Errorf("no queue: %q, %v", q, err)
	}
	if u, err := RemoteContainerURL(rc); u != "" || err != nil {
		t.Errorf("no container: %q, %v", u, err)
	}
	rc.ServiceBus.Queue = "orders-lyon-01"
	rc.Media.ContainerURL = "https://shop.blob.core.windows.net/media?sv=2021&sp=rl&sig=c2VjcmV0"
	if q, err := RemoteQueue(rc); q != rc.ServiceBus.Queue || err != nil {
		t.Errorf("queue %q: %q, %v", rc.ServiceBus.Queue, q, err)
	}
	if u, err := RemoteContainerURL(rc); u != rc.Media.ContainerURL || err != nil {
		t.Errorf("container URL: %q, %v", u, err)
	}
	for _, q := range []string{"orders lyon", "orders\n", strings.Repeat("q", 261)} {
		rc.ServiceBus.Queue = q
		if got, err := RemoteQueue(rc); got != "" || err == nil || !strings.Contains(err.Error(), "servicebus.queue") {
			t.Errorf("queue %q: %q, %v; want refused", q, got, err)
		}
	}
	for _, u := range []string{
		"http://shop.blob.core.windows.net/media?sig=c2VjcmV0", // the SAS would cross the WAN in clear
		"https://shop.blob.core.windows.net/?sig=c2VjcmV0",     // no container
		"https://shop.blob.core.windows.net/media?sv=2021",     // no SAS
		"ftp://shop/media?sig=c2VjcmV0",
	} {
		rc.Media.ContainerURL = u
		got, err := RemoteContainerURL(rc)
		if got != "" || err == nil || !strings.Contains(err.Error(), "media.container_url cannot be used") {
			t.Errorf("container URL %q: %q, %v; want refused", u, got, err)
		} else if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "shop.blob") {
			t.Errorf("the error shows the URL: %v", err)
		}
	}
}

// An error answer's detail, a problem document's or a body's (a proxy's HTML page, say), is kept
// to maxDetailBytes and stays valid UTF-8.
func TestErrorDetailIsBounded(t *testing.T) {
	long := strings.Repeat("é", 2000)
	for name, c := range map[string]struct{ ctype, body string }{
		"problem document": {"application/problem+json", `{"title":"Bad","detail":"` + long + `"}`},
		"plain body":       {"text/html", "  <p>" + long + "</p>"},
	} {
		t.Run(name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", c.ctype)
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, c.body)
			}))
			defer ts.Close()
			cl, err := New(ts.URL, "k", ts.Client(), "test")
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.Config(context.Background())
			var ce *Error
			if !errors.As(err, &ce) || ce.Status != http.StatusBadGateway {
				t.Fatalf("error %v", err)
			}
			if len(ce.Detail) > maxDetailBytes+len("…") || !utf8.ValidString(ce.Detail) || !strings.Contains(ce.Detail, "éé") {
				t.Errorf("detail of %d bytes (valid UTF-8: %v): %.80q", len(ce.Detail), utf8.ValidString(ce.Detail), ce.Detail)
			}
		})
	}
}

// A redirect is not followed: net/http would carry the store key to another port or scheme of
// the cloud's host. The 3xx is an answer the contract does not give, retried as such.
func TestStoreKeyNeverFollowsARedirect(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
		w.Write([]byte(`{}`))
	}))
	defer elsewhere.Close()
	cloudSrv := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/v1/config", http.StatusFound))
	defer cloudSrv.Close()
	c, err := New(cloudSrv.URL, "sk_secret_store_key", &http.Client{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Config(t.Context())
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != http.StatusFound || !ce.Retryable() {
		t.Fatalf("a redirect answered: %v, want a retryable 302", err)
	}
	if leaked.Load() {
		t.Fatal("the store key went to the redirect's host")
	}
}

// cloud-api.md: "429 and 503 may carry Retry-After", and storeedge waits that long; another
// answer's Retry-After (a gateway's 502 or 403) is not a wait the cloud asked for, and would
// otherwise hold the sync of every collection up to an hour.
func TestRetryAfterOnlyOn429And503(t *testing.T) {
	for status, want := range map[int]time.Duration{429: time.Hour, 503: time.Hour, 500: 0, 502: 0, 403: 0, 404: 0} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(status)
		}))
		c, err := New(ts.URL, "k", ts.Client(), "test")
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Config(t.Context())
		ts.Close()
		if got := RetryAfter(err); got != want {
			t.Errorf("%d with Retry-After: 3600: wait %v, want %v (%v)", status, got, want, err)
		}
	}
}

// cloud-api.md: only 400, 409, 413 and 422 refuse a request for good; every other answer,
// 401/403/404 from a gateway or a wrong cloud.url included, is tried again.
func TestRetryableAnswers(t *testing.T) {
	for status, want := range map[int]bool{
		400: false, 409: false, 413: false, 422: false,
		401: true, 403: true, 404: true, 405: true, 408: true, 410: true, 415: true, 429: true,
		202: true, 302: true, 500: true, 502: true, 503: true,
	} {
		if got := (&Error{Op: "upload", Status: status}).Retryable(); got != want {
			t.Errorf("%d: retryable %v, want %v", status, got, want)
		}
	}
}

// A gateway that echoes the request in its error page does not put the store key into the
// error, which goes to logs, the status and a refused order's history.
func TestStoreKeyNotInAnEchoedErrorPage(t *testing.T) {
	for _, status := range []int{http.StatusBadGateway, http.StatusBadRequest} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(status)
			fmt.Fprintf(w, "Bad gateway\nrequest headers: Authorization: %s\n", r.Header.Get("Authorization"))
		}))
		c, err := New(ts.URL, "sk_live_0123456789", ts.Client(), "test")
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Config(t.Context())
		ts.Close()
		var ce *Error
		if !errors.As(err, &ce) || ce.Status != status {
			t.Fatalf("%d: error %v", status, err)
		}
		if strings.Contains(err.Error(), "sk_live_0123456789") || !strings.Contains(err.Error(), "Authorization: Bearer xxxxx") {
			t.Errorf("%d: the error shows the store key, or not the page: %v", status, err)
		}
	}
}

// An answer over its limit fails as too large, not as a cut-off document; one of exactly the
// limit is read.
func TestAnswerOverItsLimit(t *testing.T) {
	for _, c := range []struct {
		size    int
		tooLong bool
	}{{maxConfigAnswer, false}, {maxConfigAnswer + 1, true}, {3 * maxConfigAnswer, true}} {
		body := `{"store_id":"s1","name":"` + strings.Repeat("n", c.size-len(`{"store_id":"s1","name":""}`)) + `"}`
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, body)
		}))
		cl, err := New(ts.URL, "k", ts.Client(), "test")
		if err != nil {
			t.Fatal(err)
		}
		rc, err := cl.Config(t.Context())
		ts.Close()
		if c.tooLong {
			if !errors.Is(err, ErrAnswerTooLarge) || !strings.Contains(err.Error(), "larger than the limit of 1048576 bytes") {
				t.Errorf("an answer of %d bytes: %v, want too large", c.size, err)
			}
		} else if err != nil || cloudapi.Text(rc.StoreID, 128) != "s1" {
			t.Errorf("an answer of exactly the limit: %+v, %v", rc, err)
		}
	}
}

// A field storeedge does not use, of another type than the contract's (a numeric store_id, a
// flag that is not a boolean), fails nothing; a used field of the wrong type fails only its own
// use, saying which.
func TestConfigIsReadLeniently(t *testing.T) {
	const sas = "https://shop.blob.core.windows.net/media?sv=2021&sp=rl&sig=c2VjcmV0"
	for _, c := range []struct {
		body            string
		queue, queueErr string
		url, urlErr     string
	}{
		{body: `{"store_id":12345,"name":"Caf\u00e9\u001b[31m","servicebus":{"namespace":7,"queue":"orders-1"},"media":{"container_url":"` + sas + `"},"flags":{"beta":"on"},"heartbeat_seconds":"60"}`,
			queue: "orders-1", url: sas},
		{body: `{"store_id":"s","flags":[],"heartbeat_seconds":1e3,"servicebus":{"queue":7},"media":{"container_url":"` + sas + `"}}`,
			queueErr: "servicebus.queue is not a text", url: sas},
		{body: `{"servicebus":"orders-1","media":["x"]}`, queueErr: "servicebus is not an object", urlErr: "media is not an object"},
		{body: `{"servicebus":null,"media":{"container_url":null},"heartbeat_seconds":99999999999999999999}`},
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, c.body) }))
		cl, err := New(ts.URL, "k", ts.Client(), "test")
		if err != nil {
			t.Fatal(err)
		}
		rc, err := cl.Config(t.Context())
		ts.Close()
		if err != nil {
			t.Errorf("%s: %v", c.body, err)
			continue
		}
		q, qerr := RemoteQueue(rc)
		if q != c.queue || (qerr == nil) != (c.queueErr == "") || qerr != nil && !strings.Contains(qerr.Error(), c.queueErr) {
			t.Errorf("%s: queue %q, %v; want %q, %q", c.body, q, qerr, c.queue, c.queueErr)
		}
		u, uerr := RemoteContainerURL(rc)
		if u != c.url || (uerr == nil) != (c.urlErr == "") || uerr != nil && !strings.Contains(uerr.Error(), c.urlErr) {
			t.Errorf("%s: container %q, %v; want %q, %q", c.body, u, uerr, c.url, c.urlErr)
		}
	}
	// What doctor shows of a field kept as written: its text, one line, bounded.
	if got := cloudapi.Text(json.RawMessage(`"Caf\u00e9\u001b[31m"`), 128); got != "Café [31m" {
		t.Errorf("Text = %q", got)
	}
	if got := cloudapi.Text(json.RawMessage(`"a\u202eb\u2028c"`), 128); got != "a b c" {
		t.Errorf("Text of a name with a right-to-left override and a line separator = %q", got)
	}
	if got := cloudapi.Text(json.RawMessage(`"\u0645\u06cc\u200c\u0631\u0648\u062f"`), 128); got != "\u0645\u06cc\u200c\u0631\u0648\u062f" {
		t.Errorf("Text of a Persian name with a zero-width non-joiner = %q", got)
	}
	if got := cloudapi.Text(json.RawMessage(`"a\u200fb\u200bc\udb40\udc41"`), 128); got != "a b c " {
		t.Errorf("Text of a name with a right-to-left mark, a zero-width space and a tag = %q", got)
	}
	if got := cloudapi.Text(json.RawMessage(`12345`), 128); got != "12345" {
		t.Errorf("Text of a number = %q", got)
	}
	if got := cloudapi.Text(cloudapi.JSONText(strings.Repeat("é", 100)), 9); got != "éééé…" {
		t.Errorf("Text cut = %q", got)
	}
}
