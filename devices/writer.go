package devices

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/storeedge/storeedge/storage"
)

// writer stores command state changes from every link in batches: one transaction for what
// arrived while the previous one was being written, so that 500 devices acknowledging at once
// cost a few transactions rather than 500.
type writer struct {
	db        *storage.DB
	log       *slog.Logger
	committed func([]storage.CommandUpdate)
	ch        chan job

	// queued counts the jobs queued, finished those stored or failed: a link's check tells
	// from them that the state changes it queued are settled.
	queued, finished atomic.Int64
}

// job is changes to store; done, when not nil, receives the outcome once they are stored or not.
type job struct {
	ups  []storage.CommandUpdate
	done chan error
}

// maxBatch bounds the changes of one transaction.
const maxBatch = 2048

// lingerFor is the longest the writer waits for more changes before it stores a batch, and
// lingerIdle how long it waits for the next once the changes stop coming: a burst (a fan-out's
// commands to every device, their acknowledgements) shares one transaction, and the end of a
// burst is not held for the whole lingerFor.
const (
	lingerFor  = 2 * time.Millisecond
	lingerIdle = 100 * time.Microsecond
)

func newWriter(db *storage.DB, log *slog.Logger, committed func([]storage.CommandUpdate)) *writer {
	return &writer{db: db, log: log, committed: committed, ch: make(chan job, maxBatch)}
}

// add queues a change without waiting for it to be stored; it waits while the queue is full,
// until ctx ends. A change lost to a failed write leaves the command sent: the connection's
// check (see delivery.check) writes it again, and the device acknowledges it again.
func (w *writer) add(ctx context.Context, u storage.CommandUpdate) error {
	return w.queue(ctx, job{ups: []storage.CommandUpdate{u}})
}

// submit queues changes and returns the channel that receives the outcome once they are
// stored (in one transaction with the other links' changes of the moment) or not; ups then
// holds what the store found (storage.CommandUpdate.Final).
func (w *writer) submit(ctx context.Context, ups []storage.CommandUpdate) (chan error, error) {
	done := make(chan error, 1)
	return done, w.queue(ctx, job{ups: ups, done: done})
}

// settle waits until the changes queued before it are stored (or failed), or until ctx ends;
// stopWrites at most in all, queueing included (a full queue, a writer that stopped): a job of
// no changes goes behind them, and the writer takes jobs in order.
func (w *writer) settle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, stopWrites)
	defer cancel()
	done, err := w.submit(ctx, nil)
	if err != nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// queue hands a job to run, counting it first: every job ahead of it in the channel was
// counted before it, so once finished reaches a count read after queue returned, this job and
// all before it are done.
func (w *writer) queue(ctx context.Context, j job) error {
	w.queued.Add(1)
	select { // a link that is stopping still hands over what it has, while there is room
	case w.ch <- j:
		return nil
	default:
	}
	select {
	case w.ch <- j:
		return nil
	case <-ctx.Done():
		w.queued.Add(-1)
		return ctx.Err()
	}
}

// stopWrites bounds the last transaction of a stop.
const stopWrites = 5 * time.Second

// run stores the changes until ctx ends: each transaction takes what was queued while the
// previous one was written, and what comes within lingerFor of the first. When ctx ends it
// stores what is queued, then returns: the acknowledgements that arrived before a stop are not
// lost to it (Run ends the writer after the links).
func (w *writer) run(ctx context.Context) {
	var jobs []job
	var batch []storage.CommandUpdate
	stopping := false
	var last context.Context // once ctx ended: the bound of the transactions left
	for {
		jobs, batch = jobs[:0], batch[:0]
		if stopping {
			for len(batch) < maxBatch && len(w.ch) > 0 {
				j := <-w.ch
				jobs, batch = append(jobs, j), append(batch, j.ups...)
			}
			if len(jobs) == 0 {
				return
			}
		} else {
			select {
			case <-ctx.Done():
				stopping = true
				continue
			case j := <-w.ch:
				jobs, batch = append(jobs, j), append(batch, j.ups...)
			}
			// Group commit: a moment for the rest of a burst (the other devices' commands and
			// acknowledgements of the same fan-out) to arrive, so that they share one transaction.
			linger, idle := time.NewTimer(lingerFor), time.NewTimer(lingerIdle)
		gather:
			for len(batch) < maxBatch {
				select {
				case j := <-w.ch:
					jobs, batch = append(jobs, j), append(batch, j.ups...)
					idle.Reset(lingerIdle)
				case <-idle.C:
					break gather
				case <-linger.C:
					break gather
				case <-ctx.Done():
					stopping = true
					break gather
				}
			}
			linger.Stop()
			idle.Stop()
		}
		wctx := context.WithoutCancel(ctx) // a change taken is stored, even as the server stops
		if stopping {
			if last == nil {
				var cancel context.CancelFunc
				last, cancel = context.WithTimeout(wctx, stopWrites)
				defer cancel()
			}
			wctx = last
		}
		err := w.db.UpdateCommands(wctx, batch)
		if err != nil {
			w.log.Warn("devices: cannot store command states; the commands will be sent again", slog.Any(keyError, err), slog.Int(keyCount, len(batch)))
		}
		off := 0
		for _, j := range jobs {
			// What the store found (Final) goes back to the job's own changes before it hears.
			copy(j.ups, batch[off:off+len(j.ups)])
			off += len(j.ups)
			if j.done != nil {
				j.done <- err
			}
		}
		w.finished.Add(int64(len(jobs)))
		if err == nil && w.committed != nil && len(batch) > 0 {
			w.committed(batch)
		}
	}
}
