//go:build unix

package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/tools/testenv"
)

// A flush of the WAL that the file system fails (here fsync on a FIFO, EINVAL, for the disk's
// EIO) breaks the database's flushes for good: the order it covers is refused, so are the ones
// after it without another flush, and FlushFailed says why, for readyz.
func TestFailedFlushOfTheWALStopsOrders(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := &DB{path: filepath.Join(dir, "storeedge.db")}
	if err := os.WriteFile(db.path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(db.path+"-wal", 0o600); err != nil {
		t.Fatal(err)
	}
	var de *diskFlushError
	if err := db.syncWAL(); !errors.As(err, &de) {
		t.Fatalf("fsync refused: %v, want a diskFlushError", err)
	}
	if db.FlushFailed() != nil {
		t.Fatal("broken before any wait")
	}
	if err := db.syncCommitted(ctx); err == nil || !strings.Contains(err.Error(), "repair the disk") {
		t.Fatalf("wait: %v", err)
	}
	if err := db.FlushFailed(); err == nil || !strings.Contains(err.Error(), "invalid argument") {
		t.Fatalf("FlushFailed: %v", err)
	}
	started := db.flush.started.Load()
	if err := db.syncCommitted(ctx); err == nil || db.flush.started.Load() != started {
		t.Fatalf("a wait after the failure: %v, %d flushes run", err, db.flush.started.Load()-started)
	}
}

// After a flush the disk failed, the stop is not recorded as clean: the next start raises the
// order numbers past any a lost write may have given out, as after a crash.
func TestStopAfterAFailedFlushIsNotClean(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	first, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k1", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PairDevice(ctx, Device{ID: "dv_lost", Kind: "pos", Name: "lost till", PushPort: 8081, SecretHash: []byte("h"), PushKey: []byte("k"),
		PairedAt: time.Now(), PairedBy: PairedByEnrollment}, nil); err != nil {
		t.Fatal(err)
	}
	restore := testenv.FailWALFlushes(t, path)
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k2", RequestHash: "h"}); err == nil {
		t.Fatal("an order was answered as stored with the flush failing")
	}
	// From then on no order is written, whatever its source (the event stream and the cloud
	// would carry it), nor a change of one.
	count := func() (n int) {
		if err := db.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM events) + (SELECT count(*) FROM outbox)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k3", RequestHash: "h"}); err == nil || !strings.Contains(err.Error(), "repair the disk") {
		t.Errorf("a new order after the failure: %v", err)
	}
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), MessageID: "m-1", Fingerprint: "f"}); err == nil {
		t.Error("a Service Bus order was stored after the failure")
	}
	if _, _, err := db.UpdateOrder(ctx, first.ID, func(o *orders.Order) error { return orders.Move(o, "accepted", "") }); err == nil {
		t.Error("a change was stored after the failure")
	}
	if after := count(); after != before {
		t.Errorf("%d rows of orders, events and outbox written after the failure", after-before)
	}
	// A device can still be revoked: a lost till must lose its access, disk or not.
	if ok, err := db.RevokeDevice(ctx, "dv_lost", time.Now(), "lost"); err != nil || !ok {
		t.Errorf("revoke after the failure: %v, %v", ok, err)
	}
	restore()
	if err := db.Close(); err == nil || !strings.Contains(err.Error(), "not recorded as a clean stop") {
		t.Fatalf("close: %v", err)
	}
	again := openAt(t, path)
	defer again.Close()
	next, _, err := again.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k3", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if again.IDsRaised() == "" || next.Number <= first.Number+1 {
		t.Fatalf("after the stop the next order is %d (the first was %d), raised %q: want the numbers raised", next.Number, first.Number, again.IDsRaised())
	}
}
