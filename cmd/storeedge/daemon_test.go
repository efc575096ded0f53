package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/ops/logship/logshiptest"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
	"github.com/storeedge/storeedge/tools/testenv"
)

// TestDaemonStopsEverything runs the daemon in-process, log shipping on, stops it in the middle
// of a sync with a request in flight, and checks that it returns cleanly and leaves no
// goroutine behind.
func TestDaemonStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sim := cloudsim.New(cloudsim.Options{Products: 50000, StoreKey: "k"})
	cloud := httptest.NewServer(sim.Handler())
	defer cloud.Close()

	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Cloud.URL = cloud.URL
	cfg.Cloud.StoreKey = "k"
	cfg.Cloud.PageSize = 100
	cfg.WAN.Proxy = "direct"
	cfg.LAN.Bind = "127.0.0.1"
	cfg.LAN.FrontDoor = testenv.FreePort(t)
	cfg.LAN.Services = config.Services{Catalog: testenv.FreePort(t), Admin: testenv.FreePort(t)}
	intake := logshiptest.Start(t, "logs-key")
	defer intake.Down()
	cfg.Logs.Ship.Enabled, cfg.Logs.Ship.URL, cfg.Logs.Ship.APIKey = true, intake.URL, "logs-key"
	cfg.Logs.Ship.BatchInterval = time.Second
	cfg.WAN.ExtraCAFile = intake.CAFile
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan map[string]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- daemon(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a map[string]string) { started <- a })
	}()
	var addrs map[string]string
	select {
	case addrs = <-started:
	case err := <-done:
		t.Fatalf("daemon failed to start: %v", err)
	}
	// Serving while the first sync runs.
	resp, err := http.Get("http://" + addrs["front_door"] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz during first sync: %s", resp.Status)
	}
	intake.Wait(t, "shipped records", 30*time.Second, func(r []logshiptest.Record) bool { return len(r) > 0 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon returned %v after a clean stop", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30s")
	}
	http.DefaultClient.CloseIdleConnections()
	cloud.CloseClientConnections()
}

// The daemon's own log replaces the configuration's secrets wherever a line carries them, a
// dependency's error included (configuration.md, Secrets).
func TestDaemonLogHidesSecrets(t *testing.T) {
	cfg := config.Default()
	const key, proxyPW = "store-key-0123456789", "pr0xy-pass"
	cfg.Cloud.StoreKey = key
	cfg.WAN.Proxy = "http://shop:" + proxyPW + "@proxy.lan:3128"
	var out testenv.Buffer
	s := &components{cfg: cfg, log: slog.New(slog.NewTextHandler(&out, nil))}
	if err := s.openLogs(); err != nil {
		t.Fatal(err)
	}
	s.log.Warn("cloud: refused", "error", fmt.Errorf("GET https://shop:%s@proxy.lan:3128/v1/feed: Authorization: Bearer %s: 403", proxyPW, key))
	if got := out.String(); strings.Contains(got, key) || strings.Contains(got, proxyPW) || !strings.Contains(got, "Bearer xxxxx") {
		t.Errorf("the daemon's log: %s", got)
	}
}
