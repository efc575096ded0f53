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
// have gone back in time (a backup restored over it, a copy brought from elsewhere, a power cut
// that lost its last writes), since the numbers a device holds would then name other changes. A
// device that sends the epoch it knows learns that its position no longer holds.
//
// Going back is noticed through a small file beside the database (epochFile) that holds the
// epoch and a sequence number the database had reached. It is written at open, at close, and at
// most every epochFileInterval while pages are applied. At open, a database whose sequence is
// below the file's, or that has no valid file beside it, gets a new epoch. A database that is
// new, or moved with its file, is not mistaken: the one has nothing a device could hold, the
// other holds what it held.

// epochFileInterval is how often, at most, applying pages writes the epoch file.
const epochFileInterval = 10 * time.Second

// maxEpochFileBytes bounds what is read of the epoch file.
const maxEpochFileBytes = 1024

// epochMark is the content of the epoch file.
type epochMark struct {
	Epoch string `json:"epoch"`
	Seq   int64  `json:"seq"`
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

// checkEpoch reads the database's epoch and renews it when the database went back in time, then
// writes the epoch file.
func (db *DB) checkEpoch(ctx context.Context) error {
	var v int64
	if err := db.w.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'epoch'`).Scan(&v); err != nil {
		return fmt.Errorf("storage: read epoch: %w", err)
	}
	db.epoch = formatEpoch(v)
	mark, err := readEpochFile(db.epochFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		db.epochRenewed = "no " + filepath.Base(db.epochFile) + " beside the database"
	case err != nil:
		db.epochRenewed = err.Error()
	case mark.Epoch == db.epoch && mark.Seq > db.seq.Load():
		db.epochRenewed = fmt.Sprintf("the database is at change %d, it had reached %d: it went back in time", db.seq.Load(), mark.Seq)
	}
	if db.epochRenewed != "" {
		if err := db.renewEpoch(ctx); err != nil {
			return err
		}
		// Stock files applied after the moment the database went back to are lost with it.
		if err := markStockImportsRestored(ctx, db.w); err != nil {
			return fmt.Errorf("storage: mark the stock imports: %w", err)
		}
	}
	removeLeftovers(db.epochFile)
	if err := db.writeEpochFile(); err != nil {
		return fmt.Errorf("storage: write %s: %w", db.epochFile, err)
	}
	return nil
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
	var m epochMark
	if err := json.Unmarshal(b, &m); err != nil || !IsEpoch(m.Epoch) || m.Seq < 0 {
		return epochMark{}, false
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

// writeEpochFile records the epoch and the sequence reached, replacing the file whole, and
// notes when. Callers hold wmu, or have the database to themselves (Open, Close).
func (db *DB) writeEpochFile() error {
	b, err := json.Marshal(epochMark{Epoch: db.epoch, Seq: db.seq.Load()})
	if err != nil {
		return err
	}
	// Noted tried, written or not: a file that cannot be written now is tried again after
	// epochFileInterval, not after every page.
	db.epochNoted = time.Now()
	return writeFileSynced(db.epochFile, append(b, '\n'))
}

// noteSeqLocked writes the epoch file after a page when the last write is old enough. A failure
// is not the page's: the file is only a lower bound of what devices may hold, and the next write
// catches up.
func (db *DB) noteSeqLocked() {
	if time.Since(db.epochNoted) >= epochFileInterval {
		_ = db.writeEpochFile()
	}
}
