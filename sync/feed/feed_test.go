package feed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
	"github.com/storeedge/storeedge/tools/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	sim    *cloudsim.Sim
	ts     *httptest.Server
	db     *storage.DB
	client *cloud.Client
}

// shopFor opens a shop's database, closed when the test ends, and a client of the cloud at srv.
func shopFor(t *testing.T, srv *httptest.Server) (*storage.DB, *cloud.Client) {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	client, err := cloud.New(srv.URL, "k", srv.Client(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return db, client
}

func newEnv(t *testing.T, products int) *env {
	t.Helper()
	sim := cloudsim.New(cloudsim.Options{Seed: 7, Products: products, StoreKey: "k"})
	ts := httptest.NewServer(sim.Handler())
	t.Cleanup(ts.Close)
	db, client := shopFor(t, ts)
	return &env{sim: sim, ts: ts, db: db, client: client}
}

type exported struct {
	ID        string          `json:"id"`
	Rev       int64           `json:"rev"`
	Doc       json.RawMessage `json:"doc"`
	Corrupted bool            `json:"corrupted"`
}

// assertConverged checks that every collection holds exactly the cloud's live items, except items
// whose current revision the cloud sends malformed: those must be quarantined and not served at
// that revision.
func assertConverged(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	quarantined := map[string]bool{}
	q, err := e.db.Quarantine(ctx, "", 100000)
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range q {
		quarantined[entry.Collection+"/"+entry.ItemID] = true
	}
	for _, c := range cloudapi.Collections {
		var buf bytes.Buffer
		if err := e.sim.Export(&buf, c); err != nil {
			t.Fatal(err)
		}
		want := map[string]exported{}
		sc := bufio.NewScanner(&buf)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var x exported
			if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
				t.Fatal(err)
			}
			want[x.ID] = x
		}
		got := map[string]storage.Item{}
		for after := ""; ; {
			items, err := e.db.List(ctx, c, after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) == 0 {
				break
			}
			for _, it := range items {
				got[it.ID] = it
			}
			after = items[len(items)-1].ID
		}
		for id, w := range want {
			g, ok := got[id]
			if w.Corrupted {
				if !quarantined[c+"/"+id] {
					t.Errorf("%s %s: malformed on the wire but not quarantined", c, id)
				}
				if ok && g.Rev >= w.Rev {
					t.Errorf("%s %s: malformed rev %d applied", c, id, w.Rev)
				}
				continue
			}
			if !ok {
				t.Errorf("%s %s: missing locally", c, id)
				continue
			}
			if g.Rev != w.Rev || !bytes.Equal(g.Doc, w.Doc) {
				t.Errorf("%s %s: local rev %d %s, cloud rev %d %s", c, id, g.Rev, g.Doc, w.Rev, w.Doc)
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				t.Errorf("%s %s: served locally but gone from the cloud", c, id)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

func TestSnapshotThenDeltas(t *testing.T) {
	e := newEnv(t, 3000)
	s := New(Options{DB: e.db, Client: e.client, PageSize: 250})
	ctx := context.Background()
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertConverged(t, e)
	if w := s.WAN(); w.State != StateOK {
		t.Fatalf("WAN state %+v", w)
	}
	seq := e.db.Seq()
	res := e.sim.Mutate(cloudsim.Mutation{PriceChanges: 40, StockChanges: 30, Deletes: 10, Adds: 5, Renames: 7})
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertConverged(t, e)
	// The device delta feed shows exactly the changed items.
	changes, err := e.db.Changes(ctx, seq, storage.AnySeq, 10000, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, c := range changes {
		got[c.Collection+"/"+c.ID] = true
	}
	want := map[string]bool{}
	for _, m := range []map[string][]string{res.Upserted, res.Deleted} {
		for coll, ids := range m {
			for _, id := range ids {
				want[coll+"/"+id] = true
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("delta feed has %d items, mutation changed %d", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Errorf("delta feed lacks %s", k)
		}
	}
}

func TestConvergesUnderFaults(t *testing.T) {
	e := newEnv(t, 2000)
	if err := e.sim.SetFaults(cloudsim.Faults{ErrorRate: 0.3, RateLimitRate: 0.05, RetryAfterSeconds: 1, CutRate: 0.3, MalformedRate: 0.01}); err != nil {
		t.Fatal(err)
	}
	passes := make(chan error, 100)
	s := New(Options{DB: e.db, Client: e.client, PageSize: 100, PollInterval: time.Hour, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		AfterPass: func(err error) { passes <- err }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	}()
	// Rounds of cloud changes, each synced to a clean pass, until every kind of fault has struck.
	var failures int
	deadline := time.After(3 * time.Minute)
	for round := 0; ; round++ {
		for ok := false; !ok; {
			select {
			case err := <-passes:
				if err == nil {
					ok = true
				} else {
					failures++
				}
			case <-deadline:
				t.Fatalf("round %d: no clean pass after %d failures; WAN %+v", round, failures, s.WAN())
			}
		}
		assertConverged(t, e)
		f := e.sim.Stats().Faults
		if f.Errors > 0 && f.RateLimits > 0 && f.Cuts > 0 && f.Malformed > 0 {
			t.Logf("converged after %d rounds, %d failed passes, faults %+v", round+1, failures, f)
			break
		}
		if round == 20 {
			t.Fatalf("after %d rounds not every fault struck: %+v", round, f)
		}
		e.sim.Mutate(cloudsim.Mutation{PriceChanges: 50, Deletes: 5, Adds: 5, Renames: 5})
		s.Poke()
	}
	if failures == 0 {
		t.Fatal("faults struck but no pass failed")
	}
	if st, _ := e.db.FeedState(cloudapi.Products); st.Quarantined == 0 {
		t.Fatal("malformed lines were sent but none is quarantined")
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	e := newEnv(t, 10)
	if err := e.sim.SetFaults(cloudsim.Faults{RateLimitRate: 1, RetryAfterSeconds: 7}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{DB: e.db, Client: e.client, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	var asked []int64 // requests the cloud had received at each wait
	s.sleep = func(_ context.Context, d time.Duration, poke <-chan struct{}) error {
		if poke != nil {
			t.Errorf("wait %d within the cloud's Retry-After can be cut short by a pass asked for (a support resync)", len(waits))
		}
		waits = append(waits, d)
		asked = append(asked, e.sim.Stats().Requests)
		if len(waits) == 3 {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	for i, d := range waits {
		if d < 7*time.Second {
			t.Errorf("wait %d was %v, shorter than the cloud's Retry-After of 7s", i, d)
		}
	}
	// The pass stops at the first 429: the other collections wait too.
	for i := 1; i < len(asked); i++ {
		if n := asked[i] - asked[i-1]; n != 1 {
			t.Errorf("pass %d sent %d requests after a 429 with Retry-After, want 1", i+1, n)
		}
	}
	if st, _ := e.db.FeedState(cloudapi.Products); !bytes.Contains([]byte(st.LastError), []byte("429")) {
		t.Errorf("last error %q does not tell about the 429", st.LastError)
	}
}

func TestFailuresAreReported(t *testing.T) {
	e := newEnv(t, 10)
	ctx := context.Background()
	bad, _ := cloud.New(e.ts.URL, "wrong", e.ts.Client(), "test")
	s := New(Options{DB: e.db, Client: bad})
	if err := s.SyncOnce(ctx); !errors.Is(err, cloud.ErrUnauthorized) {
		t.Fatalf("wrong key: %v", err)
	}
	if w := s.WAN(); w.State != StateUnauthorized {
		t.Fatalf("WAN state %q, want unauthorized", w.State)
	}
	if st, _ := e.db.FeedState(cloudapi.Products); st.LastError == "" || st.LastErrorAt.IsZero() {
		t.Fatalf("error not recorded: %+v", st)
	}
	e.ts.Close()
	s = New(Options{DB: e.db, Client: e.client})
	if err := s.SyncOnce(ctx); err == nil {
		t.Fatal("sync against a stopped cloud succeeded")
	}
	if w := s.WAN(); w.State != StateUnreachable {
		t.Fatalf("WAN state %q, want unreachable (%s)", w.State, w.LastError)
	}
}

// A page the shop cannot store (its database fails) is no WAN failure: the cloud answered, so
// the status does not send shop IT after the network (cloud-api.md: wan is how the shop last
// reached the cloud); the collection's error says what failed.
func TestLocalFailureIsNoWANFailure(t *testing.T) {
	e := newEnv(t, 10)
	ctx := context.Background()
	// Classified as the daemon does: whatever is not the cloud's answer nor the proxy is the WAN.
	s := New(Options{DB: e.db, Client: e.client, Classify: func(error) string { return StateUnreachable }})
	e.db.Close() // every write fails from now on
	err := s.SyncOnce(ctx)
	if err == nil {
		t.Fatal("a pass with a closed database succeeded")
	}
	if w := s.WAN(); w.State != StateOK || w.LastContact.IsZero() {
		t.Fatalf("WAN state %q (%s), last contact %v; want ok: the cloud answered", w.State, w.LastError, w.LastContact)
	}
}

// A failure of the cloud met earlier in the same pass is not hidden by a local one after it.
func TestLocalFailureKeepsTheCloudsFailureOfThePass(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if path.Base(r.URL.Path) == cloudapi.Products {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(`{"end":{"cursor":"c1","count":0,"more":false,"remaining":0}}` + "\n"))
	}))
	defer srv.Close()
	db, client := shopFor(t, srv)
	s := New(Options{DB: db, Client: client, Classify: func(error) string { return StateUnreachable }})
	db.Close()
	if err := s.SyncOnce(context.Background()); err == nil {
		t.Fatal("the pass succeeded")
	}
	if w := s.WAN(); w.State != StateCloudError || !strings.Contains(w.LastError, "503") {
		t.Fatalf("WAN state %q (%s), want the cloud's 503 of products", w.State, w.LastError)
	}
}

// A collection whose answer begins then stops (nothing for cloud.request_timeout) is the cloud's
// broken answer, not a WAN that cannot be reached (the state cloud_error, not unreachable): the
// other collections are asked in the same pass and keep syncing (cloud-api.md).
func TestStalledCollectionKeepsTheOthersSyncing(t *testing.T) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		if path.Base(r.URL.Path) == cloudapi.Products {
			w.(http.Flusher).Flush() // the answer begins, then nothing comes
			select {
			case <-done:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte(`{"end":{"cursor":"c1","count":0,"more":false,"remaining":0}}` + "\n"))
	}))
	defer srv.Close()
	defer close(done)
	db, client := shopFor(t, srv)
	client.SetRequestTimeout(200 * time.Millisecond)
	// Classified as the daemon does: whatever is not the cloud's answer nor the proxy is the WAN.
	s := New(Options{DB: db, Client: client, Classify: func(error) string { return StateUnreachable }})
	if err := s.SyncOnce(context.Background()); err == nil {
		t.Fatal("the pass with a stalled collection succeeded")
	}
	if w := s.WAN(); w.State != StateCloudError || w.LastContact.IsZero() {
		t.Fatalf("WAN state %q (%s), want cloud_error: the cloud answered", w.State, w.LastError)
	}
	for _, c := range cloudapi.Collections[1:] {
		if st, ok := db.FeedState(c); !ok || st.Cursor != "c1" {
			t.Errorf("%s after a pass where products stalled: %+v; want synced", c, st)
		}
	}
}

// A cloud that keeps a caught-up answer open without a word (or sends a line without end after
// it) holds the pass a second, not the request timeout nor for ever.
func TestCaughtUpAnswerLeftOpenHoldsNothing(t *testing.T) {
	hold := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(`{"end":{"cursor":"c1","count":0,"more":false,"remaining":0}}` + "\n"))
		if path.Base(r.URL.Path) == cloudapi.Prices {
			w.Write([]byte(strings.Repeat("x", 64<<10))) // a line that never ends
		}
		w.(http.Flusher).Flush()
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hold)
	db, client := shopFor(t, srv) // the default request timeout: 2 minutes
	s := New(Options{DB: db, Client: client})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard, not a measure
	defer cancel()
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatalf("the pass: %v", err)
	}
	if w := s.WAN(); w.State != StateOK {
		t.Errorf("WAN state %q (%s)", w.State, w.LastError)
	}
}

// A caught-up answer is read to its end, so that the next request takes the same connection:
// no new TLS handshake (through the proxy too) for each collection at each poll.
func TestCaughtUpAnswersKeepTheConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(`{"end":{"cursor":"c1","count":0,"more":false,"remaining":0}}` + "\n"))
		w.(http.Flusher).Flush()          // a chunked answer: its end comes after the end line,
		time.Sleep(10 * time.Millisecond) // a moment later, as over a real network
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	db, client := shopFor(t, srv)
	s := New(Options{DB: db, Client: client})
	for range 3 {
		if err := s.SyncOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for %d feed requests, want one", n, 3*len(cloudapi.Collections))
	}
}

func TestNotAFeedIsRefused(t *testing.T) {
	portal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>Please log in to the guest Wi-Fi</html>"))
	}))
	defer portal.Close()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client, _ := cloud.New(portal.URL, "k", portal.Client(), "test")
	s := New(Options{DB: db, Client: client})
	err = s.SyncOnce(context.Background())
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("text/html")) {
		t.Fatalf("HTML instead of a feed: %v", err)
	}
}

// A feed answer with no end line, an empty one included, is a failed sync, not a page with
// nothing new: cloud-api.md says such a response is discarded and asked for again.
func TestEmptyFeedAnswerIsAFailure(t *testing.T) {
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}))
	defer empty.Close()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client, _ := cloud.New(empty.URL, "k", empty.Client(), "test")
	s := New(Options{DB: db, Client: client})
	if err := s.SyncOnce(context.Background()); !errors.Is(err, cloudapi.ErrTruncated) {
		t.Fatalf("an empty feed answer: %v, want it cut short", err)
	}
	if w := s.WAN(); w.State == StateOK {
		t.Errorf("WAN state %q after an empty answer", w.State)
	}
	if st, _ := db.FeedState(cloudapi.Products); st.LastError == "" || !st.LastSuccess.IsZero() {
		t.Errorf("feed state %+v, want the error and no success", st)
	}
}

// switchable serves the cloud API of whichever sim is current, so a test can replace the cloud
// behind one URL as a cloud restored from a backup, or restarted, would be.
type switchable struct{ h atomic.Pointer[http.Handler] }

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

func (s *switchable) set(sim *cloudsim.Sim) {
	h := sim.Handler()
	s.h.Store(&h)
}

// TestResnapshotReplacesCollections syncs 3,000 products, then meets a cloud that forgot the
// cursor and holds 2,000: the shop must end up with exactly the new catalog, lookups by id, by
// barcode and by search must no longer find the products that are gone, and a device following
// the delta feed must see them deleted.
func TestResnapshotReplacesCollections(t *testing.T) {
	ctx := context.Background()
	old := cloudsim.New(cloudsim.Options{Seed: 7, Products: 3000, StoreKey: "k"})
	var cloudAPI switchable
	cloudAPI.set(old)
	ts := httptest.NewServer(&cloudAPI)
	t.Cleanup(ts.Close)
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.EnableReadCache(64 << 20); err != nil {
		t.Fatal(err)
	}
	client, err := cloud.New(ts.URL, "k", ts.Client(), "test")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{DB: db, Client: client, PageSize: 250})
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	gone, err := db.Get(ctx, cloudapi.Products, "P0002001")
	if err != nil {
		t.Fatal(err)
	}
	var goneDoc cloudapi.Product
	if err := json.Unmarshal(gone.Doc, &goneDoc); err != nil {
		t.Fatal(err)
	}
	// The device has read everything, and looked the product up (so the read cache holds it).
	since := db.Seq()
	if _, err := db.ProductByBarcode(ctx, goneDoc.Barcodes[0]); err != nil {
		t.Fatal(err)
	}

	now := cloudsim.New(cloudsim.Options{Seed: 7, Products: 2000, StoreKey: "k"})
	cloudAPI.set(now)
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertConverged(t, &env{sim: now, ts: ts, db: db, client: client})
	if _, err := db.Get(ctx, cloudapi.Products, "P0002001"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("P0002001, gone from the cloud, is still served: %v", err)
	}
	if it, err := db.ProductByBarcode(ctx, goneDoc.Barcodes[0]); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("barcode %s of a product gone from the cloud still finds %s (%v)", goneDoc.Barcodes[0], it.ID, err)
	}
	found, err := db.Search(ctx, goneDoc.Name, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range found {
		if n, _ := strconv.Atoi(it.ID[1:]); n > 2000 {
			t.Errorf("search %q finds %s, gone from the cloud", goneDoc.Name, it.ID)
		}
	}
	for _, c := range []string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock} {
		if n, _ := db.Count(ctx, c); n != 2000 {
			t.Errorf("%s: %d live rows, the cloud has 2000", c, n)
		}
	}
	deleted := map[string]int{}
	for {
		changes, err := db.Changes(ctx, since, storage.AnySeq, 1000, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) == 0 {
			break
		}
		for _, c := range changes {
			if c.Op == cloudapi.OpDelete {
				deleted[c.Collection]++
			}
			since = c.Seq
		}
	}
	for _, c := range []string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock} {
		if deleted[c] != 1000 {
			t.Errorf("delta feed: %d %s deleted, want 1000", deleted[c], c)
		}
	}
}

// A collection asked to be read again from a snapshot sheds what the shop holds and the cloud
// does not (a copy that drifted, whatever the cause), which deltas alone never would.
func TestResnapshotOnRequest(t *testing.T) {
	e := newEnv(t, 500)
	s := New(Options{DB: e.db, Client: e.client, PageSize: 200})
	ctx := context.Background()
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// A price the cloud never had, at the cursor the shop holds: deltas never mention it.
	stray := addStrayPrice(t, e.db)
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Get(ctx, cloudapi.Prices, stray.ID); err != nil {
		t.Fatalf("the stray price is gone without a re-snapshot (%v): the test shows nothing", err)
	}

	if err := s.Resnapshot(ctx, cloudapi.Prices); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.db.FeedState(cloudapi.Prices); st.Cursor != "" {
		t.Fatalf("cursor %q kept after Resnapshot", st.Cursor)
	}
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertConverged(t, e)
	if _, err := e.db.Get(ctx, cloudapi.Prices, stray.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the stray price survived the re-snapshot: %v", err)
	}

	if err := s.Resnapshot(ctx, "orders"); !errors.Is(err, ErrUnknownCollection) {
		t.Fatalf("unknown collection: %v", err)
	}
	// Never in the middle of a stream: while the collection is being synced, Resnapshot waits.
	release, err := s.hold(ctx, cloudapi.Stock)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.Resnapshot(short, cloudapi.Stock); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Resnapshot during a sync of the collection: %v, want to wait until the context ends", err)
	}
	release()
	if st, _ := e.db.FeedState(cloudapi.Stock); st.Cursor == "" {
		t.Fatal("the cursor was forgotten while the collection was being synced")
	}
}

// A cloud that answers 410 to the start of its feed, or says "more" without moving its cursor,
// would have the shop ask again at once, for ever. Each is a failed pass instead, with a handful
// of requests, tried again after the backoff (cloud-api.md's rules leave neither answer room).
func TestBrokenFeedAnswersDoNotLoop(t *testing.T) {
	var idle atomic.Int64 // the cursors of the empty pages, never the same
	ndjson := func(w http.ResponseWriter, lines string) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(lines))
	}
	for name, tc := range map[string]struct {
		answer func(w http.ResponseWriter, r *http.Request)
		want   string // in the pass's error
	}{
		"410 to the start": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusGone)
			w.Write([]byte(`{"type":"about:blank","title":"Gone","status":410}`))
		}, "410"},
		"more without progress": {func(w http.ResponseWriter, r *http.Request) {
			ndjson(w, `{"end":{"cursor":"c-stuck","count":0,"more":true,"remaining":5}}`+"\n")
		}, "did not move past"},
		"cursors in a circle": {func(w http.ResponseWriter, r *http.Request) {
			next := "c1"
			if r.URL.Query().Get("cursor") == "c1" {
				next = "c2"
			}
			ndjson(w, `{"end":{"cursor":"`+next+`","count":0,"more":true,"remaining":5}}`+"\n")
		}, `led back to "c1"`},
		"end line of the wrong type": {func(w http.ResponseWriter, r *http.Request) {
			ndjson(w, `{"end":{"cursor":"c1","count":"0","more":false,"remaining":0}}`+"\n")
		}, "end line: json: cannot unmarshal string"},
		"cursors in a circle in one answer": {func(w http.ResponseWriter, r *http.Request) {
			var b strings.Builder
			for i := range 1000 {
				fmt.Fprintf(&b, `{"end":{"cursor":"c%d","count":0,"more":true,"remaining":5}}`+"\n", i%2)
			}
			ndjson(w, b.String())
		}, `led back to "c0"`},
		"410 again in the new snapshot": {func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("cursor") == "" {
				ndjson(w, `{"end":{"cursor":"snap-1","count":0,"more":true,"remaining":5}}`+"\n")
				return
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusGone)
			w.Write([]byte(`{"type":"about:blank","title":"Gone","status":410}`))
		}, "410 again"},
		"empty pages with new cursors for ever": {func(w http.ResponseWriter, r *http.Request) {
			var b strings.Builder
			for range 200 {
				fmt.Fprintf(&b, `{"end":{"cursor":"c%d","count":0,"more":true,"remaining":5}}`+"\n", idle.Add(1))
			}
			ndjson(w, b.String())
		}, "101 pages in a row said more without a change"},
		"end line cursor too long": {func(w http.ResponseWriter, r *http.Request) {
			ndjson(w, `{"end":{"cursor":"`+strings.Repeat("c", 1025)+`","count":0,"more":false,"remaining":0}}`+"\n"+
				`{"end":{"cursor":"c1","count":1,"more":false,"remaining":0}}`+"\n")
		}, "end line cursor of 1025 bytes"},
	} {
		answer := tc.answer
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if requests.Add(1) > 100 {
					cancel() // the shop keeps asking: end the pass
				}
				answer(w, r)
			}))
			defer srv.Close()
			db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			client, _ := cloud.New(srv.URL, "k", srv.Client(), "test")
			s := New(Options{DB: db, Client: client})
			if err := s.SyncOnce(ctx); err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("the pass: %v, after %d requests; want it failed on its own, saying %q", err, requests.Load(), tc.want)
			}
			// One collection: at most the stuck answer twice (more: the first move to c-stuck),
			// three times round the circle, four with one re-snapshot.
			if n := requests.Load(); n > 4*int64(len(cloudapi.Collections)) {
				t.Errorf("%d requests in one pass over %d collections", n, len(cloudapi.Collections))
			}
			if w := s.WAN(); w.State != StateCloudError {
				t.Errorf("WAN state %q, want %q", w.State, StateCloudError)
			}

			// Run backs off: nothing moved, so each wait is longer than the one before (the
			// n-th between half and all of 10 ms·2ⁿ⁻¹).
			s = New(Options{DB: db, Client: client, MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second})
			var waits []time.Duration
			runCtx, stop := context.WithCancel(ctx)
			s.sleep = func(_ context.Context, d time.Duration, _ <-chan struct{}) error {
				if waits = append(waits, d); len(waits) == 4 {
					stop()
					return runCtx.Err()
				}
				return nil
			}
			if err := s.Run(runCtx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			if waits[3] < 40*time.Millisecond {
				t.Errorf("waits %v: the backoff does not grow while the feed is stuck", waits)
			}
		})
	}
}

// An answer that goes on after the end line saying the feed is caught up (end lines for ever,
// here) holds nothing: the page is applied, the rest is not read, and every collection is synced
// in the pass (cloud-api.md: the answer ends with that end line).
func TestCaughtUpAnswerEndsAtItsEndLine(t *testing.T) {
	var asked sync.Map // collection -> true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(path.Base(r.URL.Path), true)
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := 0; r.Context().Err() == nil; i++ {
			if _, err := fmt.Fprintf(w, `{"end":{"cursor":"c%d","count":0,"more":false,"remaining":0}}`+"\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	db, client := shopFor(t, srv)
	s := New(Options{DB: db, Client: client})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard, not a measure
	defer cancel()
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatalf("the pass: %v", err)
	}
	for _, c := range cloudapi.Collections {
		if _, ok := asked.Load(c); !ok {
			t.Errorf("collection %s never asked for", c)
		}
		if st, _ := db.FeedState(c); st.Cursor != "c0" || st.LastSuccess.IsZero() {
			t.Errorf("%s: cursor %q, caught up at %v; want the first end line's, c0, caught up", c, st.Cursor, st.LastSuccess)
		}
	}
}

// One collection whose feed keeps failing does not hold the others back: they are synced again
// at the poll interval, and the failing one is not asked at once again and again (the empty
// pages of caught-up collections are no progress). Its Retry-After is waited out as given, not
// lengthened by the backoff's growth. A failing collection that reads pages before it fails
// backs off beyond the poll: each retry would read them again. The pages the other collections
// apply meanwhile are none of the failing one's: its wait neither starts again at each pass
// nor grows past the poll.
func TestOneFailingCollectionKeepsThePollForTheOthers(t *testing.T) {
	for _, mode := range []string{"count mismatch", "retry after", "410 after a page", "then all rate limited",
		"count mismatch while products change", "500 while products change", "products broken, prices cut after a page",
		"400, permanent for the request"} {
		t.Run(mode, func(t *testing.T) {
			waits := failingPrices(t, mode)
			switch mode {
			case "count mismatch", "count mismatch while products change", "500 while products change",
				"products broken, prices cut after a page", "400, permanent for the request":
				// A 400 is permanent for the request, and the feed has nothing to set aside: it
				// asks again after the backoff, as for the other failures (cloud-api.md).
				// Pages the other collections apply are no progress of the failing one: its
				// wait is not reset at each pass, nor does it grow past the poll.
				for i, d := range waits {
					if d > failingPoll {
						t.Errorf("wait %d of %v: the collections that sync wait longer than the poll (%v)", i, waits, failingPoll)
					}
				}
				if waits[7] != failingPoll {
					t.Errorf("waits %v: the failing collection is asked again sooner than the poll for ever", waits)
				}
			case "retry after":
				for i, d := range waits {
					if d != 2*time.Second {
						t.Errorf("wait %d of %v: want the Retry-After, 2s", i, waits)
					}
				}
			case "then all rate limited":
				// Six passes with prices failing alone, then the first collection rate limited:
				// the Retry-After, not lengthened by the passes before.
				if waits[6] != 2*time.Second || waits[7] > 2*time.Second+10*time.Second/4 {
					t.Errorf("waits %v: want the Retry-After, 2s, after the partial failures", waits)
				}
			default:
				if waits[7] <= failingPoll {
					t.Errorf("waits %v: a collection that reads pages before it fails is read again at every poll", waits)
				}
			}
		})
	}
}

const failingPoll = 50 * time.Millisecond

// failingPrices runs a syncer whose prices feed fails at every pass as mode says, while the other
// collections are caught up, and returns its first 8 waits: a page count that does not match,
// 429 with Retry-After 2, or a 410 to the snapshot it sent after a page of it was applied.
func failingPrices(t *testing.T, mode string) []time.Duration {
	ctx := context.Background()
	var rev, pricesAsked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		if mode == "products broken, prices cut after a page" {
			// The pass's first failure is products' own, at once; prices applies a page and
			// then fails: its pages are no progress of products.
			switch {
			case strings.HasSuffix(r.URL.Path, "/"+cloudapi.Products):
				w.Write([]byte(`{"end":{"cursor":"c-stuck","count":3,"more":false,"remaining":0}}` + "\n"))
				return
			case strings.HasSuffix(r.URL.Path, "/"+cloudapi.Prices) && r.URL.Query().Get("cursor") == "":
				n := rev.Add(1)
				fmt.Fprintf(w, `{"collection":"prices","id":"P1","op":"upsert","rev":%d,"doc":{"product_id":"P1","currency":"EUR","amount":100}}`+"\n"+
					`{"end":{"cursor":"s%d","count":1,"more":true,"remaining":1}}`+"\n", n, n)
				return
			case strings.HasSuffix(r.URL.Path, "/"+cloudapi.Prices):
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`))
				return
			}
		}
		if strings.HasSuffix(mode, " while products change") && strings.HasSuffix(r.URL.Path, "/"+cloudapi.Products) {
			n := rev.Add(1) // a new change at each pass
			fmt.Fprintf(w, `{"collection":"products","id":"P1","op":"upsert","rev":%d,"doc":{"id":"P1","name":"Tea %d"}}`+"\n"+
				`{"end":{"cursor":"p%d","count":1,"more":false,"remaining":0}}`+"\n", n, n, n)
			return
		}
		if mode == "then all rate limited" && strings.HasSuffix(r.URL.Path, "/"+cloudapi.Products) && pricesAsked.Load() >= 6 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"type":"about:blank","title":"Too Many Requests","status":429}`))
			return
		}
		if strings.HasSuffix(r.URL.Path, "/"+cloudapi.Prices) {
			pricesAsked.Add(1)
			switch mode {
			case "count mismatch", "then all rate limited", "count mismatch while products change":
				w.Write([]byte(`{"end":{"cursor":"c-stuck","count":3,"more":false,"remaining":0}}` + "\n"))
				return
			case "400, permanent for the request":
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"type":"about:blank","title":"Bad Request","status":400}`))
				return
			case "500 while products change":
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`))
				return
			case "retry after":
				w.Header().Set("Content-Type", "application/problem+json")
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(http.StatusTooManyRequests)
				w.Write([]byte(`{"type":"about:blank","title":"Too Many Requests","status":429}`))
				return
			}
			// A snapshot page from the empty cursor, and 410 to its cursor: the syncer
			// reads the snapshot again, and fails the pass at the second 410.
			if r.URL.Query().Get("cursor") != "" {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusGone)
				w.Write([]byte(`{"type":"about:blank","title":"Gone","status":410}`))
				return
			}
			n := rev.Add(1)
			fmt.Fprintf(w, `{"collection":"prices","id":"P1","op":"upsert","rev":%d,"doc":{"product_id":"P1","currency":"EUR","amount":100}}`+"\n"+
				`{"end":{"cursor":"s%d","count":1,"more":true,"remaining":1}}`+"\n", n, n)
			return
		}
		w.Write([]byte(`{"end":{"cursor":"c1","count":0,"more":false,"remaining":0}}` + "\n"))
	}))
	defer srv.Close()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client, _ := cloud.New(srv.URL, "k", srv.Client(), "test")
	s := New(Options{DB: db, Client: client, PollInterval: failingPoll, MinBackoff: 500 * time.Millisecond, MaxBackoff: 10 * time.Second})
	var waits []time.Duration
	runCtx, stop := context.WithCancel(ctx)
	s.sleep = func(_ context.Context, d time.Duration, _ <-chan struct{}) error {
		if waits = append(waits, d); len(waits) == 8 {
			stop()
			return runCtx.Err()
		}
		return nil
	}
	if err := s.Run(runCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	return waits
}

// A page's documents wait in memory until its end line: a page of more than 64 MiB of them
// (cloud-api.md), each line within its own limit, is refused before it is all read, naming the
// limit, and nothing of it is sent on.
func TestPageOverItsBytesIsRefused(t *testing.T) {
	pad := strings.Repeat("x", 1_040_000)
	var lines []io.Reader
	for i := range 70 { // 70 lines of about 1 MB: the limit is passed at the 65th
		lines = append(lines, strings.NewReader(fmt.Sprintf(`{"collection":"products","id":"P%d","op":"upsert","rev":1,"doc":{"id":"P%d","name":"%s"}}`+"\n", i, i, pad)))
	}
	lines = append(lines, strings.NewReader(`{"end":{"cursor":"c1","count":70,"more":false,"remaining":0}}`+"\n"))
	out := make(chan storage.Page, 1)
	err := readPages(context.Background(), io.NopCloser(io.MultiReader(lines...)), cloudapi.Products, out)
	if !errors.Is(err, errPage) || !strings.Contains(err.Error(), "more than 64 MiB of documents before the end line") {
		t.Fatalf("a page of 70 MB: %v", err)
	}
	if len(out) != 0 {
		t.Fatal("a page over the limit was sent on")
	}
}

// A re-snapshot that meets a malformed line naming no item keeps the items it did not mention and
// says so in the log (cloud-api.md, "Malformed lines"); the next clean one deletes what the cloud
// no longer has.
func TestResnapshotWithAnUnnamedMalformedLineIsLogged(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 300)
	var broken atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !broken.Load() || r.URL.Path != "/v1/feed/prices" || r.URL.Query().Get("cursor") != "" {
			e.sim.Handler().ServeHTTP(w, r)
			return
		}
		// The snapshot's first change line loses its id: still counted, naming no item.
		rec := httptest.NewRecorder()
		e.sim.Handler().ServeHTTP(rec, r)
		body := rec.Body.String()
		first := strings.Index(body, `"id":`)
		if rec.Code != http.StatusOK || first < 0 {
			t.Errorf("the snapshot of prices: %d %.200q", rec.Code, body)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		io.WriteString(w, body[:first]+`"id" broken`+body[first+len(`"id":`):])
	}))
	t.Cleanup(srv.Close)
	client, err := cloud.New(srv.URL, "k", srv.Client(), "test")
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	s := New(Options{DB: e.db, Client: client, PageSize: 1000, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// A price the cloud does not have, which a clean re-snapshot deletes.
	stray := addStrayPrice(t, e.db)

	broken.Store(true)
	if err := s.Resnapshot(ctx, cloudapi.Prices); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	const kept = "feed: re-snapshot complete, but a malformed line of it named no item"
	if !strings.Contains(logs.String(), kept) || !strings.Contains(logs.String(), "collection=prices") {
		t.Errorf("the log after a re-snapshot with a line naming no item lacks %q:\n%s", kept, logs.String())
	}
	if _, err := e.db.Get(ctx, cloudapi.Prices, stray.ID); err != nil {
		t.Errorf("the re-snapshot deleted %s although a line of it named no item: %v", stray.ID, err)
	}
	if st, _ := e.db.FeedState(cloudapi.Prices); st.Quarantined != 1 {
		t.Errorf("%d lines of prices in quarantine, want the one without an id", st.Quarantined)
	}

	broken.Store(false)
	if err := s.Resnapshot(ctx, cloudapi.Prices); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Get(ctx, cloudapi.Prices, stray.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the clean re-snapshot kept %s, which the cloud does not have: %v", stray.ID, err)
	}
	if st, _ := e.db.FeedState(cloudapi.Prices); st.Quarantined != 0 {
		t.Errorf("%d lines of prices in quarantine after a clean re-snapshot", st.Quarantined)
	}
	if n := strings.Count(logs.String(), kept); n != 1 {
		t.Errorf("the log says %d times that a re-snapshot kept what it did not mention, want once", n)
	}
}

// addStrayPrice gives the shop a price the cloud never had, P9999999, at the cursor the shop
// holds: deltas never mention it, only a re-snapshot removes it.
func addStrayPrice(t *testing.T, db *storage.DB) cloudapi.Change {
	t.Helper()
	st, _ := db.FeedState(cloudapi.Prices)
	stray := cloudapi.Change{Collection: cloudapi.Prices, ID: "P9999999", Op: cloudapi.OpUpsert, Rev: 1,
		Doc: json.RawMessage(`{"product_id":"P9999999","currency":"EUR","amount":100}`)}
	if _, err := db.ApplyPage(context.Background(), storage.Page{Collection: cloudapi.Prices, Changes: []cloudapi.Change{stray},
		End: cloudapi.PageEnd{Cursor: st.Cursor, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	return stray
}
