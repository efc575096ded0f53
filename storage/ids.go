package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/storeedge/storeedge/internal/durable"
)

// The numbers storeedge gives out to others — event ids (a device's position on the event
// stream), order numbers (on a ticket, at the till), export batch ids (in the back office's file
// names) — are never given out twice, even when a power cut undoes the last commits (they are
// synchronous NORMAL, docs/architecture.md): a device holding event 105 that was lost would skip
// the new events given 101–105, and an order number would name two orders.
//
// A small file beside the database, storeedge.ids, holds for each counter a mark that no number
// given out ever passed, synced to the disk before a commit gives out a number beyond it (a block
// at a time, so one disk flush every idBlock numbers). It also says whether the last run closed
// the database cleanly, and then the numbers given out. When it did not (a crash, a power cut),
// or the database went back in time (a restore, an old copy: behind its epoch file, or holding
// fewer numbers than the file says were given out), Open raises each counter to its mark:
// numbers jump, none repeats.

// Blocks of numbers reserved at once.
const (
	eventIDBlock     = 1000
	orderNumberBlock = 100
	batchIDBlock     = 100
)

// Each ids file has an id, which the database records (in meta, metaMarksID) at every Open: a
// database that has given out numbers and is found beside another file, or none, was last used
// elsewhere (restored from a backup made on another machine, the old one's disk lost), and what
// was given out there after the backup is unknown; Open makes each counter jump by restoreJump
// blocks (docs/install.md). A backup made on this machine records this file's id, so its
// restore here raises the counters to the marks only, which pass every number given here.
const (
	metaMarksID = "marks_id"
	restoreJump = 1000 // blocks: 100,000 order numbers and export batch ids, 1,000,000 event ids
)

// maxIDsFileBytes bounds what is read of the ids file.
const maxIDsFileBytes = 1024

// idMarks is the content of the ids file.
type idMarks struct {
	ID      int64 `json:"id,omitempty"` // the file's, recorded by the database (absent from files of earlier versions)
	Events  int64 `json:"events"`
	Orders  int64 `json:"orders"`
	Batches int64 `json:"batches"`
	Clean   bool  `json:"clean"` // the database was closed cleanly after the marks were written
	// Given are the numbers the database had given out when it was closed cleanly: a database
	// found with fewer is an older copy put in its place (orders and events move no catalog
	// change, so the epoch file cannot tell). Absent from files of earlier versions.
	Given *idCounts `json:"given,omitempty"`
}

// idCounts are the highest numbers given out of each counter.
type idCounts struct {
	Events  int64 `json:"events"`
	Orders  int64 `json:"orders"`
	Batches int64 `json:"batches"`
}

// idsFile is the ids file of the database at path: storeedge.ids beside storeedge.db.
func idsFile(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".ids"
}

// idReserve is what the database holds of the marks. Guarded by wmu, as every number is given
// out by a writer.
type idReserve struct {
	path  string
	marks idMarks
	dirty bool // a mark moved since the file was written
}

// need notes that n is given out of the counter at mark, moving the mark a block beyond when n
// passes it; the writer saves the marks before its commit.
func (r *idReserve) need(mark *int64, n, block int64) {
	if n > *mark {
		*mark = n + block
		r.dirty = true
	}
}

// saveIfMoved writes the marks when a number passed one, before the commit that gives it out.
func (r *idReserve) saveIfMoved() error {
	if r == nil || !r.dirty {
		return nil
	}
	if err := writeIDsFile(r.path, r.marks); err != nil {
		return fmt.Errorf("storage: write %s: %w", filepath.Base(r.path), err)
	}
	r.dirty = false
	return nil
}

// readIDsFile reads an ids file; fs.ErrNotExist when there is none.
func readIDsFile(path string) (idMarks, error) {
	b, err := readSmallFile(path, maxIDsFileBytes)
	if err != nil {
		return idMarks{}, err
	}
	var m idMarks
	bad := func(n int64) bool { return n < 0 || n > maxMark }
	if err := json.Unmarshal(b, &m); err != nil || bad(m.Events) || bad(m.Orders) || bad(m.Batches) ||
		m.Given != nil && (bad(m.Given.Events) || bad(m.Given.Orders) || bad(m.Given.Batches)) {
		return idMarks{}, fmt.Errorf("%s does not hold the marks of the numbers given out", filepath.Base(path))
	}
	return m, nil
}

// maxMark is the greatest mark an ids file may hold: the greatest integer a device's JSON
// reader (JavaScript's numbers) holds exactly. A larger one is a damaged or edited file: taken
// for the counters, it would overflow them.
const maxMark = 1<<53 - 1

// writeIDsFile replaces the ids file whole, synced to the disk with its folder.
func writeIDsFile(path string, m idMarks) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return writeFileSynced(path, append(b, '\n'))
}

// readSmallFile reads the file at path, which must hold at most limit bytes; fs.ErrNotExist when
// there is none.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", filepath.Base(path), limit)
	}
	return b, err
}

// removeLeftovers removes the temporary files a stop in the middle of writeFileSynced(path)
// left.
func removeLeftovers(path string) {
	if left, err := filepath.Glob(path + ".tmp-*"); err == nil {
		for _, p := range left {
			os.Remove(p)
		}
	}
}

// writeFileSynced replaces the small file at path whole with b: written under a name of its own
// (another process, storeedge backup say, may open the database too), synced, renamed over the
// file, the rename synced. A stop at any point leaves the old file or the new one, and at most a
// temporary file, which the next Open removes.
func writeFileSynced(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = durable.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// MarkIDsUnclean makes the next Open of the database at dbPath raise its counters to the marks,
// as after a crash: for a database put back from a backup (Restore), whose counters are behind
// the numbers the replaced one gave out.
func MarkIDsUnclean(dbPath string) error {
	path := idsFile(dbPath)
	m, err := readIDsFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Damaged: its marks are lost. A file without an id marks no database, so the next Open
		// takes the restored one for a database used elsewhere, and the numbers jump.
		return writeIDsFile(path, idMarks{})
	}
	m.Clean = false
	return writeIDsFile(path, m)
}

// idsGiven are the highest numbers the database has given out.
func idsGiven(ctx context.Context, q querier) (idMarks, error) {
	var m idMarks
	err := q.QueryRowContext(ctx, `SELECT
		max((SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events'), (SELECT coalesce(max(id), 0) FROM events)),
		max((SELECT coalesce(max(number), 0) FROM orders), (SELECT coalesce(max(value), 0) FROM meta WHERE key = 'order_number_floor')),
		max((SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'export_batches'), (SELECT coalesce(max(id), 0) FROM export_batches))`).
		Scan(&m.Events, &m.Orders, &m.Batches)
	return m, err
}

// checkIDs reads the ids file at open: after a run that did not close cleanly, or when the
// database went back in time (backInTime), the counters are raised to the marks; then a block
// of each is reserved beyond what was given out, and the file says the database is open.
func (db *DB) checkIDs(ctx context.Context, backInTime bool) error {
	path := idsFile(db.path)
	given, err := idsGiven(ctx, db.w)
	if err != nil {
		return fmt.Errorf("storage: read the numbers given out: %w", err)
	}
	file, err := readIDsFile(path)
	known, missing := err == nil, errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		// Damaged (a power cut during a write the file system did not journal, a hand's edit):
		// its marks are unknown, so the counters jump well past what the database holds.
		file = idMarks{Events: given.Events + 10*eventIDBlock, Orders: given.Orders + 10*orderNumberBlock, Batches: given.Batches + 10*batchIDBlock}
		known = true
		db.idsRaised = fmt.Sprintf("%s cannot be read (%v): the numbers given out start well past the database's", filepath.Base(path), err)
	}
	var beside int64 // the id of the ids file the database was last opened beside; 0: none recorded
	if err := db.w.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM meta WHERE key = ?), 0)`, metaMarksID).Scan(&beside); err != nil {
		return fmt.Errorf("storage: read the numbers given out: %w", err)
	}
	id := file.ID
	if db.idsRaised == "" && (missing || id != beside && (id != 0 || beside != 0)) && (given.Events > 0 || given.Orders > 0 || given.Batches > 0 || beside != 0) {
		// Last used beside other marks, or none: no file at all, or another file's id (a file of
		// an earlier version beside a database of this one counts as other marks, and so does a
		// file of this version beside a database of an earlier one). Only a file and a database
		// both of the version before the ids (an upgrade) go together without one. A database
		// that gave out nothing yet jumps too once it was opened beside marks (beside): a copy
		// of it, taken before the first order, may have gone on giving out numbers; only a new
		// database (never opened beside marks) starts at 1.
		file = idMarks{Events: max(file.Events, given.Events+restoreJump*eventIDBlock), Orders: max(file.Orders, given.Orders+restoreJump*orderNumberBlock),
			Batches: max(file.Batches, given.Batches+restoreJump*batchIDBlock)}
		known = true
		db.idsRaised = fmt.Sprintf("the database was last used beside other marks than %s (restored from a backup made on another machine, or the file replaced or deleted): what was given out after it is unknown, so the numbers jump by %d order numbers",
			filepath.Base(path), restoreJump*orderNumberBlock)
	}
	if id == 0 { // a first start, a file of an earlier version, or a damaged one
		if id, err = newMarksID(); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
	}
	removeLeftovers(path)
	if known && file.Clean && file.Given != nil && !backInTime &&
		(given.Events < file.Given.Events || given.Orders < file.Given.Orders || given.Batches < file.Given.Batches) {
		backInTime = true
		db.idsRaised = fmt.Sprintf("the database has given out fewer numbers than it had when it was last closed (order %d, %s says %d): it is an older copy; the numbers given out start past the marks",
			given.Orders, filepath.Base(path), file.Given.Orders)
	}
	raise := known && (!file.Clean || backInTime)
	if raise || id != beside {
		// The marks' id goes with the raise: a stop before the file is written must not make the
		// numbers jump again.
		if err := db.writeDurable(ctx, nil, func(tx *sql.Tx) error {
			if raise {
				if err := raiseIDs(ctx, tx, file); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)`, metaMarksID, id)
			return err
		}); err != nil {
			return fmt.Errorf("storage: raise the numbers given out: %w", err)
		}
	}
	if raise {
		if db.idsRaised == "" {
			db.idsRaised = "the last run did not stop cleanly (a crash or a power cut), or the database went back in time: the numbers given out start past the marks of " + filepath.Base(path)
		}
		if given, err = idsGiven(ctx, db.w); err != nil {
			return fmt.Errorf("storage: read the numbers given out: %w", err)
		}
	}
	db.ids = &idReserve{path: path, marks: idMarks{ID: id, Events: given.Events + eventIDBlock, Orders: given.Orders + orderNumberBlock,
		Batches: given.Batches + batchIDBlock}}
	if err := writeIDsFile(path, db.ids.marks); err != nil {
		return fmt.Errorf("storage: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// newMarksID returns a random id for an ids file, positive and not 0.
func newMarksID() (int64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("an id for the marks: %w", err)
	}
	return int64(binary.LittleEndian.Uint64(b[:])>>1) | 1, nil
}

// raiseIDs makes the counters give out numbers above the marks m.
func raiseIDs(ctx context.Context, tx *sql.Tx, m idMarks) error {
	for name, mark := range map[string]int64{"events": m.Events, "export_batches": m.Batches} {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sqlite_sequence(name, seq) SELECT ?, 0
			WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)`, name, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?`, mark, name); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('order_number_floor', ?)
		ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)`, m.Orders)
	return err
}

// IDsRaised says why Open raised the counters of the numbers given out ("" when it did not).
func (db *DB) IDsRaised() string { return db.idsRaised }

// syncForClose makes every commit so far durable, with one that waits for the disk (the WAL's
// sync covers the frames before it): the database may be closed without a checkpoint, another
// process holding it open. Called with wmu held, before the ids file says the stop was clean.
func (db *DB) syncForClose(ctx context.Context) error {
	if _, err := db.w.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		return err
	}
	defer db.w.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = NORMAL`)
	// A change, so that the commit writes a frame and syncs the WAL (an update to the same value
	// writes nothing).
	_, err := db.w.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('clean_stops', 1)
		ON CONFLICT(key) DO UPDATE SET value = value + 1`)
	return err
}

// closeIDs records that the database was closed cleanly, once syncForClose made every commit
// durable. Called with wmu held.
func (db *DB) closeIDs() error {
	if db.ids == nil {
		return nil
	}
	m := db.ids.marks
	m.Clean = true
	if given, err := idsGiven(context.Background(), db.w); err == nil {
		m.Given = &idCounts{Events: given.Events, Orders: given.Orders, Batches: given.Batches}
	}
	err := writeIDsFile(db.ids.path, m)
	db.ids = nil // a second Close says nothing more
	return err
}
