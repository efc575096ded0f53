package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/ops/alerts"
	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/sync/outbox"
	"github.com/storeedge/storeedge/sync/servicebus"
	"github.com/storeedge/storeedge/tools/testenv"
)

func TestHealth(t *testing.T) {
	var logs testenv.Buffer
	f := newFixture(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	for _, target := range []string{"/healthz", "/readyz"} {
		rec := f.get(t, target)
		if rec.Code != http.StatusOK || rec.Body.String() != "{\"status\":\"ok\"}\n" || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q", target, rec.Code, rec.Body)
		}
	}
	// A database that no longer answers: alive, but not ready. The route needs no credential:
	// why goes to the server's log, a few lines a minute, not into the answer.
	f.db.Close()
	for range 2 * readyLogBudget {
		rec := f.get(t, "/readyz")
		wantProblem(t, rec, http.StatusServiceUnavailable, "not-ready", "database")
		if strings.Contains(rec.Body.String(), "closed") {
			t.Fatalf("readyz's answer carries the database's error: %s", rec.Body)
		}
	}
	if n := strings.Count(logs.String(), "readyz: the local database does not answer"); n != readyLogBudget || !strings.Contains(logs.String(), "closed") {
		t.Errorf("%d log lines of the failed probe, want %d with the error:\n%s", n, readyLogBudget, logs.String())
	}
	if rec := f.get(t, "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("healthz with the database closed: %d", rec.Code)
	}
}

type statusJSON struct {
	ServerID      string    `json:"server_id"`
	ShopName      string    `json:"shop_name"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Goroutines    int       `json:"goroutines"`
	WAN           WANStatus `json:"wan"`
	Collections   []struct {
		Name           string     `json:"name"`
		Cursor         string     `json:"cursor"`
		LastSuccess    *time.Time `json:"last_success"`
		DataAgeSeconds *int64     `json:"data_age_seconds"`
		Remaining      int64      `json:"remaining"`
		Rows           int64      `json:"rows"`
		Quarantined    int64      `json:"quarantined"`
		LastError      string     `json:"last_error"`
		LastErrorAt    *time.Time `json:"last_error_at"`
	} `json:"collections"`
	Quarantine []storage.QuarantineEntry `json:"quarantine"`
	Mode       string                    `json:"mode"`
	Orders     storage.OrderStats        `json:"orders"`
	ServiceBus *servicebus.Status        `json:"servicebus"`
	BackOffice *backoffice.Status        `json:"backoffice"`
	Discovery  discovery.Status          `json:"discovery"`
	Upload     *outbox.State             `json:"upload"`
	ReadCache  *storage.ReadCacheStats   `json:"read_cache"`
	Media      *media.Status             `json:"media"`
	Devices    devices.Summary           `json:"devices"`
	Alerts     *alerts.Status            `json:"alerts"`
	LogShip    *logship.Status           `json:"logs_shipping"`
	Backup     *backup.Status            `json:"backup"`
	Support    *support.Status           `json:"support"`
}

func TestStatus(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	applyPage(t, db, cloudapi.Products, productsAge, productChange("P1", 1, "Bread", "Bakery"), productChange("P2", 1, "Milk", "Drinks"))
	// 25 malformed lines: the status shows the 20 newest.
	var bad []*cloudapi.MalformedError
	for i := range 25 {
		bad = append(bad, &cloudapi.MalformedError{Line: i + 1, ID: fmt.Sprintf("X%02d", i), Reason: "currency \"eur\" is not an ISO 4217 code", Raw: []byte(`{"id":"X"}`)})
	}
	if _, err := db.ApplyPage(ctx, storage.Page{Collection: cloudapi.Prices, Malformed: bad, FetchedAt: testNow.Add(-pricesAge),
		End: cloudapi.PageEnd{Cursor: "c.prices.1", Count: 25, Remaining: 7}}); err != nil {
		t.Fatal(err)
	}
	errAt := testNow.Add(-5 * time.Second)
	if err := db.RecordFeedError(ctx, cloudapi.Stock, "cloud answered 503", errAt); err != nil {
		t.Fatal(err)
	}
	wan := WANStatus{State: "proxy_error", LastContact: testNow.Add(-time.Minute), LastError: "proxy refused CONNECT", Route: "http-connect via proxy.lan:3128"}
	f := newFixtureDB(t, db, func(o *Options) { o.WAN = func() WANStatus { return wan } })

	rec := f.get(t, "/api/v1/status")
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	st := decodeOK[statusJSON](t, rec)
	if st.ServerID != "srv-test" || st.ShopName != "Lyon Part-Dieu" || st.Version != "1.2.3" ||
		!st.StartedAt.Equal(testNow.Add(-time.Hour)) || st.UptimeSeconds != 3600 {
		t.Errorf("identity: %+v", st)
	}
	if st.WAN != wan {
		t.Errorf("wan %+v, want %+v", st.WAN, wan)
	}
	if len(st.Collections) != len(cloudapi.Collections) {
		t.Fatalf("%d collections", len(st.Collections))
	}
	for i, c := range st.Collections {
		if c.Name != cloudapi.Collections[i] {
			t.Errorf("collection %d is %q", i, c.Name)
		}
		switch c.Name {
		case cloudapi.Products:
			if c.Rows != 2 || c.DataAgeSeconds == nil || *c.DataAgeSeconds != 90 || c.LastSuccess == nil || c.Cursor == "" {
				t.Errorf("products: %+v", c)
			}
		case cloudapi.Prices:
			if c.Rows != 0 || c.Quarantined != 25 || c.Remaining != 7 || c.Cursor != "c.prices.1" || *c.DataAgeSeconds != 30 {
				t.Errorf("prices: %+v", c)
			}
		case cloudapi.Stock:
			if c.LastSuccess != nil || c.DataAgeSeconds != nil || c.LastError != "cloud answered 503" || c.LastErrorAt == nil || !c.LastErrorAt.Equal(errAt) {
				t.Errorf("stock: %+v", c)
			}
		default:
			if c.LastSuccess != nil || c.DataAgeSeconds != nil || c.LastErrorAt != nil {
				t.Errorf("%s: %+v", c.Name, c)
			}
		}
	}
	if st.ReadCache == nil || st.ReadCache.Budget != testReadCache {
		t.Errorf("read cache: %+v; want a budget of %d", st.ReadCache, testReadCache)
	}
	if len(st.Quarantine) != statusQuarantine || st.Quarantine[0].ItemID != "X24" || st.Quarantine[19].ItemID != "X05" {
		t.Errorf("quarantine: %d entries, first %+v", len(st.Quarantine), st.Quarantine)
	}
	// The JSON nulls are really there for a device maker's parser.
	body := f.get(t, "/api/v1/status").Body.String()
	if !strings.Contains(body, `"name":"media","cursor":"","last_success":null,"data_age_seconds":null`) {
		t.Errorf("never synced collection not null in %s", body)
	}
}

func TestStatusWithoutWANReportsUnknown(t *testing.T) {
	f := newFixtureDB(t, openDB(t))
	st := decodeOK[statusJSON](t, f.get(t, "/api/v1/status"))
	if st.WAN.State != "unknown" || len(st.Quarantine) != 0 || st.Quarantine == nil {
		t.Errorf("status %+v", st)
	}
	if body := f.get(t, "/api/v1/status").Body.String(); !strings.Contains(body, `"quarantine":[]`) || strings.Contains(body, "last_contact") {
		t.Errorf("body %s", body)
	}
}

// logSink is a log destination safe for the server's goroutines.
type logSink struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func newLogSink() *logSink { return &logSink{} }

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestPanicBecomesProblem(t *testing.T) {
	logs := newLogSink()
	f := newFixture(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	h := f.srv.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }), nil)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/catalog/products", nil)
	req.Header.Set(headerRequestID, "pos-7-req-42")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	wantProblem(t, rec, http.StatusInternalServerError, "internal", "pos-7-req-42")
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "request_id=pos-7-req-42") || !strings.Contains(out, "panic=boom") {
		t.Errorf("log %s", out)
	}
	if !strings.Contains(out, "level=DEBUG msg=request") || !strings.Contains(out, "status=500") {
		t.Errorf("no access log line for the failed request: %s", out)
	}

	// Once part of the answer is out, the connection is cut instead (net/http's ErrAbortHandler).
	h = f.srv.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"items":[`))
		panic("late boom")
	}), nil)
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	}()
}

func TestRequestID(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.Header.Set(headerRequestID, "kiosk-3:0001")
	if got := f.do(t, req).Header().Get(headerRequestID); got != "kiosk-3:0001" {
		t.Errorf("echoed id %q", got)
	}
	a := f.get(t, "/healthz").Header().Get(headerRequestID)
	b := f.get(t, "/nowhere").Header().Get(headerRequestID)
	if a == "" || b == "" || a == b {
		t.Errorf("made ids %q and %q", a, b)
	}
	// An id that is not safe to log or echo is replaced.
	req = httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.Header.Set(headerRequestID, "bad id with spaces")
	if got := f.do(t, req).Header().Get(headerRequestID); got == "bad id with spaces" || got == "" {
		t.Errorf("unsafe id echoed as %q", got)
	}
}
