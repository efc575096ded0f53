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
// the next one, so a flush costs the writer nothing (it runs outside the writer's lock) and
// 500 orders a second make far fewer than 500 flushes.
type walFlush struct {
	mu      sync.Mutex   // one flush at a time; protects broken
	started atomic.Int64 // flushes begun
	done    atomic.Int64 // the last flush that ended well (its number)
	// broken is set once the disk failed a flush: the kernel may have dropped the writes it
	// could not make and then let a later flush succeed (Linux marks those pages clean), so no
	// later flush can say what is on the disk. Every wait fails from then on, as PostgreSQL
	// stops on a failed fsync: a device told "stored" must be able to trust it.
	broken error
}

// diskFlushError is a flush the disk (or the file system) failed, as opposed to a file that
// could not be opened for it.
type diskFlushError struct{ err error }

func (e *diskFlushError) Error() string { return e.err.Error() }
func (e *diskFlushError) Unwrap() error { return e.err }

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
	if f.broken != nil {
		return f.broken
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n := f.started.Add(1)
	if err := sync(); err != nil {
		if de := (*diskFlushError)(nil); errors.As(err, &de) {
			f.broken = fmt.Errorf("the disk failed a flush of the database's log, so what was written since may not be on it (check the disk, then restart the server): %w", err)
			return f.broken
		}
		return err
	}
	f.done.Store(n)
	return nil
}
