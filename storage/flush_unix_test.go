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
