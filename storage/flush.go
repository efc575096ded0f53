package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// walFlush shares the flushes of the write-ahead log between those who wait for their commits
// to reach the disk: a group commit. The database commits with synchronous NORMAL, which writes
// each commit to the WAL without waiting for the disk; what is answered to a device as stored
// then waits for a flush begun after its commit. Those that commit while one flush runs share
// the next one: a flush costs the writer nothing (it runs outside the writer's lock), flushes
// never queue behind each other, and the slower the disk, the more commits share one (on a
// disk that flushes in a fraction of a millisecond, 500 orders a second seldom do).
type walFlush struct {
	mu      sync.Mutex   // one flush at a time
	started atomic.Int64 // flushes begun
	done    atomic.Int64 // the last flush that ended well (its number)
	// broken is set once the disk failed a flush: the kernel may have dropped the writes it
	// could not make and then let a later flush succeed (Linux marks those pages clean; no
	// system promises better), so no later flush can say what is on the disk. Every wait fails
	// from then on, as PostgreSQL stops on a failed fsync: a device told "stored" must be able
	// to trust it. It lasts as long as the process: a restart of the process alone would not
	// mend the disk's state (it would read back, from the kernel's cache, writes the disk never
	// took); a restart of the machine reads what the disk holds.
	broken atomic.Pointer[error]
}

// FlushFailed returns the error of a flush of the database's log that the disk failed, once one
// has: from then on no order is stored (the Service Bus receiver stops receiving; readyz says
// not ready). Nil otherwise.
func (db *DB) FlushFailed() error {
	if err := db.flush.broken.Load(); err != nil {
		return *err
	}
	return nil
}

// diskFlushError is a flush the disk (or the file system) failed, as opposed to a file that
// could not be opened for it.
type diskFlushError struct{ err error }

func (e *diskFlushError) Error() string { return e.err.Error() }
func (e *diskFlushError) Unwrap() error { return e.err }

// fail records err, a flush the disk failed (storeedge's own, or SQLite's of a commit), for the
// rest of the process, and returns the error every later wait returns: the first failure's.
func (f *walFlush) fail(err error) error {
	err = fmt.Errorf("the disk failed a flush of the database's log, so what was answered as stored since the last good one may not be on it; nothing more is while this process runs: repair the disk, then restart the machine (a restart of storeedge alone would read back writes the disk never took): %w", err)
	f.broken.CompareAndSwap(nil, &err)
	return *f.broken.Load()
}

// sqliteSyncFailed tells an error of SQLite's own flush of a file to the disk (SQLITE_IOERR_FSYNC,
// SQLITE_IOERR_DIR_FSYNC): as with storeedge's flush of the log, the kernel may have dropped the
// writes it held.
func sqliteSyncFailed(err error) bool {
	const ioerrFsync, ioerrDirFsync = 10 | 4<<8, 10 | 5<<8
	code := sqliteExtendedCode(err)
	return code == ioerrFsync || code == ioerrDirFsync
}

// syncCommitted returns once every transaction committed before the call is on the disk: a
// power cut after it undoes none of them.
func (db *DB) syncCommitted(ctx context.Context) error { return db.flush.wait(ctx, db.syncWAL) }

// wait returns once a flush (sync) that began after the call has ended well, running one when
// none is under way and sharing the next one with the callers that came meanwhile otherwise.
func (f *walFlush) wait(ctx context.Context, sync func() error) error {
	// A flush numbered above the one begun so far begins after this line, so after every
	// commit that came before it.
	want := f.started.Load() + 1
	if f.done.Load() >= want {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done.Load() >= want {
		return nil // flushed by the one this call waited for
	}
	if err := f.broken.Load(); err != nil {
		return *err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n := f.started.Add(1)
	if err := sync(); err != nil {
		if de := (*diskFlushError)(nil); errors.As(err, &de) {
			return f.fail(err)
		}
		return err
	}
	f.done.Store(n)
	return nil
}
