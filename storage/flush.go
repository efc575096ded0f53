package storage

import (
	"context"
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
	mu      sync.Mutex   // one flush at a time
	started atomic.Int64 // flushes begun
	done    atomic.Int64 // the last flush that ended well (its number)
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
	if err := ctx.Err(); err != nil {
		return err
	}
	n := f.started.Add(1)
	if err := sync(); err != nil {
		return err
	}
	f.done.Store(n)
	return nil
}
