package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
)

// EventTailSize is how many of the newest events the database keeps in memory, and
// EventTailBytes how many bytes of their documents at most (large orders keep fewer). Every
// device following the event stream reads each new event as it is committed: 200 followers of
// 500 orders a second would otherwise be 100,000 queries a second on a 2-core box. Followers
// that fall further behind (or reconnect with an older cursor) read from SQLite as before. The
// tail grows to twice these before it is cut back to them.
const (
	EventTailSize  = 4096
	EventTailBytes = 8 << 20
)

// eventTail holds the newest committed events, in id order. It is appended to under the
// writer's lock right after each commit, so it holds every event with an id above floor: a
// reader served from it misses none.
type eventTail struct {
	size, bytes int // events and document bytes kept after a trim: EventTailSize and EventTailBytes, less in tests

	mu     sync.RWMutex // protects the fields below
	floor  int64        // every committed event with a greater id is in events
	events []Event      // ascending ids, at most 2×size of them and 2×bytes of Data
	held   int          // bytes of Data in events
}

// load starts the tail at the end of the log: no event in memory, all those to come.
func (t *eventTail) load(ctx context.Context, q querier) {
	var last int64
	err := q.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM events`).Scan(&last)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events, t.held = nil, 0
	t.floor = last
	if err != nil {
		t.floor = math.MaxInt64 // unknown: every read goes to SQLite
	}
}

// add appends newly committed events; the caller holds the writer's lock.
func (t *eventTail) add(es ...Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, es...)
	for _, e := range es {
		t.held += len(e.Data)
	}
	if len(t.events) <= 2*t.size && t.held <= 2*t.bytes {
		return
	}
	drop := 0
	for len(t.events)-drop > t.size || t.held > t.bytes {
		t.held -= len(t.events[drop].Data)
		drop++
	}
	t.floor = max(t.floor, t.events[drop-1].ID)
	t.events = append([]Event(nil), t.events[drop:]...)
}

// after returns up to limit events with ids greater than after, and whether the tail could
// tell (false when after is older than what it holds). The events' Data is shared: read only.
func (t *eventTail) after(after int64, limit int) ([]Event, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if after < t.floor {
		return nil, false
	}
	i := sort.Search(len(t.events), func(i int) bool { return t.events[i].ID > after })
	n := min(limit, len(t.events)-i)
	return append(make([]Event, 0, n), t.events[i:i+n]...), true
}

// errClosed refuses a write after Close began.
var errClosed = errors.New("storage: the database is closed")

// writeEvents runs f in a write transaction like write; the events f made (the ids it filled
// in *made) go to the tail once committed, before the writer's lock is released, so the tail
// gets them in id order. When the commit fails, the tail starts again from what the database
// holds, since a failed commit may still have written. made nil: f writes no event.
func (db *DB) writeEvents(ctx context.Context, made *[]Event, f func(*sql.Tx) error) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	return db.writeEventsLocked(ctx, made, f)
}

// writeDurable is writeEvents with a commit that waits for the disk (synchronous FULL for this
// transaction, about a third of a millisecond here): for what storeedge acknowledges to a peer
// that then drops its own copy (a Service Bus message completed, a stock file moved to done/),
// so that a power cut right after cannot lose it. Other commits are synchronous NORMAL: a power
// cut may undo the last seconds of them, a crash of the process nothing (docs/architecture.md).
func (db *DB) writeDurable(ctx context.Context, made *[]Event, f func(*sql.Tx) error) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if _, err := db.w.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		return fmt.Errorf("storage: durable write: %w", err)
	}
	defer db.w.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = NORMAL`)
	err := db.writeEventsLocked(ctx, made, f)
	if sqliteSyncFailed(err) {
		// SQLite's flush of this commit failed: the disk is as untrustworthy as when
		// storeedge's own flush fails, and order taking stops the same way (FlushFailed).
		return db.flush.fail(&diskFlushError{err})
	}
	return err
}

// writeEventsLocked is writeEvents for a caller that holds wmu.
func (db *DB) writeEventsLocked(ctx context.Context, made *[]Event, f func(*sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err // a request cut at shutdown is said as such, not as the database closed
	}
	if db.closed {
		return errClosed
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	if db.ids != nil {
		if made != nil {
			for _, e := range *made {
				db.ids.need(&db.ids.marks.Events, e.ID, eventIDBlock)
			}
		}
		if err := db.ids.saveIfMoved(); err != nil {
			return err
		}
	}
	err = tx.Commit()
	switch {
	case made == nil:
	case err != nil:
		db.tail.load(context.WithoutCancel(ctx), db.w)
	default:
		db.tail.add(*made...)
	}
	return err
}
