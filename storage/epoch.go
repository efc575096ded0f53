package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The epoch names the sequence of local change numbers that devices follow with
// changes?since=: a random id made with the database, and made anew when the database is found to
// have gone back before a change the feed gave a device (a backup restored over it, a copy
// brought from elsewhere), since the numbers a device holds would then name other changes. A
// device that sends the epoch it knows learns that its position no longer holds. The feed gives
// out only changes on the disk (DurableHead), so a power cut that undoes the last commits takes
// back none a device holds, and keeps the epoch.
//
// Going back is noticed through a small file beside the database (epochFile) that holds the
// epoch, the sequence number the database had reached and the last one the feed gave out. It is
// written at open, at close, at most every epochFileInterval while pages are applied, and before
// the feed gives out a change it had not (DurableHead; the feed answers an error rather than give
// out a change the file does not record). At
// open, a database whose sequence is below the one given out, whose epoch is not the file's (a
// backup restored a second time), whose run is not in the file's history up to where it is (a
// copy that went on elsewhere: the database a restore replaced, put back after the restored one
// ran), or that has no valid file beside it, gets a new epoch; one below the one reached only has its stock imports marked (what was
// applied after the point it went back to is lost with it). A database that is new, or moved
// with its file, is not mistaken: the one has nothing a device could hold, the other holds what
// it held.

// epochFileInterval is how often, at most, applying pages writes the epoch file.
const epochFileInterval = 10 * time.Second

// maxEpochFileBytes bounds what is read of the epoch file.
const maxEpochFileBytes = 8 << 10

// maxLineage bounds the runs an epoch file remembers: a copy of the database from a run older
// than these is taken for another database. 16 keeps the file under the 1,024 bytes the
// versions before runs read of it, so that going back to one of them does not find it damaged.
const maxLineage = 16

// epochMark is the content of the epoch file.
type epochMark struct {
	Epoch string `json:"epoch"`
	Seq   int64  `json:"seq"` // the last commit the database had reached
	// Given is the last change the delta feed gave out (on the disk, DurableHead): what devices
	// may hold. A file written before it was kept has none, read as Seq.
	Given int64 `json:"given"`
	// Runs are the runs of the database under this epoch, oldest first: each open gives the
	// database a new run id (meta 'run'), and the run before it ends at the sequence number the
	// database had then. The last is the run going on. A copy of the database (a backup) carries
	// the id of the run it was taken in: it is of this history only if it holds no change past
	// where that run ended here. Absent from files written before runs were kept.
	Runs []runMark `json:"runs,omitempty"`
}

// runMark is one run of the database: its id and the sequence number it ended at (ignored for
// the last, the run going on).
type runMark struct {
	ID  string `json:"id"`
	End int64  `json:"end"`
}

// Files are the files of the database at path: the database, SQLite's write-ahead log and
// shared memory, and the ids and epoch files beside them.
func Files(path string) []string {
	return []string{path, path + "-wal", path + "-shm", idsFile(path), epochFile(path)}
}

// epochFile is the file of the database at path: storeedge.epoch beside storeedge.db.
func epochFile(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".epoch"
}

// formatEpoch writes an epoch as 16 lower-case hexadecimal digits.
func formatEpoch(v int64) string {
	s := strconv.FormatUint(uint64(v), 16)
	return strings.Repeat("0", 16-len(s)) + s
}

// Epoch is the delta feed's epoch: 16 lower-case hexadecimal digits.
func (db *DB) Epoch() string { return db.epoch }

// EpochRenewed says why Open made a new epoch ("" when it kept the database's).
func (db *DB) EpochRenewed() string { return db.epochRenewed }

// checkEpoch reads the database's epoch and renews it when the database went back before a
// change given out, then writes the epoch file. wentBack says whether the database is behind
// the file at all (or has no valid file): numbers it gave out may be lost with it.
func (db *DB) checkEpoch(ctx context.Context) (wentBack bool, err error) {
	var v int64
	if err := db.w.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'epoch'`).Scan(&v); err != nil {
		return false, fmt.Errorf("storage: read epoch: %w", err)
	}
	db.epoch = formatEpoch(v)
	var run int64
	switch err := db.w.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'run'`).Scan(&run); {
	case errors.Is(err, sql.ErrNoRows): // a database from before runs were kept
	case err != nil:
		return false, fmt.Errorf("storage: read the run: %w", err)
	}
	mark, ferr := readEpochFile(db.epochFile)
	seq := db.seq.Load()
	// Where this database's run is in the file's history; -1 when it is not there (or either
	// predates runs being kept).
	at := -1
	for i, r := range mark.Runs {
		if run != 0 && r.ID == formatEpoch(run) {
			at = i
		}
	}
	// A copy of an earlier run, or of a run the file no longer follows, is behind what later runs
	// did: orders and events advance no catalog change, so its sequence number cannot tell.
	earlier := ferr == nil && mark.Epoch == db.epoch && run != 0 && len(mark.Runs) > 0 && at < len(mark.Runs)-1
	// Such a copy that went on past where its run ended here diverged, if devices were given
	// changes past that point (in the history the file records): up to it, both copies hold
	// the same.
	diverged := earlier && (at < 0 || seq > mark.Runs[at].End && mark.Given > mark.Runs[at].End)
	wentBack = ferr != nil || mark.Epoch != db.epoch || mark.Seq > seq || earlier
	switch {
	case errors.Is(ferr, fs.ErrNotExist):
		db.epochRenewed = "no " + filepath.Base(db.epochFile) + " beside the database"
	case ferr != nil:
		db.epochRenewed = ferr.Error()
	case mark.Epoch != db.epoch:
		// Another database ran here last (a backup restored again, an older one after a
		// newer): devices may hold its positions, and this database's own were given out before
		// it went away, so nothing tells which of them still hold.
		db.epochRenewed = fmt.Sprintf("the database has epoch %s, but %s records %s: another database ran here since", db.epoch, filepath.Base(db.epochFile), mark.Epoch)
	case diverged:
		// A copy that went on past where its run ended here (the database put back after a
		// restore it replaced had run): its changes past that point are not the ones devices
		// were given under the same numbers.
		db.epochRenewed = fmt.Sprintf("the database is a copy from run %s, which %s does not record as this database's history up to change %d: another copy ran here since", formatEpoch(run), filepath.Base(db.epochFile), seq)
	case mark.Epoch == db.epoch && mark.Given > seq:
		// Devices may hold positions past the database's last change. Commits lost that no
		// device was given (a power cut's last seconds) leave the epoch as it is.
		db.epochRenewed = fmt.Sprintf("the database is at change %d, it had given out %d: it went back in time", seq, mark.Given)
	case mark.Epoch == db.epoch:
		db.givenWritten = mark.Given // what devices may hold from earlier runs: never recorded less
	}
	if db.epochRenewed != "" {
		if err := db.renewEpoch(ctx); err != nil {
			return false, err
		}
	}
	// The history this run goes on from: the file's up to this database's run, which ends here;
	// none under a new epoch, or when either predates runs being kept.
	var runs []runMark
	if db.epochRenewed == "" && at >= 0 {
		runs = append(runs, mark.Runs[:at+1]...)
		runs[at].End = seq
	}
	run, err = db.newRun(runs)
	if err != nil {
		return false, err
	}
	if wentBack {
		// Stock files applied after the moment the database went back to are lost with it.
		if err := markStockImportsRestored(ctx, db.w); err != nil {
			return false, fmt.Errorf("storage: mark the stock imports: %w", err)
		}
	}
	removeLeftovers(db.epochFile)
	if err := db.writeEpochFile(); err != nil {
		return false, fmt.Errorf("storage: write %s: %w", db.epochFile, err)
	}
	// Synced: lost to a power cut, the database would look like a copy of the run before.
	if err := db.writeDurable(ctx, nil, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('run', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, run)
		return err
	}); err != nil {
		return false, fmt.Errorf("storage: record the run: %w", err)
	}
	return wentBack, nil
}

// newRun makes an id for this run of the database and puts it at the end of the runs the epoch
// file is to record (the oldest dropped beyond maxLineage). The file is written before the
// database takes the id (a commit that waits for the disk): a crash between the two leaves a
// database that looks like a copy of the run before, and the next Open raises the counters of
// the numbers given out, which is safe.
func (db *DB) newRun(runs []runMark) (int64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("storage: new run: %w", err)
	}
	v := max(int64(binary.LittleEndian.Uint64(b[:])>>1), 1) // positive: 0 means none
	runs = append(runs, runMark{ID: formatEpoch(v)})
	db.runs = runs[max(0, len(runs)-maxLineage):]
	return v, nil
}

func (db *DB) renewEpoch(ctx context.Context) error {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("storage: new epoch: %w", err)
	}
	v := int64(binary.LittleEndian.Uint64(b[:]))
	if _, err := db.w.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'epoch'`, v); err != nil {
		return fmt.Errorf("storage: new epoch: %w", err)
	}
	db.epoch = formatEpoch(v)
	return nil
}

// readEpochFile reads an epoch file; an error other than fs.ErrNotExist says what is wrong with it.
func readEpochFile(path string) (epochMark, error) {
	b, err := readSmallFile(path, maxEpochFileBytes)
	if err != nil {
		return epochMark{}, err
	}
	m, ok := parseEpochMark(b)
	if !ok {
		return epochMark{}, fmt.Errorf("%s does not hold an epoch and a sequence number", filepath.Base(path))
	}
	return m, nil
}

// parseEpochMark reads the content of an epoch file.
func parseEpochMark(b []byte) (epochMark, bool) {
	var f struct {
		Epoch string    `json:"epoch"`
		Seq   int64     `json:"seq"`
		Given *int64    `json:"given"`
		Runs  []runMark `json:"runs"`
	}
	if err := json.Unmarshal(b, &f); err != nil || !IsEpoch(f.Epoch) || f.Seq < 0 || f.Given != nil && *f.Given < 0 {
		return epochMark{}, false
	}
	for _, r := range f.Runs {
		if !IsEpoch(r.ID) || r.End < 0 {
			return epochMark{}, false
		}
	}
	f.Runs = f.Runs[max(0, len(f.Runs)-maxLineage):] // the latest, as this version keeps them
	m := epochMark{Epoch: f.Epoch, Seq: f.Seq, Given: f.Seq, Runs: f.Runs}
	if f.Given != nil {
		m.Given = *f.Given
	}
	return m, true
}

// IsEpoch reports whether s is written as an epoch is: 16 lower-case hexadecimal digits.
func IsEpoch(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// writeEpochFile records the epoch, the last commit and the last change the delta feed gave out,
// replacing the file whole, and notes when. Recording what was given out (DurableHead writes it
// before it gives a change out), not only the last commit, keeps a power cut that undid commits
// no device was given from counting as going back in time: devices are not sent to build their
// catalog again for it.
func (db *DB) writeEpochFile() error { return db.noteGiven(db.durable.Load()) }

func (db *DB) writeEpochFileLocked(given int64) error {
	// Never back: a write that read durable before another moved it past what that one wrote
	// (Close beside a device's request) keeps the later figure.
	given = max(given, db.givenWritten)
	b, err := json.Marshal(epochMark{Epoch: db.epoch, Seq: db.seq.Load(), Given: given, Runs: db.runs})
	if err != nil {
		return err
	}
	// Noted tried, written or not: a file that cannot be written now is tried again after
	// epochFileInterval, not after every page.
	db.epochNoted = time.Now()
	if err := writeFileSynced(db.epochFile, append(b, '\n')); err != nil {
		return err
	}
	db.givenWritten = given
	return nil
}

// noteGiven records that the delta feed is about to give out changes up to given, before it does.
func (db *DB) noteGiven(given int64) error {
	db.epochMu.Lock()
	defer db.epochMu.Unlock()
	return db.writeEpochFileLocked(given)
}

// noteSeqLocked writes the epoch file after a page when the last write is old enough. A failure
// is not the page's: the file is only a record of how far the database had got (what devices were
// given is written before they are given it), and the next write catches up.
func (db *DB) noteSeqLocked() {
	// Not behind a device's request writing the file: the writer lock is held here, and an
	// order waiting for it must not wait for those disk flushes too. That write records the
	// commit as well.
	if !db.epochMu.TryLock() {
		return
	}
	defer db.epochMu.Unlock()
	if time.Since(db.epochNoted) >= epochFileInterval {
		_ = db.writeEpochFileLocked(db.durable.Load())
	}
}
