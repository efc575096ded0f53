package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A power cut undoes the last commits (synchronous NORMAL) but not the ids file, which is synced
// before a number beyond its marks is given out: after it, no event id and no order number is
// given out again, so a device holding event 5 (lost) still gets the new events, and no number
// names two orders.
func TestNumbersAreNotGivenTwiceAfterAPowerCut(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "storeedge.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint("before", i), RequestHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The state the disk holds at the power cut: the database as it was then...
	saved := map[string][]byte{}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if b, err := os.ReadFile(path + suffix); err == nil {
			saved[suffix] = b
		}
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var lost []int64
	for i := range orderNumberBlock + 50 { // answered, then undone by the cut; past a block
		o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint("lost", i), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		lost = append(lost, o.Number)
	}
	lastEvent, err := db.LastEventID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// ...and the ids file as the disk holds it while the database is open.
	idsOnDisk, err := os.ReadFile(idsFile(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
		if b, ok := saved[suffix]; ok {
			if err := os.WriteFile(path+suffix, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(idsFile(path), idsOnDisk, 0o600); err != nil {
		t.Fatal(err)
	}

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "after", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range lost {
		if o.Number <= n {
			t.Fatalf("after the power cut, order number %d; the lost orders had %v", o.Number, lost)
		}
	}
	events, err := db.EventsAfter(ctx, lastEvent, 10)
	if err != nil || len(events) == 0 {
		t.Fatalf("a device at event %d (lost with the cut) gets %v, %v; want the new order's event", lastEvent, events, err)
	}
}

// A clean close leaves nothing to raise: the numbers go on from where they were.
func TestNumbersGoOnAfterACleanClose(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	var last int64
	for run := range 3 {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint(run), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		if o.Number != last+1 {
			t.Fatalf("run %d: order number %d after %d", run, o.Number, last)
		}
		last = o.Number
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A damaged ids file does not stop the server: the numbers start well past the database's.
func TestDamagedIDsFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "1", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	for i, damaged := range []string{
		`{"events":`,
		// Marks past what a device's JSON holds exactly (an edit): as counters they would overflow.
		`{"events":9223372036854775000,"orders":9223372036854775000,"batches":1}`,
		`{"events":1,"orders":9007199254740992,"batches":1}`,
		`{"events":1,"orders":1,"batches":1,"given":{"events":1,"orders":9223372036854775807,"batches":1}}`,
	} {
		if err := os.WriteFile(idsFile(path), []byte(damaged), 0o600); err != nil {
			t.Fatal(err)
		}
		db, err = Open(ctx, path)
		if err != nil {
			t.Fatalf("ids file %s: %v", damaged, err)
		}
		if !strings.Contains(db.IDsRaised(), "cannot be read") {
			t.Errorf("ids file %s: the raise is not said: %q", damaged, db.IDsRaised())
		}
		next, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint("after", i), RequestHash: "h"})
		if err != nil || next.Number <= o.Number+orderNumberBlock || next.Number > o.Number+100*orderNumberBlock {
			t.Fatalf("after ids file %s: order %d (%v), the last was %d", damaged, next.Number, err, o.Number)
		}
		o = next
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// An ids or epoch file over its limit is refused as such, not read cut short (which a valid
// document padded with blanks would survive, and a longer one fail as "does not hold the marks").
func TestSmallFileOverItsLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.ids")
	doc := `{"events":5}`
	os.WriteFile(path, []byte(doc+strings.Repeat(" ", maxIDsFileBytes-len(doc))), 0o600)
	if _, err := readIDsFile(path); err != nil {
		t.Fatalf("a file of %d bytes: %v", maxIDsFileBytes, err)
	}
	os.WriteFile(path, []byte(doc+strings.Repeat(" ", maxIDsFileBytes+1-len(doc))), 0o600)
	if _, err := readIDsFile(path); err == nil || err.Error() != "storeedge.ids is larger than 1024 bytes" {
		t.Fatalf("a file of %d bytes: %v", maxIDsFileBytes+1, err)
	}
}

// Close says the stop was clean only after a commit that waits for the disk, and that commit
// writes (a commit that changes nothing syncs nothing): with another connection open, as a backup
// reading, SQLite does not checkpoint at close, and the WAL's last frames are the commits'.
func TestCloseCommitsToTheDisk(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := reader.ExecContext(ctx, `SELECT count(*) FROM meta`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "1", RequestHash: "h"}); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	db.wmu.Lock()
	err = db.syncForClose(ctx)
	db.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() <= before.Size() {
		t.Fatalf("the closing commit wrote nothing to the WAL (%d bytes before, %d after): it synced nothing", before.Size(), after.Size())
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if m, err := readIDsFile(idsFile(path)); err != nil || !m.Clean {
		t.Fatalf("ids file after close: %+v, %v", m, err)
	}
	// A writer that comes after Close began is refused: it would give out numbers the file,
	// saying the stop was clean, does not cover.
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "2", RequestHash: "h"}); !errors.Is(err, errClosed) {
		t.Fatalf("an order after Close: %v, want refused", err)
	}
	// A request cut meanwhile (the server stopping) is said as such, not as the database closed.
	cut, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := db.CreateOrder(cut, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "3", RequestHash: "h"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cut order after Close: %v, want context.Canceled", err)
	}
}

// A copy of the database from the same run, put back by hand after the run gave out numbers
// without a catalog change (an order), is found behind: the numbers go on past those given.
func TestCopyOfTheSameRunPutBackGivesNoNumberTwice(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(ctx, backup, Manifest{}); err != nil {
		t.Fatal(err)
	}
	first, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k1", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = putBack(t, backup, path)
	defer db.Close()
	next, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k2", RequestHash: "h"})
	if err != nil || next.Number <= first.Number || !strings.Contains(db.IDsRaised(), "older copy") {
		t.Errorf("after the put-back the next order is %d (%v), the run gave %d before; raised: %q", next.Number, err, first.Number, db.IDsRaised())
	}
}
