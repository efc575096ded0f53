package backoffice

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

// erp is a webhook receiver that checks signatures, remembers what it took by Idempotency-Key,
// and answers what the test tells it to.
type erp struct {
	t      *testing.T
	secret string

	mu       sync.Mutex // protects the fields below
	answers  []int      // status to answer to the next requests, in turn; then 200
	refuse   map[int64]int
	taken    []Order // in the order taken, once per key
	keys     map[string]bool
	requests int
}

func newERP(t *testing.T, secret string) (*erp, *httptest.Server) {
	e := &erp{t: t, secret: secret, refuse: map[int64]int{}, keys: map[string]bool{}}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, srv
}

func (e *erp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		e.t.Errorf("%s with %q", r.Method, r.Header.Get("Content-Type"))
	}
	sig := r.Header.Get(HeaderSignature)
	if e.secret == "" && sig != "" {
		e.t.Errorf("a signature without a secret: %q", sig)
	}
	if e.secret != "" && !hmac.Equal([]byte(sig), []byte(Sign(e.secret, body))) {
		e.t.Errorf("bad signature %q", sig)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if len(e.answers) > 0 {
		status := e.answers[0]
		e.answers = e.answers[1:]
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(status)
		w.Write([]byte("try later"))
		return
	}
	var o Order
	if err := json.Unmarshal(body, &o); err != nil {
		e.t.Errorf("body: %v", err)
	}
	if key := r.Header.Get(HeaderIdempotencyKey); key != "order:"+o.ID {
		e.t.Errorf("Idempotency-Key %q for order %s", key, o.ID)
	}
	if status, ok := e.refuse[o.Number]; ok {
		w.WriteHeader(status)
		w.Write([]byte("{\"error\":\"unknown product P2\",\n \"line\": 2}"))
		return
	}
	if key := r.Header.Get(HeaderIdempotencyKey); !e.keys[key] {
		e.keys[key] = true
		e.taken = append(e.taken, o)
	}
	w.WriteHeader(http.StatusCreated)
}

func (e *erp) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests
}

func (e *erp) got() []Order {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Order(nil), e.taken...)
}

func webhookAgent(db *storage.DB, url, secret string) *Agent {
	return agentFor(db, false, config.BackOffice{Webhook: config.BackOfficeWebhook{URL: url, Secret: config.Secret(secret), Timeout: 5 * time.Second}})
}

// TestWebhookSignedInOrder posts each order once, in order, signed, with its key.
// The signature is the one back-office.md shows an ERP how to check: the value here was computed
// apart, with Python's hmac over the same bytes, so that the code cannot drift from the page.
func TestWebhookSignatureKnownAnswer(t *testing.T) {
	const want = "sha256=20fdac9a80b72536d05576b79fc7dcd4d737817f34fa10125a1a4d6a98a2d37a"
	if got := Sign("whsec-test", []byte(`{"order":{"id":"ord_1"}}`)); got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestWebhookSignedInOrder(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	e, srv := newERP(t, "s3cret")
	list := createOrders(t, db, 5, false)
	a := webhookAgent(db, srv.URL, "s3cret")
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.got()
	want := wantOrders(t, db, list)
	if len(got) != len(want) {
		t.Fatalf("ERP took %d orders, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Note != want[i].Note || len(got[i].Lines) != 2 {
			t.Errorf("order %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, o := range list {
		entries, _ := db.OrderLedger(ctx, o.ID)
		last := entries[len(entries)-1]
		if last.Stage != orders.StageExported || last.Detail != "webhook: HTTP 201" {
			t.Errorf("ledger %+v", last)
		}
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(); n != 5 {
		t.Fatalf("%d requests for 5 orders over two runs", n)
	}
}

// TestWebhookRetries keeps the order on 503 and 429 and sends it again; an order the ERP
// refuses (422) is set aside with the answer and the next one still goes; an admin's retry
// sends it again.
func TestWebhookRetries(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	e, srv := newERP(t, "")
	list := createOrders(t, db, 3, false)
	e.answers = []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway}
	e.refuse[list[1].Number] = http.StatusUnprocessableEntity
	a := webhookAgent(db, srv.URL, "")
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.got()
	if len(got) != 2 || got[0].ID != list[0].ID || got[1].ID != list[2].ID {
		t.Fatalf("ERP took %+v", got)
	}
	entries, _ := db.OrderLedger(ctx, list[1].ID)
	last := entries[len(entries)-1]
	if last.Stage != orders.StageExportFailed || !strings.Contains(last.Error, `HTTP 422: {"error":"unknown product P2", "line": 2}`) {
		t.Fatalf("refused order's ledger: %+v", last)
	}
	st := a.Status().Targets[0]
	if st.Exported != 2 || st.Failed != 1 || st.Pending != 0 || a.Refusals() != 1 {
		t.Fatalf("status %+v, %d refusals", st, a.Refusals())
	}
	// Not retried by itself.
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(); n != 6 { // 4 for the first order, 1 each for the others
		t.Fatalf("%d requests", n)
	}
	failures, _ := a.WebhookFailures(ctx, 10)
	if len(failures) != 1 || failures[0].OrderID != list[1].ID || failures[0].Number != list[1].Number {
		t.Fatalf("failures %+v", failures)
	}
	// Retried before the ERP is fixed, and refused again: one refused order, as before, and a
	// second refusal (the refusal alert counts these).
	if ok, err := a.RetryWebhook(ctx, list[1].ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Status().Targets[0]; st.Failed != 1 || a.Refusals() != 2 {
		t.Fatalf("refused again: status %+v, %d refusals since the start; want 1 and 2", st, a.Refusals())
	}
	// The ERP is fixed; an admin retries.
	delete(e.refuse, list[1].Number)
	if ok, err := a.RetryWebhook(ctx, list[1].ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.got(); len(got) != 3 || got[2].ID != list[1].ID {
		t.Fatalf("after retry the ERP has %d orders", len(got))
	}
}

// TestWebhookDown stops the run when the ERP keeps failing, keeping the order and those after
// it for the next run.
func TestWebhookDown(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	e, srv := newERP(t, "")
	createOrders(t, db, 2, false)
	e.answers = []int{503, 503, 503, 503, 503, 503}
	a := webhookAgent(db, srv.URL, "")
	a.o.WebhookAttempts = 3
	err := a.RunOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 attempts failed, the last with HTTP 503") {
		t.Fatalf("run: %v", err)
	}
	if st := a.Status(); st.Targets[0].Pending != 2 || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}
	if err := a.RunOnce(ctx); err == nil {
		t.Fatal("second run with the ERP still down succeeded")
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.got()) != 2 {
		t.Fatalf("ERP has %d orders", len(e.got()))
	}
}

// TestWebhookRetryAfter honours a long Retry-After across runs, and a refused connection is
// retryable.
func TestWebhookRetryAfter(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	createOrders(t, db, 1, false)
	a := webhookAgent(db, srv.URL, "")
	if err := a.RunOnce(ctx); err == nil || !strings.Contains(err.Error(), "asked to wait 2m0s") {
		t.Fatalf("run: %v", err)
	}
	if err := a.RunOnce(ctx); err == nil || !strings.Contains(err.Error(), "waiting until") || calls.Load() != 1 {
		t.Fatalf("run within Retry-After: %v after %d calls", err, calls.Load())
	}
	now := time.Now()
	a.now = func() time.Time { return now.Add(3 * time.Minute) }
	srv.Close()
	if err := a.RunOnce(ctx); err == nil || !strings.Contains(err.Error(), "5 attempts failed") {
		t.Fatalf("run with the ERP gone: %v", err)
	}
}

// TestWebhookCrashAfterPost posts an order again after a stop between the ERP's answer and
// the database, with the same Idempotency-Key, which the ERP uses to take it once.
func TestWebhookCrashAfterPost(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	e, srv := newERP(t, "")
	list := createOrders(t, db, 2, false)
	a := webhookAgent(db, srv.URL, "")
	a.hook = crashAt(stepPosted, 2)
	if err := a.RunOnce(ctx); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	b := webhookAgent(db, srv.URL, "")
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(); n != 3 || len(e.got()) != 2 {
		t.Fatalf("%d requests, ERP took %d", n, len(e.got()))
	}
	for _, o := range list {
		if n := countStage(t, db, o.ID, orders.StageExported); n != 1 {
			t.Errorf("order %d: %d exported entries", o.Number, n)
		}
	}
}

// TestWebhookRedirect is not followed: it stops the run.
func TestWebhookRedirect(t *testing.T) {
	db := openDB(t, "")
	e, erpSrv := newERP(t, "")
	srv := httptest.NewServer(http.RedirectHandler(erpSrv.URL, http.StatusFound))
	defer srv.Close()
	createOrders(t, db, 1, false)
	a := webhookAgent(db, srv.URL, "")
	if err := a.RunOnce(context.Background()); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("run: %v", err)
	}
	if e.count() != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"  a\n\tb\r\n c  ":       "a b c",
		"\x00x\x7fy":             "x y",
		"\xffok":                 "\uFFFDok",
		strings.Repeat("é", 300): strings.Repeat("é", 200) + "…",
	} {
		if got := oneLine([]byte(in), 200); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// A webhook that refuses storeedge itself (a secret that does not match: 401, 403) or is not at
// the address (404, 405, 410) would refuse every order so: the run stops saying what to check,
// and no order is set aside as refused by the ERP; they all go once it is fixed.
func TestWebhookRefusingEveryOrderStopsTheRun(t *testing.T) {
	for status, want := range map[int]string{401: "backoffice.webhook.secret", 403: "backoffice.webhook.secret",
		404: "backoffice.webhook.url", 405: "backoffice.webhook.url", 410: "backoffice.webhook.url"} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			ctx := context.Background()
			db := openDB(t, "")
			e, srv := newERP(t, "")
			createOrders(t, db, 2, false)
			e.answers = []int{status}
			a := webhookAgent(db, srv.URL, "")
			err := a.RunOnce(ctx)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("run answered %d: %v, want an error naming %s", status, err, want)
			}
			if failures, _ := a.WebhookFailures(ctx, 10); len(failures) != 0 {
				t.Fatalf("answered %d: orders set aside as refused by the ERP: %+v", status, failures)
			}
			if st := a.Status(); st.Targets[0].Pending != 2 || st.Targets[0].Failed != 0 || st.LastError == "" {
				t.Fatalf("answered %d: status %+v", status, st)
			}
			if err := a.RunOnce(ctx); err != nil { // fixed: the ERP answers 200 again
				t.Fatal(err)
			}
			if len(e.got()) != 2 {
				t.Fatalf("after the fix the ERP has %d orders", len(e.got()))
			}
		})
	}
}

// An ERP (or a box in the way) that answers 101 Switching Protocols and then keeps the
// connection open holds no run: the answer is no answer, tried again like a timeout, and the
// order waits for the next run, not set aside as refused.
func TestWebhookSwitchingProtocolsIsNoAnswer(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	hold := make(chan struct{})
	defer close(hold)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: erp\r\n\r\n")
		buf.Flush()
		<-hold
	}))
	defer srv.Close()
	createOrders(t, db, 1, false)
	a := webhookAgent(db, srv.URL, "")
	a.o.WebhookAttempts = 2
	done := make(chan error, 1)
	go func() { done <- a.RunOnce(ctx) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "101 Switching Protocols") {
			t.Fatalf("run: %v, want the attempts failed with the 101", err)
		}
	case <-time.After(time.Minute): // a guard: the run ends after its two attempts
		t.Fatal("the run is held by a 101 answer")
	}
	if st := a.Status(); st.Targets[0].Pending != 1 || st.Targets[0].Failed != 0 {
		t.Fatalf("status %+v: want the order pending, not refused", st.Targets[0])
	}
}
