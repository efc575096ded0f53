package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// closeAndCopy closes db and copies its file, as a backup taken with the service stopped, to a
// file called name in a folder of its own.
func closeAndCopy(t *testing.T, db *DB, name string) string {
	t.Helper()
	db.Close()
	to := filepath.Join(t.TempDir(), name)
	copyFile(t, db.Path(), to)
	return to
}

// putBack copies the database file from over the one at path, as a backup copied back by hand
// with the service stopped (its WAL files removed), and opens it.
func putBack(t *testing.T, from, path string) *DB {
	t.Helper()
	copyFile(t, from, path)
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
	return openAt(t, path)
}

// TestEpochFollowsTheDatabase checks when the delta feed's epoch stays and when it is renewed: it
// stays across restarts and moves of the whole folder, and is renewed for a database restored
// from a backup, one brought in without its epoch file, and one whose epoch file is damaged.
func TestEpochFollowsTheDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "storeedge.db")
	open := func(p string) *DB { return openAt(t, p) }
	db := open(path)
	first := db.Epoch()
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(first) {
		t.Fatalf("epoch %q", first)
	}
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1"}, price("P1", 1, 100), price("P2", 1, 100))
	backup := closeAndCopy(t, db, "backup.db")

	db = open(path)
	if db.Epoch() != first || db.EpochRenewed() != "" {
		t.Fatalf("a restart changed the epoch: %s → %s (%s)", first, db.Epoch(), db.EpochRenewed())
	}
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c2"}, price("P1", 2, 120))
	// A device reads the delta feed: it holds a position past the backup's.
	if _, err := db.DurableHead(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()

	moved := filepath.Join(t.TempDir(), "storeedge.db")
	copyFile(t, path, moved)
	copyFile(t, epochFile(path), epochFile(moved))
	db = open(moved)
	if db.Epoch() != first {
		t.Errorf("the folder moved whole: epoch %s, want %s (%s)", db.Epoch(), first, db.EpochRenewed())
	}
	db.Close()

	// The backup restored over the database, its WAL files removed as SQLite's backups want.
	db = putBack(t, backup, path)
	restored := db.Epoch()
	if restored == first || !strings.Contains(db.EpochRenewed(), "went back") {
		t.Errorf("restored backup: epoch %s (was %s), reason %q", restored, first, db.EpochRenewed())
	}
	db.Close()
	db = open(path)
	if db.Epoch() != restored || db.EpochRenewed() != "" {
		t.Errorf("the restart after the restore renewed the epoch again: %q", db.EpochRenewed())
	}
	db.Close()

	// The same backup restored a second time: it carries the first epoch, under which devices
	// were given changes it does not hold.
	db = putBack(t, backup, path)
	if again := db.Epoch(); again == first || again == restored || !strings.Contains(db.EpochRenewed(), "another database ran here") {
		t.Errorf("the backup restored again: epoch %s (first %s, after the first restore %s), reason %q", again, first, restored, db.EpochRenewed())
	}
	restored = db.Epoch()
	db.Close()

	alone := filepath.Join(t.TempDir(), "storeedge.db")
	copyFile(t, path, alone)
	db = open(alone)
	if db.Epoch() == restored || db.EpochRenewed() == "" {
		t.Errorf("a database without its epoch file kept epoch %s", db.Epoch())
	}
	db.Close()

	if err := os.WriteFile(epochFile(path), []byte("{\"epo"), 0o600); err != nil {
		t.Fatal(err)
	}
	db = open(path)
	defer db.Close()
	if db.Epoch() == restored || !strings.Contains(db.EpochRenewed(), "storeedge.epoch") {
		t.Errorf("damaged epoch file: epoch %s, reason %q", db.Epoch(), db.EpochRenewed())
	}
}

// FuzzParseEpochMark reads arbitrary epoch files: a mark is accepted only with a well-formed
// epoch and a sequence number ≥ 0, and what is accepted is written back the same.
func FuzzParseEpochMark(f *testing.F) {
	f.Add([]byte(`{"epoch":"3f9c2a71d04be865","seq":10232}` + "\n"))
	f.Add([]byte(`{"epoch":"3F9C2A71D04BE865","seq":1}`))
	f.Add([]byte(`{"epoch":"3f9c2a71d04be865","seq":-1}`))
	f.Add([]byte(`{"epo`))
	f.Add([]byte(`{"epoch":"3f9c2a71d04be865","seq":10232,"given":10200}`))
	f.Add([]byte(`{"epoch":"3f9c2a71d04be865","seq":10232,"given":-5}`))
	f.Add([]byte(`{"epoch":"3f9c2a71d04be865","seq":10232,"given":10200,"runs":[{"id":"0a1b2c3d4e5f6071","end":9000},{"id":"1a1b2c3d4e5f6071","end":0}]}`))
	f.Add([]byte(`{"epoch":"3f9c2a71d04be865","seq":1,"given":1,"runs":[{"id":"XYZ","end":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := parseEpochMark(b)
		if !ok {
			return
		}
		if !IsEpoch(m.Epoch) || m.Seq < 0 || m.Given < 0 {
			t.Fatalf("accepted %q as %+v", b, m)
		}
		if v, err := strconv.ParseUint(m.Epoch, 16, 64); err != nil || formatEpoch(int64(v)) != m.Epoch {
			t.Fatalf("epoch %q does not read back (%v)", m.Epoch, err)
		}
		if len(m.Runs) > maxLineage {
			t.Fatalf("accepted %d runs", len(m.Runs))
		}
		for _, r := range m.Runs {
			if !IsEpoch(r.ID) || r.End < 0 {
				t.Fatalf("accepted the run %+v", r)
			}
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if back, ok := parseEpochMark(out); !ok || back.Epoch != m.Epoch || back.Seq != m.Seq || back.Given != m.Given || len(back.Runs) != len(m.Runs) {
			t.Fatalf("%+v written as %s reads back as %+v, %v", m, out, back, ok)
		}
	})
}

// A database that lost commits no device was given (a power cut's last seconds) keeps its epoch:
// devices are not sent to build their catalog again for it. One that lost a change a device was
// given gets a new one.
func TestEpochAfterLosingCommits(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	epoch := db.Epoch()
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1"}, price("P1", 1, 100))
	atFirst := closeAndCopy(t, db, "first.db")

	db = openAt(t, path)
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c2"}, price("P2", 1, 100))
	if _, err := db.DurableHead(ctx); err != nil { // a device is given it
		t.Fatal(err)
	}
	atGiven := closeAndCopy(t, db, "given.db")

	db = openAt(t, path)
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c3"}, price("P3", 1, 100)) // no device asks
	db.Close()

	// Back to the last change given out: nothing a device holds is lost.
	db = putBack(t, atGiven, path)
	if db.Epoch() != epoch || db.EpochRenewed() != "" {
		t.Errorf("lost only a change no device was given: epoch %s → %s (%s)", epoch, db.Epoch(), db.EpochRenewed())
	}
	db.Close()
	// Back before it: a device holds a position the database no longer has.
	db = putBack(t, atFirst, path)
	defer db.Close()
	if db.Epoch() == epoch || !strings.Contains(db.EpochRenewed(), "given out") {
		t.Errorf("lost a change a device was given: epoch %s → %s (%q)", epoch, db.Epoch(), db.EpochRenewed())
	}
}

// A copy put back by hand that went back past orders, with no device given a change it lost,
// keeps the delta feed's epoch, but the numbers it gave out are not given again.
func TestCopyPutBackGivesNoNumberTwice(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "a", RequestHash: "h"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	copyFile(t, path, path+".copy")
	db = openAt(t, path)
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1"}, price("P1", 1, 100))
	var lost []int64
	for i := range 3 {
		o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint("l", i), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		lost = append(lost, o.Number)
	}
	db.Close()
	db = putBack(t, path+".copy", path)
	defer db.Close()
	o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "after", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Number <= lost[len(lost)-1] {
		t.Errorf("order number %d given again after the copy was put back (the lost ones were %v)", o.Number, lost)
	}
}

// After a crash, a restored backup from before a change a device was given gets a new epoch:
// what was given out is on the disk before it is given, not at the next write of the file.
func TestRestoreAfterACrashRenewsTheEpoch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	epoch := db.Epoch()
	db.Close()
	copyFile(t, path, path+".backup")
	db = openAt(t, path)
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1"}, price("P1", 1, 100))
	if _, err := db.DurableHead(ctx); err != nil { // a device is given change 1
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(db.epochFile) // what a crash now leaves
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.WriteFile(db.epochFile, onDisk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MarkIDsUnclean(path); err != nil {
		t.Fatal(err)
	}
	db = putBack(t, path+".backup", path)
	defer db.Close()
	if db.Epoch() == epoch {
		t.Errorf("a device holds change 1 under epoch %s, the restored database is at %d, and the epoch was kept (file at the crash: %s)", epoch, db.Seq(), onDisk)
	}
}

// A page applied while a device's request writes the epoch file does not wait for those disk
// flushes (the writer lock is held, and orders wait for it), and the file never records less
// than it recorded, whichever write comes last.
func TestEpochFileWritesNeitherBlockNorGoBack(t *testing.T) {
	ctx := context.Background()
	db := openAt(t, filepath.Join(t.TempDir(), "storeedge.db"))
	defer db.Close()
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1"}, price("P1", 1, 100))
	if _, err := db.DurableHead(ctx); err != nil {
		t.Fatal(err)
	}
	db.epochMu.Lock() // a device's request writing the file
	db.epochNoted = time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c2"}, price("P2", 1, 100))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("a page waited for the epoch file's write")
	}
	db.epochMu.Unlock()
	<-done
	// A write that read the head before the request moved it (Close beside a request).
	db.epochMu.Lock()
	err := db.writeEpochFileLocked(0)
	db.epochMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if mark, err := readEpochFile(db.epochFile); err != nil || mark.Given != 1 {
		t.Errorf("epoch file %+v, %v: given went back from 1", mark, err)
	}
}

// A restore undone: the database it replaced is put back after the restored one ran and gave
// devices changes numbered past the backup. The two went on from the backup's point with
// different changes under the same numbers, so the epoch is renewed; a copy from the history the
// server followed is not taken for another.
func TestEpochOfARestoreUndone(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	epoch := db.Epoch()
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1"}, price("P1", 1, 100))
	backup := closeAndCopy(t, db, "backup.db")

	db = openAt(t, path)
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c2"}, price("P2", 1, 100), price("P3", 1, 100)) // no device asks
	replaced := closeAndCopy(t, db, "before-restore.db")

	// The restore: the backup holds every change given out, so the epoch stays.
	db = putBack(t, backup, path)
	if db.Epoch() != epoch || db.EpochRenewed() != "" {
		t.Fatalf("a backup holding every change given out: epoch %s → %s (%s)", epoch, db.Epoch(), db.EpochRenewed())
	}
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c2b"}, price("P4", 1, 100))
	if _, err := db.DurableHead(ctx); err != nil { // a device is given it
		t.Fatal(err)
	}
	again := closeAndCopy(t, db, "after-restore.db")

	// The restore undone: the replaced database is ahead of the backup's point with other changes.
	db = putBack(t, replaced, path)
	renewed := db.Epoch()
	if renewed == epoch || !strings.Contains(db.EpochRenewed(), "another copy ran here") {
		t.Errorf("the replaced database put back: epoch %s → %s (%q)", epoch, renewed, db.EpochRenewed())
	}
	db.Close()
	// A restart keeps it; a copy of the run before is of another epoch now.
	db = openAt(t, path)
	if db.Epoch() != renewed || db.EpochRenewed() != "" {
		t.Errorf("a restart after: epoch %s → %s (%q)", renewed, db.Epoch(), db.EpochRenewed())
	}
	db.Close()
	db = putBack(t, again, path)
	defer db.Close()
	if db.Epoch() == renewed || db.Epoch() == epoch {
		t.Errorf("the restored run's copy put back over the renewed one kept an epoch: %s (%q)", db.Epoch(), db.EpochRenewed())
	}
}

// Copies from the history the server followed keep the epoch: a backup taken two restarts ago,
// holding every change given out since, is not another database.
func TestEpochKeptForAnOlderCopyOfTheSameHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	epoch := db.Epoch()
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1"}, price("P1", 1, 100))
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(context.Background(), backup, Manifest{}); err != nil { // taken while it runs
		t.Fatal(err)
	}
	db.Close()
	for range 2 {
		db = openAt(t, path)
		applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c"}, price("P1", 2, 100)) // no device asks
		db.Close()
	}
	db = putBack(t, backup, path)
	defer db.Close()
	if db.Epoch() != epoch || db.EpochRenewed() != "" {
		t.Errorf("a backup of this history holding every change given out: epoch %s → %s (%s)", epoch, db.Epoch(), db.EpochRenewed())
	}
}

// A restore undone before any device was given a change past the backup's point keeps the
// epoch: up to that point both copies hold the same changes. (The backup is taken while the
// server runs, so the replaced database's run is the one the file records before the restore's.)
func TestEpochKeptForARestoreUndoneBeforeAnythingWasGiven(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	epoch := db.Epoch()
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1"}, price("P1", 1, 100))
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(context.Background(), backup, Manifest{}); err != nil {
		t.Fatal(err)
	}
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c2"}, price("P2", 1, 100)) // no device asks
	replaced := closeAndCopy(t, db, "before-restore.db")
	// The restored database runs: no catalog change is given out, but it takes an order.
	db = putBack(t, backup, path)
	taken, _, err := db.CreateOrder(context.Background(), NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k1", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = putBack(t, replaced, path)
	defer db.Close()
	if db.Epoch() != epoch || db.EpochRenewed() != "" {
		t.Errorf("a restore undone with nothing given past the backup: epoch %s → %s (%s)", epoch, db.Epoch(), db.EpochRenewed())
	}
	// Its order number is not given again: the put-back copy is behind the run that gave it.
	next, _, err := db.CreateOrder(context.Background(), NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k2", RequestHash: "h"})
	if err != nil || next.Number <= taken.Number || db.IDsRaised() == "" {
		t.Errorf("the order after the put-back is number %d (%v), the restored run gave %d; counters raised: %q", next.Number, err, taken.Number, db.IDsRaised())
	}
}

// The epoch file stays under the 1,024 bytes the versions before runs read of it, however many
// times the server starts: going back to one of them does not find it damaged.
func TestEpochFileStaysSmall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.db")
	for range maxLineage + 5 {
		db := openAt(t, path)
		applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c"}, price("P1", 1, 100))
		db.Close()
	}
	b, err := os.ReadFile(epochFile(path))
	if err != nil {
		t.Fatal(err)
	}
	var m epochMark
	if err := json.Unmarshal(b, &m); err != nil || len(m.Runs) != maxLineage {
		t.Fatalf("epoch file %s: %v", b, err)
	}
	// The longest it can be: every number at its largest.
	for i := range m.Runs {
		m.Runs[i] = runMark{ID: "ffffffffffffffff", End: math.MaxInt64}
	}
	m.Seq, m.Given = math.MaxInt64, math.MaxInt64
	if longest, _ := json.Marshal(m); len(longest)+1 > 1024 {
		t.Errorf("an epoch file can be %d bytes; the versions before runs read 1024", len(longest)+1)
	}
}
