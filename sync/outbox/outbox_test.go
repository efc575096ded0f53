package outbox

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openDB(t *testing.T) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// simCloud is a cloudsim of one product behind a test server, stopped when the test ends, and a
// client of it.
func simCloud(t *testing.T) (*cloudsim.Sim, *cloud.Client) {
	t.Helper()
	sim := cloudsim.New(cloudsim.Options{Products: 1, StoreKey: "k"})
	return sim, handlerCloud(t, sim.Handler())
}

// handlerCloud is a client of h behind a test server, stopped when the test ends.
func handlerCloud(t *testing.T, h http.Handler) *cloud.Client {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	client, err := cloud.New(ts.URL, "k", ts.Client(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func createOrders(t *testing.T, db *storage.DB, devices, each int) {
	t.Helper()
	for i := 0; i < each; i++ {
		for d := 0; d < devices; d++ {
			o := orders.Order{Source: orders.SourceLAN, DeviceID: fmt.Sprintf("pos-%d", d), Status: orders.StatusNew, Currency: "EUR", Note: fmt.Sprint(i)}
			if _, _, err := db.CreateOrder(context.Background(), storage.NewOrder{Order: o, IdempotencyKey: fmt.Sprint(i), RequestHash: "h"}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// runWorker runs a worker of db against client (batches of 7, waits of 1 to 5 ms between failed
// attempts) and returns the outcome of each attempt as it ends, and stop, which ends Run and
// checks how (also done when the test ends).
func runWorker(t *testing.T, db *storage.DB, client *cloud.Client) (<-chan error, func()) {
	t.Helper()
	w := New(Options{DB: db, Cloud: client, Batch: 7, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	attempts := make(chan error, 1000)
	w.attempted = func(err error) { attempts <- err }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return attempts, stop
}

// TestDrainsThroughFailuresInOrder uploads through a cloud that is down for a while, then fails
// a fifth of the batches and loses the answer to a third of those it stores: the cloud ends with
// each order once, in creation order per device, and the outbox takes the duplicates its
// retries get for delivered.
func TestDrainsThroughFailuresInOrder(t *testing.T) {
	db := openDB(t)
	sim, client := simCloud(t)
	createOrders(t, db, 3, 100)
	if err := sim.SetFaults(cloudsim.Faults{UploadErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	attempts, stop := runWorker(t, db, client)
	// The cloud is down: the worker keeps failing, the entries stay queued.
	for i := 0; i < 3; i++ {
		if err := <-attempts; err == nil {
			t.Fatal("an upload succeeded while the cloud was down")
		}
	}
	if st, _ := db.OrderStats(ctx); st.OutboxPending != 300 || len(sim.Events()) != 0 {
		t.Fatalf("while the cloud is down: %+v, cloud has %d", st, len(sim.Events()))
	}
	sim.SetFaults(cloudsim.Faults{UploadErrorRate: 0.2, LostAnswerRate: 0.3})
	// Each clean drain ends with an empty outbox; a failed one is retried.
	for err := <-attempts; err != nil; err = <-attempts {
	}
	if st, _ := db.OrderStats(ctx); st.OutboxPending != 0 {
		t.Fatalf("outbox not drained after a clean pass: %+v", st)
	}
	stop()
	events := sim.Events()
	if len(events) != 300 {
		t.Fatalf("cloud has %d events, want 300", len(events))
	}
	next := map[string]int{}
	for _, e := range events {
		var o orders.Order
		if err := json.Unmarshal(e.Data, &o); err != nil {
			t.Fatal(err)
		}
		if o.Note != fmt.Sprint(next[o.DeviceID]) {
			t.Fatalf("%s: order %s arrived when %d was expected", o.DeviceID, o.Note, next[o.DeviceID])
		}
		next[o.DeviceID]++
	}
	if st := sim.Stats().Faults; st.UploadError == 0 || st.LostAnswers == 0 {
		t.Fatalf("faults injected %+v; the test proved nothing about retries or lost answers", st)
	}
	if st, err := db.OrderStats(context.Background()); err != nil || st.OutboxRejected != 0 || st.OutboxPending != 0 {
		t.Fatalf("outbox after the drain: %+v, %v; want nothing pending or set aside", st, err)
	}
}

// TestUploadWaitsOutRetryAfter: a cloud that sheds load with 503 and a Retry-After as an HTTP date
// is not asked again before that time, however short the backoff (cloud-api.md, Retries).
func TestUploadWaitsOutRetryAfter(t *testing.T) {
	db := openDB(t)
	sim, client := simCloud(t)
	createOrders(t, db, 1, 1)
	if err := sim.SetFaults(cloudsim.Faults{UploadErrorRate: 1, RetryAfter503: 2, RetryAfterDate: true}); err != nil {
		t.Fatal(err)
	}
	w := New(Options{DB: db, Cloud: client, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	type attempt struct {
		at  time.Time
		err error
	}
	attempts := make(chan attempt, 10)
	w.attempted = func(err error) { attempts <- attempt{time.Now(), err} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	first := <-attempts
	if first.err == nil {
		t.Fatal("the upload succeeded through a 503")
	}
	sim.SetFaults(cloudsim.Faults{})
	second := <-attempts
	cancel()
	<-done
	// The date has whole seconds: two seconds from the cloud's clock are at least one here.
	if gap := second.at.Sub(first.at); gap < time.Second {
		t.Errorf("asked again %v after a 503 with Retry-After two seconds ahead", gap)
	}
	if second.err != nil || len(sim.Events()) != 1 {
		t.Errorf("after the wait: %v, the cloud has %d events; want the order delivered", second.err, len(sim.Events()))
	}
}

// fakeCloud refuses events whose key contains "bad": as a whole batch with 400 when whole is
// set, else in the answer.
type fakeCloud struct {
	whole  bool
	reason string   // of the refusals in the answer; "" for "unknown product"
	claim  []string // keys every answer names as accepted and as rejected, sent or not
	got    []string
}

func (f *fakeCloud) Upload(_ context.Context, events []cloudapi.Event) (cloudapi.UploadResponse, error) {
	var r cloudapi.UploadResponse
	for _, e := range events {
		if strings.Contains(string(e.Data), `"note":"bad"`) {
			if f.whole {
				return cloudapi.UploadResponse{}, &cloud.Error{Op: "upload", Status: 400, Detail: "event " + e.Key + " is invalid"}
			}
			reason := cmp.Or(f.reason, "unknown product")
			r.Rejected = append(r.Rejected, cloudapi.Rejection{Key: e.Key, Reason: reason})
			continue
		}
		r.Accepted = append(r.Accepted, e.Key)
	}
	f.got = append(f.got, r.Accepted...)
	r.Accepted = append(r.Accepted, f.claim...)
	for _, k := range f.claim {
		r.Rejected = append(r.Rejected, cloudapi.Rejection{Key: k, Reason: "never sent"})
	}
	return r, nil
}

// An answer that names keys the batch did not hold settles none of them: each entry is
// settled by the answer to the batch that carried it, so every order reaches the cloud.
func TestAnswerSettlesOnlyTheBatchSent(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 1, 3)
	pending, err := db.PendingOutbox(ctx, 10)
	if err != nil || len(pending) != 3 {
		t.Fatalf("pending %d, %v", len(pending), err)
	}
	f := &fakeCloud{}
	for _, e := range pending {
		f.claim = append(f.claim, e.Key)
	}
	w := New(Options{DB: db, Cloud: f, Batch: 1})
	if n, err := w.Drain(ctx); err != nil || n != 3 {
		t.Fatalf("drain: %d %v", n, err)
	}
	if len(f.got) != 3 {
		t.Fatalf("the cloud received %v, want the three entries", f.got)
	}
	if rejected, _ := db.RejectedOutbox(ctx, 10); len(rejected) != 0 {
		t.Fatalf("set aside on another batch's answer: %+v", rejected)
	}
}

func TestRejectedEntriesAreSetAside(t *testing.T) {
	for _, whole := range []bool{false, true} {
		t.Run(fmt.Sprintf("whole-batch=%v", whole), func(t *testing.T) {
			db := openDB(t)
			ctx := context.Background()
			for i, note := range []string{"a", "bad", "c"} {
				o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew, Note: note}
				if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: fmt.Sprint(i), RequestHash: "h"}); err != nil {
					t.Fatal(err)
				}
			}
			f := &fakeCloud{whole: whole}
			w := New(Options{DB: db, Cloud: f})
			if n, err := w.Drain(ctx); err != nil || n != 3 {
				t.Fatalf("drain: %d %v", n, err)
			}
			if len(f.got) != 2 {
				t.Fatalf("the cloud took %v", f.got)
			}
			rejected, _ := db.RejectedOutbox(ctx, 10)
			if len(rejected) != 1 || rejected[0].LastError == "" {
				t.Fatalf("rejected %+v", rejected)
			}
			ledger, _ := db.OrderLedger(ctx, rejected[0].OrderID)
			if last := ledger[len(ledger)-1]; last.Stage != orders.StageUploadRejected || last.Error == "" {
				t.Fatalf("ledger %+v", ledger)
			}
		})
	}
}

// The reason the cloud gives for a refusal is outside input: it is kept cut to 1,000 bytes, in
// valid UTF-8, however long the answer made it.
func TestRejectionReasonIsBounded(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew, Note: "bad"}
	if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: "k", RequestHash: "h"}); err != nil {
		t.Fatal(err)
	}
	f := &fakeCloud{reason: "unknown product \xff" + strings.Repeat("é", 1<<19)}
	if n, err := New(Options{DB: db, Cloud: f}).Drain(ctx); err != nil || n != 1 {
		t.Fatalf("drain: %d %v", n, err)
	}
	rejected, _ := db.RejectedOutbox(ctx, 10)
	if len(rejected) != 1 {
		t.Fatalf("rejected %+v", rejected)
	}
	why := rejected[0].LastError
	if !strings.HasPrefix(why, "unknown product é") || len(why) > maxReasonBytes+len("…") || !utf8.ValidString(why) {
		t.Fatalf("reason kept: %d bytes, %q…", len(why), why[:min(len(why), 40)])
	}
}

// sizingCloud accepts every event and records the size of each batch as the client sends it.
type sizingCloud struct{ sizes []int }

func (c *sizingCloud) Upload(_ context.Context, events []cloudapi.Event) (cloudapi.UploadResponse, error) {
	b, err := json.Marshal(cloudapi.UploadRequest{Events: events})
	if err != nil {
		return cloudapi.UploadResponse{}, err
	}
	c.sizes = append(c.sizes, len(b))
	var r cloudapi.UploadResponse
	for _, e := range events {
		r.Accepted = append(r.Accepted, e.Key)
	}
	return r, nil
}

// Large orders go in batches of at most 4 MiB (cloud-api.md), not in one batch the cloud
// would refuse with 413.
func TestBatchesStayUnderFourMiB(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	lines := make([]orders.Line, 200)
	for i := range lines {
		lines[i] = orders.Line{ProductID: fmt.Sprint("P", i), Name: strings.Repeat("é", 100) + "<&>", Quantity: 1, UnitPrice: 100, LineTotal: 100}
	}
	const n = 90 // about 5.4 MB in all, in a default batch of 100
	for i := 0; i < n; i++ {
		o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew, Currency: "EUR", Lines: lines, Total: 20000}
		if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: fmt.Sprint(i), RequestHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	c := &sizingCloud{}
	w := New(Options{DB: db, Cloud: c})
	if settled, err := w.Drain(ctx); err != nil || settled != n {
		t.Fatalf("drain: %d %v", settled, err)
	}
	if len(c.sizes) < 2 {
		t.Fatalf("batches of %v bytes: the test's orders should need more than one", c.sizes)
	}
	for _, size := range c.sizes {
		if size > MaxBatchBytes {
			t.Errorf("a batch of %d bytes, over %d", size, MaxBatchBytes)
		}
	}
}

// An answer the contract does not give (a 202, a 204, a gateway's redirect), and a refusal that
// is not about the request's content (a 403 or 404 from a wrong cloud.url, a gateway or a
// firewall), is no refusal of the orders: the batch stays queued and is sent again
// (cloud-api.md); nothing is set aside as rejected.
func TestUnexpectedAnswersKeepTheOrdersQueued(t *testing.T) {
	for _, status := range []int{http.StatusAccepted, http.StatusNoContent, http.StatusFound, http.StatusNotModified,
		http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusGone, http.StatusUnsupportedMediaType} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			db := openDB(t)
			ctx := context.Background()
			createOrders(t, db, 1, 3)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if status == http.StatusFound {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(status)
			}))
			defer srv.Close()
			hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			c, err := cloud.New(srv.URL, "key", hc, "test")
			if err != nil {
				t.Fatal(err)
			}
			w := New(Options{DB: db, Cloud: c})
			_, err = w.Drain(ctx)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprint(status)) {
				t.Fatalf("a drain answered %d: %v, want an error naming the answer", status, err)
			}
			if rejected, _ := db.RejectedOutbox(ctx, 10); len(rejected) != 0 {
				t.Fatalf("answered %d: %d orders set aside as rejected: %+v", status, len(rejected), rejected)
			}
			if pending, rejected, _, err := db.OutboxBacklog(ctx); err != nil || pending != 3 || rejected != 0 {
				t.Fatalf("answered %d: %d events queued, %d rejected (%v), want 3 and 0", status, pending, rejected, err)
			}

		})
	}
}

// A batch refused whole is sent again one event at a time; once an order's creation is refused
// alone, its later change in the same batch is held back beside it, never sent, so the cloud
// never gets an order's change before the order.
func TestRefusedCreationHoldsItsChangesBack(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	var ids []string
	for i, note := range []string{"bad", "fine"} {
		o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew, Note: note}
		made, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: fmt.Sprint(i), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, made.ID)
	}
	if _, _, err := db.UpdateOrder(ctx, ids[0], func(o *orders.Order) error { o.Note = "fixed"; return nil }); err != nil {
		t.Fatal(err)
	}
	f := &fakeCloud{whole: true}
	w := New(Options{DB: db, Cloud: f})
	if n, err := w.Drain(ctx); err != nil || n != 3 {
		t.Fatalf("drain: %d %v", n, err)
	}
	if want := fmt.Sprintf("[order:%s:created]", ids[1]); fmt.Sprint(f.got) != want {
		t.Fatalf("the cloud took %v, want %s only", f.got, want)
	}
	rejected, _ := db.RejectedOutbox(ctx, 10)
	if len(rejected) != 2 || rejected[0].Type != "order.updated" || !strings.Contains(rejected[0].LastError, "held back") ||
		rejected[1].Type != "order.created" || !strings.Contains(rejected[1].LastError, "400") {
		t.Fatalf("set aside %+v", rejected)
	}
}

// retryingCloud refuses, once, any batch holding an event with note "bad" (400), and, when it
// takes the event named at, has an admin retry every refused event meanwhile.
type retryingCloud struct {
	db      *storage.DB
	at      string
	refused bool
	got     []string
}

func (c *retryingCloud) Upload(ctx context.Context, events []cloudapi.Event) (cloudapi.UploadResponse, error) {
	for _, e := range events {
		if strings.Contains(string(e.Data), `"note":"bad"`) && !c.refused {
			if len(events) == 1 {
				c.refused = true
			}
			return cloudapi.UploadResponse{}, &cloud.Error{Op: "upload", Status: 400, Detail: "event " + e.Key + " is invalid"}
		}
	}
	var r cloudapi.UploadResponse
	for _, e := range events {
		if e.Key == c.at {
			if _, err := c.db.RetryRejectedOutbox(ctx); err != nil {
				return r, err
			}
		}
		r.Accepted = append(r.Accepted, e.Key)
		c.got = append(c.got, e.Key)
	}
	return r, nil
}

// An admin's retry while a refused batch is sent one event at a time puts the refused creation
// back in the queue: its order's later change in that batch still waits, and goes after it.
func TestRetryDuringASplitKeepsTheOrder(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	var made []orders.Order
	for i, note := range []string{"bad", "fine"} {
		o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew, Note: note}
		m, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: fmt.Sprint(i), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, m)
	}
	if _, _, err := db.UpdateOrder(ctx, made[0].ID, func(o *orders.Order) error { o.Status = "ready"; return nil }); err != nil {
		t.Fatal(err)
	}
	created := func(o orders.Order) string { return "order:" + o.ID + ":created" }
	c := &retryingCloud{db: db, at: created(made[1])}
	w := New(Options{DB: db, Cloud: c})
	for range 3 {
		if _, err := w.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var first, change = -1, -1
	for i, k := range c.got {
		switch {
		case k == created(made[0]):
			first = i
		case strings.HasPrefix(k, "order:"+made[0].ID+":v"):
			change = i
		}
	}
	if first < 0 || change < 0 || change < first {
		t.Fatalf("the cloud got %v: the order's change before its creation, or one of them never", c.got)
	}
}

// A stored event that is not JSON (a damaged database) is set aside as rejected with a reason
// saying so, rather than failing every upload after it for good.
func TestDamagedEventIsSetAside(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 2, 3)
	raw, err := sql.Open("sqlite", db.Path())
	if err != nil {
		t.Fatal(err)
	}
	var damaged string
	if err := raw.QueryRow(`UPDATE outbox SET data = '{"broken' WHERE seq = (SELECT min(seq) FROM outbox) RETURNING key`).Scan(&damaged); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	sim, client := simCloud(t)
	w := New(Options{DB: db, Cloud: client})
	if _, err := w.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if st, _ := db.OrderStats(ctx); st.OutboxPending != 0 || st.OutboxRejected != 1 || len(sim.Events()) != 5 {
		t.Fatalf("after the drain: %+v, the cloud has %d events; want 5 sent and the damaged one set aside", st, len(sim.Events()))
	}
	rej, err := db.RejectedOutbox(ctx, 10)
	if err != nil || len(rej) != 1 || rej[0].Key != damaged || rej[0].LastError != unsendableReason {
		t.Fatalf("rejected: %+v, %v; want %s with the reason", rej, err, damaged)
	}
}

// A batch split for its oversized answer keeps an order's events in order: when the cloud
// refuses an order's creation, its later change is held back, not sent in the batch's other half.
func TestSplitBatchHoldsBackARefusedOrdersLaterEvents(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	mk := func(note string) orders.Order {
		o, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew, Currency: "EUR", Note: note}, IdempotencyKey: note, RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	a := mk("a")
	mk("b")
	if _, _, err := db.UpdateOrder(ctx, a.ID, func(o *orders.Order) error { o.Status = orders.StatusAccepted; return nil }); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req cloudapi.UploadRequest
		json.NewDecoder(r.Body).Decode(&req)
		if len(req.Events) >= 3 {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"accepted":[],"duplicate":[],"rejected":[{"key":"x","reason":"%s"}]}`, strings.Repeat("a", cloud.MaxUploadAnswer))
			return
		}
		res := cloudapi.UploadResponse{Accepted: []string{}, Duplicate: []string{}, Rejected: []cloudapi.Rejection{}}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range req.Events {
			if strings.Contains(e.Key, a.ID) && e.Type == "order.created" {
				res.Rejected = append(res.Rejected, cloudapi.Rejection{Key: e.Key, Reason: "unknown shop"})
				continue
			}
			got = append(got, e.Type+" "+e.Key)
			res.Accepted = append(res.Accepted, e.Key)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	}))
	defer ts.Close()
	client, _ := cloud.New(ts.URL, "k", ts.Client(), "test")
	w := New(Options{DB: db, Cloud: client})
	if _, err := w.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range got {
		if strings.Contains(e, a.ID) {
			t.Errorf("the cloud got %s, a change of an order whose creation it refused", e)
		}
	}
	if st, _ := db.OrderStats(ctx); st.OutboxPending != 0 || st.OutboxRejected != 2 || len(got) != 1 {
		t.Errorf("after the drain: %+v, the cloud took %v; want order b's creation, order a's two events set aside", st, got)
	}
}

// An upload answer over its limit (long reasons for a big batch, say) is not retried whole for
// ever: smaller batches get answers that fit, and the events the cloud already stored come back
// as duplicates.
func TestOversizedAnswerSplitsTheBatch(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 2, 4)
	sim := cloudsim.New(cloudsim.Options{Products: 1, StoreKey: "k"})
	oversized := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req cloudapi.UploadRequest
		json.Unmarshal(body, &req)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if len(req.Events) <= 2 {
			sim.Handler().ServeHTTP(w, r)
			return
		}
		oversized++
		sim.Handler().ServeHTTP(httptest.NewRecorder(), r) // stored, and the answer lost in a long one
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"accepted":[],"duplicate":[],"rejected":[{"key":"x","reason":"%s"}]}`, strings.Repeat("a", cloud.MaxUploadAnswer))
	}))
	defer ts.Close()
	client, _ := cloud.New(ts.URL, "k", ts.Client(), "test")
	w := New(Options{DB: db, Cloud: client})
	if _, err := w.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	// 8 events: too large, 4: too large, 2: fits, and the rest of the drain in twos.
	if st, _ := db.OrderStats(ctx); st.OutboxPending != 0 || st.OutboxRejected != 0 || len(sim.Events()) != 8 || oversized != 2 {
		t.Fatalf("after the drain: %+v, the cloud has %d events, %d oversized answers; want 8 events, 2 oversized answers", st, len(sim.Events()), oversized)
	}
}

// One event whose answer is always too large is set aside alone, and the batch size is not left
// at one event for the rest of the drain: the others go together.
func TestOneOversizedAnswerDoesNotShrinkTheDrain(t *testing.T) {
	// The event's place in the queue, and the requests the drain takes: with the first, 8, 4, 2
	// and 1 events with it are too large, then the 7 others go at once; with the second, the
	// first alone gets an answer after 8, 4 and 2, then the second alone is too large, then the
	// 6 others go at once.
	for _, c := range []struct{ at, requests int }{{0, 5}, {1, 6}} {
		db := openDB(t)
		ctx := context.Background()
		createOrders(t, db, 1, 8)
		queued, err := db.PendingOutbox(ctx, 8)
		if err != nil || len(queued) != 8 {
			t.Fatal(queued, err)
		}
		big := queued[c.at].Key
		sim := cloudsim.New(cloudsim.Options{Products: 1, StoreKey: "k"})
		requests := 0
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests++
			body, _ := io.ReadAll(r.Body)
			if bytes.Contains(body, []byte(big)) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"accepted":[],"duplicate":[],"rejected":[{"key":"x","reason":"%s"}]}`, strings.Repeat("a", cloud.MaxUploadAnswer))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			sim.Handler().ServeHTTP(w, r)
		}))
		client, _ := cloud.New(ts.URL, "k", ts.Client(), "test")
		w := New(Options{DB: db, Cloud: client})
		if _, err := w.Drain(ctx); err != nil {
			t.Fatalf("Drain: %v", err)
		}
		ts.Close()
		if st, _ := db.OrderStats(ctx); st.OutboxPending != 0 || st.OutboxRejected != 1 || len(sim.Events()) != 7 || requests != c.requests {
			t.Errorf("oversized event at %d: %+v, the cloud has %d events, after %d requests; want 7 events in %d requests",
				c.at, st, len(sim.Events()), requests, c.requests)
		}
	}
}

// silentCloud answers every batch 200 without naming any of its events.
type silentCloud struct{}

func (silentCloud) Upload(context.Context, []cloudapi.Event) (cloudapi.UploadResponse, error) {
	return cloudapi.UploadResponse{}, nil
}

// An answer that settles nothing is no success: the status keeps no last_success for it (it
// says when a batch last got through), and the drain fails.
func TestAnswerOfNothingIsNoSuccess(t *testing.T) {
	db := openDB(t)
	createOrders(t, db, 1, 3)
	w := New(Options{DB: db, Cloud: silentCloud{}})
	if _, err := w.Drain(context.Background()); err == nil {
		t.Fatal("a drain whose answers named no event succeeded")
	}
	if st := w.State(); st.LastSuccess != nil {
		t.Fatalf("status %+v: a last success for an answer that settled nothing", st)
	}
}

// downThenRefuses is a WAN down for the first upload, then a cloud that refuses every event.
type downThenRefuses struct{ calls atomic.Int32 }

func (d *downThenRefuses) Upload(context.Context, []cloudapi.Event) (cloudapi.UploadResponse, error) {
	if d.calls.Add(1) == 1 {
		return cloudapi.UploadResponse{}, errors.New("cloud: upload: dial tcp 10.0.0.1:443: connect: connection refused")
	}
	return cloudapi.UploadResponse{}, &cloud.Error{Op: "upload", Status: http.StatusBadRequest, Detail: "unknown product"}
}

// Once the WAN is back, a cloud that refuses the events (400) is a cloud that answers: status
// no longer shows the connection refused of the outage (upload_refused says what is refused).
func TestRefusalAfterOutageClearsTheError(t *testing.T) {
	db := openDB(t)
	createOrders(t, db, 1, 1)
	w := New(Options{DB: db, Cloud: &downThenRefuses{}, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	// The state as each drain left it, read before the next drain can change it.
	type drained struct {
		err error
		st  State
	}
	attempts := make(chan drained, 100)
	w.attempted = func(err error) { attempts <- drained{err, w.State()} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	if a := <-attempts; a.err == nil || !strings.Contains(a.st.LastError, "connection refused") {
		t.Errorf("during the outage: %v, status %+v", a.err, a.st)
	}
	a := <-attempts
	if a.err != nil {
		t.Errorf("after the outage: %v", a.err)
	}
	st := a.st
	cancel()
	<-done
	if st.LastError != "" || st.LastSuccess == nil {
		t.Fatalf("status after the cloud refused the event: %+v, want no error and a last success", st)
	}
	if st, _ := db.OrderStats(context.Background()); st.OutboxPending != 0 || st.OutboxRejected != 1 {
		t.Fatalf("outbox %+v, want the event set aside", st)
	}
}

// Run deletes the entries the cloud acknowledged longer than KeepSent ago, at start and then
// every PruneEvery; the orders stay.
func TestRunPrunesWhatWasDeliveredLongAgo(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 1, 3)
	w := New(Options{DB: db, Cloud: &fakeCloud{}, KeepSent: time.Nanosecond, PruneEvery: 10 * time.Millisecond})
	if n, err := w.Drain(ctx); err != nil || n != 3 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	pruned := make(chan int64, 100)
	w.pruned = func(n int64, err error) {
		if err != nil {
			t.Errorf("prune: %v", err)
		}
		pruned <- n
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- w.Run(runCtx) }()
	var total int64
	for total < 3 {
		select {
		case n := <-pruned:
			total += n
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of the 3 delivered entries deleted within 30 s", total)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	list, err := db.ListOrders(ctx, storage.OrderFilter{Limit: 10})
	if err != nil || len(list) != 3 || total != 3 {
		t.Fatalf("%d orders (%v), %d entries deleted; want 3 and 3", len(list), err, total)
	}
}

// By default an acknowledged entry stays a week and the outbox is pruned hourly, as
// operations.md tells shop IT; the daemon passes neither.
func TestPruneDefaultsAreAWeekCheckedHourly(t *testing.T) {
	w := New(Options{DB: openDB(t), Cloud: &fakeCloud{}})
	if w.o.KeepSent != 7*24*time.Hour || w.o.PruneEvery != time.Hour {
		t.Fatalf("entries kept %v, pruned every %v; operations.md says a week, hourly", w.o.KeepSent, w.o.PruneEvery)
	}
}

// failingCloud answers 500 to every batch holding an event it fails on (an order noted
// "poison"), or to every batch while down; it takes the others.
type failingCloud struct {
	down  bool
	calls int
	got   []string
}

func (f *failingCloud) Upload(_ context.Context, events []cloudapi.Event) (cloudapi.UploadResponse, error) {
	f.calls++
	var r cloudapi.UploadResponse
	for _, e := range events {
		if f.down || strings.Contains(string(e.Data), `"note":"poison"`) {
			return cloudapi.UploadResponse{}, &cloud.Error{Op: "upload", Status: http.StatusInternalServerError, Detail: "internal error"}
		}
		r.Accepted = append(r.Accepted, e.Key)
	}
	f.got = append(f.got, r.Accepted...)
	return r, nil
}

// An event the cloud fails on (a 500 whenever it is in the batch) holds back neither the other
// orders nor anything but its own order's later events: those stay queued, in order, and are
// retried; when the cloud fails on everything, an attempt costs the batch and two events alone.
func TestEventTheCloudFailsOnHoldsBackOnlyItsOrder(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	poison, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: orders.Order{Source: orders.SourceLAN, DeviceID: "pos-p", Status: orders.StatusNew,
		Currency: "EUR", Note: "poison"}, IdempotencyKey: "p", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	createOrders(t, db, 4, 1)
	if _, _, err := db.UpdateOrder(ctx, poison.ID, func(o *orders.Order) error { o.Status = orders.StatusAccepted; return nil }); err != nil {
		t.Fatal(err)
	}

	f := &failingCloud{down: true}
	w := New(Options{DB: db, Cloud: f, Batch: 10})
	if n, err := w.Drain(ctx); n != 0 || err == nil || f.calls != 3 {
		t.Fatalf("cloud down: %d settled (%v) in %d uploads; want none, an error, in 3 uploads", n, err, f.calls)
	}

	f.down = false
	for range 2 {
		if _, err := w.Drain(ctx); err == nil || !strings.Contains(err.Error(), "500") {
			t.Fatalf("drain: %v, want the cloud's 500", err)
		}
	}
	if len(f.got) != 4 {
		t.Fatalf("the cloud got %d events, want the 4 other orders'", len(f.got))
	}
	pending, err := db.PendingOutbox(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 || pending[0].OrderID != poison.ID || pending[1].OrderID != poison.ID || pending[0].Seq > pending[1].Seq {
		t.Fatalf("queued: %+v; want the failed order's creation and change, in order", pending)
	}
	if rejected, _ := db.RejectedOutbox(ctx, 10); len(rejected) != 0 {
		t.Fatalf("set aside for a 500: %+v", rejected)
	}
}

// Two events the cloud fails on, of two orders, end up side by side at the head of the queue once
// the others went: they do not pass for an outage, and the orders after them still go.
func TestTwoEventsTheCloudFailsOnDoNotStopTheQueue(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	order := func(device, note string) {
		t.Helper()
		if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: orders.Order{Source: orders.SourceLAN, DeviceID: device, Status: orders.StatusNew,
			Currency: "EUR", Note: note}, IdempotencyKey: device + note, RequestHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	order("pos-1", "poison")
	order("pos-2", "good")
	order("pos-3", "poison")
	f := &failingCloud{}
	w := New(Options{DB: db, Cloud: f, Batch: 10})
	w.Drain(ctx) // the good one goes; the two others stay, side by side
	order("pos-4", "good")
	for range 2 {
		w.Drain(ctx)
	}
	wantGoodGotPoisonQueued(t, db, f, 2, 2)
}

// sizedCloud answers too large for batches of more than two events, fails once with a 502 on the
// first batch it would take, and takes the others; it notes each batch's size.
type sizedCloud struct {
	failed bool
	sizes  []int
}

func (f *sizedCloud) Upload(_ context.Context, events []cloudapi.Event) (cloudapi.UploadResponse, error) {
	f.sizes = append(f.sizes, len(events))
	if len(events) > 2 {
		return cloudapi.UploadResponse{}, fmt.Errorf("upload: %w", cloud.ErrAnswerTooLarge)
	}
	if !f.failed {
		f.failed = true
		return cloudapi.UploadResponse{}, &cloud.Error{Op: "upload", Status: http.StatusBadGateway}
	}
	var r cloudapi.UploadResponse
	for _, e := range events {
		r.Accepted = append(r.Accepted, e.Key)
	}
	return r, nil
}

// A batch being halved for an answer too large that meets a passing 502 goes on in the size that
// gets an answer, not one event at a time for the rest of the drain.
func TestPassingFaultDuringASplitKeepsTheSize(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 2, 4)
	f := &sizedCloud{}
	w := New(Options{DB: db, Cloud: f})
	for range 2 {
		w.Drain(ctx)
	}
	if pending, _ := db.PendingOutbox(ctx, 10); len(pending) != 0 {
		t.Fatalf("%d events left", len(pending))
	}
	if want := []int{8, 4, 2, 1, 1, 2, 2, 2}; fmt.Sprint(f.sizes) != fmt.Sprint(want) {
		t.Fatalf("batches of %v, want %v", f.sizes, want)
	}
}

// A cloud down for long (a 502 to everything) costs each attempt at most the batch, retriedAlone
// events it failed on alone before and two new ones, however many attempts it has failed: the
// events failed on alone are not all sent again at each attempt. Once it is back, everything
// goes.
func TestLongOutageAttemptsStayBounded(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 20, 1)
	f := &failingCloud{down: true}
	w := New(Options{DB: db, Cloud: f, Batch: 100})
	for attempt := range 30 {
		f.calls = 0
		if _, err := w.Drain(ctx); err == nil {
			t.Fatal("a drain to a cloud that is down succeeded")
		}
		if f.calls > 1+retriedAlone+2 {
			t.Fatalf("attempt %d sent %d requests to a cloud that is down, want at most %d", attempt, f.calls, 1+retriedAlone+2)
		}
	}
	f.down = false
	if n, err := w.Drain(ctx); err != nil || n != 20 {
		t.Fatalf("the cloud back: drained %d, %v; want 20", n, err)
	}
}

// Events the cloud always fails on, more of them than an attempt retries alone, at the head of the
// queue, do not hold back the events behind them.
func TestManyEventsTheCloudFailsOnDoNotStopTheQueue(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	poisonOrders(t, db, 8)
	createOrders(t, db, 10, 1)
	f := &failingCloud{}
	w := New(Options{DB: db, Cloud: f, Batch: 100})
	for range 12 {
		w.Drain(ctx)
	}
	wantGoodGotPoisonQueued(t, db, f, 10, 8)
}

// wantGoodGotPoisonQueued checks that the cloud got the good orders' events and that those it
// fails on are still queued.
func wantGoodGotPoisonQueued(t *testing.T, db *storage.DB, f *failingCloud, good, poison int) {
	t.Helper()
	if len(f.got) != good {
		t.Fatalf("the cloud got %d events, want the %d good orders'", len(f.got), good)
	}
	if pending, _ := db.PendingOutbox(context.Background(), 1000); len(pending) != poison {
		t.Fatalf("%d events queued, want the %d the cloud fails on", len(pending), poison)
	}
}

// An upload answer of 200 that is not the document (a reason of another type, for one event of
// the batch) does not hold the queue for ever: the batch goes one event at a time, the others
// are delivered, and the event whose answer stays malformed is set aside, saying why (kept
// queued, it would hold back every upload after it; the admin may send it again). A page that
// is not JSON at all (a captive portal's) is the WAN's failure: nothing is set aside.
func TestMalformedAnswerDoesNotHoldTheQueue(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 3, 1)
	pending, err := db.PendingOutbox(ctx, 10)
	if err != nil || len(pending) != 3 {
		t.Fatalf("%d pending, %v", len(pending), err)
	}
	bad := pending[0].Key
	c := handlerCloud(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req cloudapi.UploadRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var accepted []string
		w.Header().Set("Content-Type", "application/json")
		for _, e := range req.Events {
			if e.Key == bad {
				fmt.Fprintf(w, `{"accepted":[],"rejected":[{"key":%q,"reason":{"code":7}}]}`, bad)
				return
			}
			accepted = append(accepted, e.Key)
		}
		json.NewEncoder(w).Encode(cloudapi.UploadResponse{Accepted: accepted})
	}))
	w := New(Options{DB: db, Cloud: c})
	if _, err := w.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if p, rejected, _, err := db.OutboxBacklog(ctx); err != nil || p != 0 || rejected != 1 {
		t.Fatalf("%d queued, %d set aside (%v); want 0 and 1", p, rejected, err)
	}
	r, err := db.RejectedOutbox(ctx, 10)
	if err != nil || len(r) != 1 || r[0].Key != bad || !strings.Contains(r[0].LastError, "could not be read") {
		t.Fatalf("set aside: %+v, %v; want %s, saying its answer could not be read", r, err, bad)
	}

	// A portal's page, 200 in HTML, in the cloud's place.
	for i := range 2 {
		if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: orders.Order{Source: orders.SourceLAN, DeviceID: fmt.Sprint("pos-w", i), Status: orders.StatusNew,
			Currency: "EUR"}, IdempotencyKey: "w", RequestHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	pc := handlerCloud(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Sign in to the guest Wi-Fi</body></html>"))
	}))
	if _, err := New(Options{DB: db, Cloud: pc}).Drain(ctx); err == nil || !strings.Contains(err.Error(), "text/html") {
		t.Fatalf("drain through a portal: %v; want an error naming its page", err)
	}
	if p, rejected, _, err := db.OutboxBacklog(ctx); err != nil || p != 2 || rejected != 1 {
		t.Fatalf("after the portal: %d queued, %d set aside (%v); want 2 and the 1 of before", p, rejected, err)
	}

	// A malformed answer that still says the event was accepted settles it as delivered.
	ac := handlerCloud(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req cloudapi.UploadRequest
		json.NewDecoder(r.Body).Decode(&req)
		var keys []string
		for _, e := range req.Events {
			keys = append(keys, fmt.Sprintf("%q", e.Key))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"accepted":[%s],"duplicate":{"oops":1}}`, strings.Join(keys, ","))
	}))
	if _, err := New(Options{DB: db, Cloud: ac}).Drain(ctx); err != nil {
		t.Fatalf("drain to a cloud that accepts in a malformed answer: %v", err)
	}
	if p, rejected, _, err := db.OutboxBacklog(ctx); err != nil || p != 0 || rejected != 1 {
		t.Fatalf("after the accepting answers: %d queued, %d set aside (%v); want 0 and 1", p, rejected, err)
	}
}

// Events failed on alone during an outage, behind two the cloud always fails on and more of them
// than an attempt retries alone, each get their turn: once the cloud is back they all go.
func TestEventsFailedOnDuringAnOutageGoOnceTheCloudIsBack(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	poisonOrders(t, db, 2)
	createOrders(t, db, 6, 1)
	f := &failingCloud{down: true}
	w := New(Options{DB: db, Cloud: f, Batch: 4})
	for range 5 {
		w.Drain(ctx)
	}
	f.down = false
	for range 12 {
		w.Drain(ctx)
	}
	if len(f.got) != 6 {
		t.Fatalf("the cloud got %d events once back, want the 6 good orders'", len(f.got))
	}
}

// A platform whose every answer is malformed (a bug of its own, not of one event) does not have
// the queue set aside: the events stay queued, but for those answered so malformedTries times,
// and each attempt ends as the platform failing, in a bounded number of requests.
func TestEveryAnswerMalformedKeepsTheQueue(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 15, 1)
	calls := 0
	c := handlerCloud(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"accepted":{"count":1}}`))
	}))
	w := New(Options{DB: db, Cloud: c})
	for range 5 {
		calls = 0
		n, err := w.Drain(ctx)
		if err == nil || !strings.Contains(err.Error(), "not an upload answer") {
			t.Fatalf("drain: %v; want the malformed answer named", err)
		}
		if n != 0 {
			t.Fatalf("drain settled %d: counted, the events set aside would keep Run from backing off", n)
		}
		if calls > 1+retriedAlone+2 {
			t.Fatalf("an attempt made %d requests, want at most %d", calls, 1+retriedAlone+2)
		}
	}
	if p, rejected, _, err := db.OutboxBacklog(ctx); err != nil || rejected > 5 || p+rejected != 15 {
		t.Fatalf("%d queued, %d set aside (%v) after 5 attempts; want at most one an attempt", p, rejected, err)
	}
}

// Right after a start nothing says the platform answers well: a malformed answer to the first
// event sent alone (orders.outbox_batch 1) is not taken as about that event, or every restart
// during a fault of the platform would set one more order aside.
func TestMalformedFirstAnswerAfterStartKeepsTheEvent(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 3, 1)
	c := handlerCloud(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"accepted":{"count":1}}`))
	}))
	for range 5 { // a start before each attempt
		w := New(Options{DB: db, Cloud: c, Batch: 1})
		if _, err := w.Drain(ctx); err == nil || !strings.Contains(err.Error(), "not an upload answer") {
			t.Fatalf("drain: %v; want the malformed answer named", err)
		}
	}
	if p, rejected, _, err := db.OutboxBacklog(ctx); err != nil || rejected != 0 || p != 3 {
		t.Fatalf("%d queued, %d set aside (%v) after 5 starts; want all 3 queued", p, rejected, err)
	}
}

// An event answered malformed alone stays queued when no answer of the attempt could be read:
// another event of it refused (a 4xx) or answered too large, both set aside, did not go
// through.
func TestMalformedAnswerKeptWhenNothingGoesThrough(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer func(w http.ResponseWriter)
	}{
		{"refused", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"title":"bad event"}`))
		}},
		{"answer too large", func(w http.ResponseWriter) {
			w.Write([]byte(`{"accepted":["`))
			w.Write(bytes.Repeat([]byte("x"), 9<<20))
			w.Write([]byte(`"]}`))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := openDB(t)
			ctx := context.Background()
			createOrders(t, db, 2, 1)
			pending, err := db.PendingOutbox(ctx, 10)
			if err != nil || len(pending) != 2 {
				t.Fatalf("%d pending, %v", len(pending), err)
			}
			first := pending[0].Key
			cl := handlerCloud(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req cloudapi.UploadRequest
				json.NewDecoder(r.Body).Decode(&req)
				w.Header().Set("Content-Type", "application/json")
				switch {
				case len(req.Events) > 1:
					w.WriteHeader(http.StatusInternalServerError)
				case req.Events[0].Key == first:
					w.Write([]byte(`{"accepted":{"count":1}}`))
				default:
					c.answer(w)
				}
			}))
			New(Options{DB: db, Cloud: cl}).Drain(ctx)
			rejected, err := db.RejectedOutbox(ctx, 10)
			var keys []string
			for _, e := range rejected {
				keys = append(keys, e.Key+": "+e.LastError)
			}
			if err != nil || len(rejected) != 1 || rejected[0].Key == first {
				t.Fatalf("set aside %q (%v): want the second event only, the first (%s, answered malformed) still queued", keys, err, first)
			}
		})
	}
}

// A failure between a good answer and a malformed one (a 5xx to the batch, then each event sent
// alone answered malformed) leaves nothing known good before it: the events stay queued.
func TestMalformedAnswerAfterAFailureKeepsTheEvent(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	createOrders(t, db, 1, 1)
	broken := false
	c := handlerCloud(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req cloudapi.UploadRequest
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case !broken:
			var keys []string
			for _, e := range req.Events {
				keys = append(keys, e.Key)
			}
			json.NewEncoder(w).Encode(cloudapi.UploadResponse{Accepted: keys})
		case len(req.Events) > 1:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.Write([]byte(`{"accepted":{"count":1}}`))
		}
	}))
	w := New(Options{DB: db, Cloud: c})
	if _, err := w.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	broken = true
	createOrders(t, db, 3, 1) // pos-0's again (its idempotency key): two new orders
	w.Drain(ctx)
	if p, rejected, _, err := db.OutboxBacklog(ctx); err != nil || rejected != 0 || p != 2 {
		t.Fatalf("%d queued, %d set aside (%v); want both queued", p, rejected, err)
	}
}

// An event answered malformed is set aside, not kept for ever, where nothing else of the attempt
// can go through: sent alone from the head of the queue (a batch of one), or with only its own
// order's events behind it.
func TestMalformedAnswerAloneIsSetAside(t *testing.T) {
	for _, batch := range []int{1, 100} {
		t.Run(fmt.Sprint("batch ", batch), func(t *testing.T) {
			db := openDB(t)
			ctx := context.Background()
			o, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: orders.Order{Source: orders.SourceLAN, DeviceID: "pos-1", Status: orders.StatusNew,
				Currency: "EUR"}, IdempotencyKey: "k", RequestHash: "h"})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { o.Status = orders.StatusAccepted; return nil }); err != nil {
				t.Fatal(err)
			}
			pending, err := db.PendingOutbox(ctx, 10)
			if err != nil || len(pending) != 2 {
				t.Fatalf("%d pending, %v; want the creation and its change", len(pending), err)
			}
			created := pending[0].Key
			c := handlerCloud(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				var req cloudapi.UploadRequest
				json.NewDecoder(r.Body).Decode(&req)
				for _, e := range req.Events {
					if e.Key == created {
						fmt.Fprintf(w, `{"rejected":[{"key":%q,"reason":{"code":7}}]}`, created)
						return
					}
				}
				var keys []string
				for _, e := range req.Events {
					keys = append(keys, e.Key)
				}
				json.NewEncoder(w).Encode(cloudapi.UploadResponse{Accepted: keys})
			}))
			w := New(Options{DB: db, Cloud: c, Batch: batch})
			for range malformedTries {
				w.Drain(ctx)
			}
			if p, rejected, _, err := db.OutboxBacklog(ctx); err != nil || p != 0 || rejected != 2 {
				t.Fatalf("%d queued, %d set aside (%v); want 0, and the creation set aside with its change", p, rejected, err)
			}
		})
	}
}

// poisonOrders makes n orders, each of a device of its own, that failingCloud always fails on.
func poisonOrders(t *testing.T, db *storage.DB, n int) {
	t.Helper()
	for i := range n {
		if _, _, err := db.CreateOrder(context.Background(), storage.NewOrder{Order: orders.Order{Source: orders.SourceLAN, DeviceID: fmt.Sprint("pos-p", i),
			Status: orders.StatusNew, Currency: "EUR", Note: "poison"}, IdempotencyKey: fmt.Sprint("p", i), RequestHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDrainsThroughAnswersItCannotRead uploads to a cloud that stores every batch but answers a
// third of them with a body that is not the upload answer (cloud-api.md, Event upload): the
// events whose answer could not be read are sent again alone, and those it then cannot read
// either are set aside saying the cloud may have stored them. Sent again by the admin once the
// cloud mends, each is settled by its duplicate: the cloud holds every event once, and the
// outbox nothing.
func TestDrainsThroughAnswersItCannotRead(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	sim, client := simCloud(t)
	createOrders(t, db, 3, 40)
	if err := sim.SetFaults(cloudsim.Faults{BadAnswerRate: 0.35}); err != nil {
		t.Fatal(err)
	}
	attempts, _ := runWorker(t, db, client)
	// drained waits for an attempt that leaves nothing queued.
	drained := func(what string) storage.OrderStats {
		t.Helper()
		for range 1000 {
			select {
			case <-attempts:
			case <-time.After(time.Minute):
				t.Fatalf("%s: no attempt for a minute", what)
			}
			st, err := db.OrderStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.OutboxPending == 0 {
				return st
			}
		}
		t.Fatalf("%s: the outbox never emptied", what)
		return storage.OrderStats{}
	}
	st := drained("through the unreadable answers")
	if sim.Stats().Faults.BadAnswers == 0 {
		t.Fatal("no unreadable answer was sent: the test proves nothing")
	}
	setAside, err := db.RejectedOutbox(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(setAside)) != st.OutboxRejected || len(setAside) == 0 {
		t.Fatalf("%d entries set aside, the stats say %d; want some (the faults are seeded: the cloud answered about some of them alone in a form that cannot be read)",
			len(setAside), st.OutboxRejected)
	}
	for _, e := range setAside {
		if !strings.Contains(e.LastError, "could not be read") || !strings.Contains(e.LastError, "it may have stored it") {
			t.Errorf("%s set aside with %q; want the reason to say the answer could not be read and the cloud may have it", e.Key, e.LastError)
		}
	}
	t.Logf("%d unreadable answers, %d events set aside", sim.Stats().Faults.BadAnswers, len(setAside))

	// The cloud mends; the admin sends the set-aside events again.
	if err := sim.SetFaults(cloudsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	for _, e := range setAside {
		if _, err := db.RetryOutbox(ctx, e.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if st := drained("after the retries"); st.OutboxRejected != 0 {
		t.Fatalf("after the cloud mended and the admin retried: %+v; want nothing set aside", st)
	}
	events := sim.Events()
	keys := map[string]bool{}
	for _, e := range events {
		keys[e.Key] = true
	}
	if len(events) != 120 || len(keys) != 120 {
		t.Fatalf("the cloud holds %d events, %d keys; want each of the 120 once", len(events), len(keys))
	}
}
