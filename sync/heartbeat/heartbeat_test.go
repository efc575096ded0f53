package heartbeat

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
	"github.com/storeedge/storeedge/sync/feed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shopOf opens a shop's database and a cloud client for ts; the database closes with the test.
func shopOf(t *testing.T, ts *httptest.Server) (*storage.DB, *cloud.Client) {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	client, err := cloud.New(ts.URL, "k", ts.Client(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return db, client
}

func TestHeartbeatReportsSyncState(t *testing.T) {
	sim := cloudsim.New(cloudsim.Options{Products: 50, StoreKey: "k"})
	ts := httptest.NewServer(sim.Handler())
	defer ts.Close()
	db, client := shopOf(t, ts)
	if err := feed.New(feed.Options{DB: db, Client: client}).SyncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan error, 1)
	s := &Sender{Client: client, DB: db, ServerID: "shop-7", Version: "1.2.3", StartedAt: time.Now(), Interval: time.Hour,
		WAN: func() string { return "ok" }, sent: func(err error) { sent <- err }}
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	hb := sim.LastHeartbeat()
	if hb == nil {
		t.Fatal("the cloud got no heartbeat")
	}
	got := hb.Heartbeat
	if got.ServerID != "shop-7" || got.Version != "1.2.3" || got.WAN != "ok" || got.Collections["products"].Rows != 50 || got.Collections["products"].LastSuccess == "" {
		t.Fatalf("heartbeat %+v", got)
	}
}

// A cloud that answers 429 with Retry-After gets the next heartbeat no sooner than that
// (cloud-api.md), however short the interval; then the interval holds again.
func TestHeartbeatWaitsForRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		first := len(at) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ts.Close()
	db, client := shopOf(t, ts)
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan error, 16)
	s := &Sender{Client: client, DB: db, ServerID: "shop-7", StartedAt: time.Now(), Interval: 10 * time.Millisecond,
		sent: func(err error) { sent <- err }}
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if err := <-sent; err == nil {
		t.Fatal("the 429 was taken as delivered")
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if gap := at[1].Sub(at[0]); gap < time.Second {
		t.Errorf("second heartbeat %v after a 429 with Retry-After: 1, want at least 1s", gap)
	}
}
