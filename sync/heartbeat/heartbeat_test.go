package heartbeat

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
	"github.com/storeedge/storeedge/sync/feed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHeartbeatReportsSyncState(t *testing.T) {
	sim := cloudsim.New(cloudsim.Options{Products: 50, StoreKey: "k"})
	ts := httptest.NewServer(sim.Handler())
	defer ts.Close()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client, _ := cloud.New(ts.URL, "k", ts.Client(), "test")
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
