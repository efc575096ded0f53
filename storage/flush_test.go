package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
)

// sqliteError stands for an error of the SQLite driver, with its extended result code.
type sqliteError int

func (e sqliteError) Error() string { return fmt.Sprintf("sqlite error %d", int(e)) }
func (e sqliteError) Code() int     { return int(e) }

// SQLite's own flush of a durable commit failing (SQLITE_IOERR_FSYNC, the Service Bus order's
// commit at synchronous FULL) stops order taking as storeedge's own flush of the log does
// (architecture.md): FlushFailed says why, and no order is written after it. Another error of
// the same write (a constraint) does not.
func TestSQLiteFailedSyncOfADurableWriteStopsOrders(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	if err := db.writeDurable(ctx, nil, func(*sql.Tx) error { return sqliteError(19) }); err == nil {
		t.Fatal("the write's error was lost")
	}
	if err := db.FlushFailed(); err != nil {
		t.Fatalf("a constraint's error broke the flushes: %v", err)
	}
	const ioerrFsync = 10 | 4<<8
	if err := db.writeDurable(ctx, nil, func(*sql.Tx) error { return fmt.Errorf("commit: %w", sqliteError(ioerrFsync)) }); err == nil || !strings.Contains(err.Error(), "repair the disk") {
		t.Fatalf("the failed sync: %v", err)
	}
	if err := db.FlushFailed(); err == nil || !strings.Contains(err.Error(), "sqlite error 1034") {
		t.Fatalf("FlushFailed after SQLite's sync failed: %v", err)
	}
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), MessageID: "m-1", Fingerprint: "f"}); err == nil {
		t.Fatal("an order was stored after the disk failed a sync")
	}
}
