package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/feed"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// The facts the alert rules read come from the real components: the syncer's WAN state after a
// pass that could not reach the cloud, the order waiting in the outbox, the quarantined feed
// line, the receiver's dead-letter count, data_dir's disk and the paired devices.
func TestAlertFactsFromTheComponents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := storage.Open(ctx, filepath.Join(dir, "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// Nothing listens on port 1: the pass fails as unreachable.
	client, err := cloud.New("http://127.0.0.1:1", "key", &http.Client{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	passed := make(chan error, 10)
	syncer := feed.New(feed.Options{DB: db, Client: client, AfterPass: func(err error) { passed <- err }, Classify: classifyWANError})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- syncer.Run(sctx) }()
	<-passed
	stop()
	<-done

	o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew}
	if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: "k1", RequestHash: "h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyPage(ctx, storage.Page{Collection: cloudapi.Prices, FetchedAt: time.Now(),
		Malformed: []*cloudapi.MalformedError{{Line: 1, ID: "X1", Reason: "bad currency", Raw: []byte(`{"id":"X1"}`)}},
		End:       cloudapi.PageEnd{Cursor: "c1", Count: 1}}); err != nil {
		t.Fatal(err)
	}
	dm, err := devices.New(ctx, devices.Options{DB: db, EnrollmentSecret: "enrollment-secret-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dm.Pair(ctx, devices.PairRequest{EnrollmentSecret: "enrollment-secret-0123456789", Kind: "kiosk", Name: "Kiosk 1"}, "192.0.2.7"); err != nil {
		t.Fatal(err)
	}

	src := alertSources{db: db, syncer: syncer, route: "direct", devices: dm,
		serviceBus: func() servicebus.Status { return servicebus.Status{Queue: "orders", DeadLettered: 2} }}
	f, err := src.facts(dir)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.WAN == nil || f.WAN.Up || f.WAN.State != feed.StateUnreachable || f.WAN.Route != "direct" {
		t.Errorf("WAN: %+v", f.WAN)
	}
	if f.UploadsWaiting != 1 || f.OldestUpload.IsZero() || time.Since(f.OldestUpload) > time.Minute {
		t.Errorf("uploads: %d waiting since %v", f.UploadsWaiting, f.OldestUpload)
	}
	if f.Quarantined[cloudapi.Prices] != 1 || f.Quarantined[cloudapi.Products] != 0 {
		t.Errorf("quarantined: %v", f.Quarantined)
	}
	if f.ServiceBus == nil || f.ServiceBus.DeadLettered != 2 || f.ServiceBus.Queue != "orders" {
		t.Errorf("service bus: %+v", f.ServiceBus)
	}
	if f.Disk == nil || f.Disk.Path != dir || f.Disk.Free == 0 {
		t.Errorf("disk: %+v", f.Disk)
	}
	if len(f.Devices) != 1 || f.Devices[0].Name != "Kiosk 1" || f.Devices[0].LastSeen.IsZero() || f.Devices[0].Connected {
		t.Errorf("devices: %+v", f.Devices)
	}
	if f.MediaQuotaFull {
		t.Error("media quota full, with no media service")
	}

	// Sync off, Service Bus off: nothing to say about them.
	f, err = alertSources{db: db, devices: dm}.facts(dir)(ctx)
	if err != nil || f.WAN != nil || f.ServiceBus != nil || !f.OldestUpload.IsZero() {
		t.Errorf("sync and Service Bus off: %+v, %v", f, err)
	}
}

// A failed scheduled backup and a stock file the back office refused reach the alert rules.
func TestAlertFactsOfBackupsAndBackOffice(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir, cfg.ServerID = dir, "box-1"
	cfg.Backup.Dir = filepath.Join(dir, "nas")
	if err := os.WriteFile(cfg.Backup.Dir, []byte("the share is not mounted"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.BackOffice.Import.Dir = filepath.Join(dir, "stock")
	if err := os.Mkdir(cfg.BackOffice.Import.Dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.BackOffice.Import.Dir, "bad.csv"), []byte("product_id,quantity\nP1,five\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(ctx, filepath.Join(dir, "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.DiscardHandler)
	sched, err := backup.NewScheduler(cfg, db, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sched.RunOnce(ctx); err == nil {
		t.Fatal("a backup into a file instead of a folder succeeded")
	}
	agent := backoffice.New(backoffice.Options{DB: db, Config: cfg.BackOffice, Shop: cfg.Shop, Logger: log})
	if err := agent.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	dm, err := devices.New(ctx, devices.Options{DB: db, EnrollmentSecret: "enrollment-secret-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := alertSources{db: db, devices: dm, backups: sched, backOffice: agent}.facts(dir)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b := f.Backup; b == nil || b.Dir != cfg.Backup.Dir || b.Failures != 1 || b.LastError == "" || b.FailingSince.IsZero() {
		t.Errorf("backup: %+v", b)
	}
	if b := f.BackOffice; b == nil || b.Refused != 1 || b.LastError != "" {
		t.Errorf("back office: %+v", b)
	}

	// A back office with nothing configured never runs: it says nothing, so that an alert that
	// opened while it was configured resolves.
	idle := backoffice.New(backoffice.Options{DB: db, Config: config.Default().BackOffice, Shop: cfg.Shop, Logger: log})
	if f, err := (alertSources{db: db, devices: dm, backOffice: idle}).facts(dir)(ctx); err != nil || f.BackOffice != nil {
		t.Errorf("back office with nothing configured: %+v (%v)", f.BackOffice, err)
	}
}

// media_quota_full is a fact only while the media service fetches: items left waiting for room
// stay recorded when media.enabled is turned off, and nothing would ever clear them then.
func TestMediaQuotaFullOnlyWhileMediaFetches(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := storage.Open(ctx, filepath.Join(dir, "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dm, err := devices.New(ctx, devices.Options{DB: db, EnrollmentSecret: "enrollment-secret-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	// M1 in the catalog, its current version waiting for room in the cache.
	if _, err := db.ApplyPage(ctx, storage.Page{Collection: cloudapi.Media, FetchedAt: time.Now(),
		Changes: []cloudapi.Change{{Collection: cloudapi.Media, ID: "M1", Op: cloudapi.OpUpsert, Rev: 1,
			Doc: []byte(`{"id":"M1","blob":"m1.jpg","size":10,"md5":"1B2M2Y8AsgTpgAmY7PhCfg=="}`)}},
		End: cloudapi.PageEnd{Cursor: "c1", Count: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordMediaFailure(ctx, storage.MediaFailure{ID: "M1", MD5: "1B2M2Y8AsgTpgAmY7PhCfg==", Kind: storage.MediaNoSpace,
		Reason: "the cache is full", Attempts: 1, NextTry: time.Now().Add(time.Minute), At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		enabled bool
		want    bool
	}{{"media on", true, true}, {"media off", false, false}} {
		cfg := config.Default()
		cfg.DataDir = dir
		cfg.Media.Enabled = tc.enabled
		cfg.Media.ContainerURL = "https://shop.blob.core.windows.net/media?sv=2024-01-01&sig=abc"
		dialer, err := wan.New(wan.Options{})
		if err != nil {
			t.Fatal(err)
		}
		f, err := newMedia(cfg, db, dialer, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		facts, err := alertSources{db: db, devices: dm, media: f}.facts(dir)(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if facts.MediaQuotaFull != tc.want {
			t.Errorf("%s, an item waiting for room: media quota full %v, want %v", tc.name, facts.MediaQuotaFull, tc.want)
		}
	}
}
