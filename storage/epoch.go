package storage

import (
	"context"
	"crypto/rand"
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
// backup restored a second time), or that has no valid file beside it, gets a new epoch; one below the one reached only has its stock imports marked (what was
// applied after the point it went back to is lost with it). A database that is new, or moved
// with its file, is not mistaken: the one has nothing a device could hold, the other holds what
// it held.

// epochFileInterval is how often, at most, applying pages writes the epoch file.
const epochFileInterval = 10 * time.Second

// maxEpochFileBytes bounds what is read of the epoch file.
const maxEpochFileBytes = 1024

// epochMark is the content of the epoch file.
type epochMark struct {
	Epoch string `json:"epoch"`
	Seq   int64  `json:"seq"` // the last commit the database had reached
	// Given is the last change the delta feed gave out (on the disk, DurableHead): what devices
	// may hold. A file written before it was kept has none, read as Seq.
	Given int64 `json:"given"`
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
	mark, ferr := readEpochFile(db.epochFile)
	seq := db.seq.Load()
	wentBack = ferr != nil || mark.Epoch != db.epoch || mark.Seq > seq
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
	return wentBack, nil
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
		Epoch string `json:"epoch"`
		Seq   int64  `json:"seq"`
		Given *int64 `json:"given"`
	}
	if err := json.Unmarshal(b, &f); err != nil || !IsEpoch(f.Epoch) || f.Seq < 0 || f.Given != nil && *f.Given < 0 {
		return epochMark{}, false
	}
	m := epochMark{Epoch: f.Epoch, Seq: f.Seq, Given: f.Seq}
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
	b, err := json.Marshal(epochMark{Epoch: db.epoch, Seq: db.seq.Load(), Given: given})
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
