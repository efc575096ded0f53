//go:build unix

package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

// A flush of the database the disk failed reaches the alert rules (disk_failed); before it,
// nothing does. The failure is staged with a FIFO under the WAL's name, whose fsync fails.
func TestAlertFactsOfAFailedDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "storeedge.db")
	db, err := storage.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := devices.New(ctx, devices.Options{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	src := alertSources{db: db, devices: dm}
	if f, err := src.facts(dir)(ctx); err != nil || f.DiskFailed != "" {
		t.Fatalf("before any failure: %q, %v", f.DiskFailed, err)
	}
	restore := testenv.FailWALFlushes(t, path)
	o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew}
	if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: "k1", RequestHash: "h"}); err == nil {
		t.Fatal("an order was stored with the flush failing")
	}
	restore()
	f, err := src.facts(dir)(ctx)
	if err != nil || !strings.Contains(f.DiskFailed, "the disk failed a flush") {
		t.Fatalf("after the failure: %q, %v", f.DiskFailed, err)
	}
	db.Close()
}
