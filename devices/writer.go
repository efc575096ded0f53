package devices

import (
	"context"
	"log/slog"
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
	ch        chan storage.CommandUpdate
}

const maxBatch = 2048

// lingerFor is how long the writer waits for more changes before it stores a batch. A command
// written to a device on the LAN is usually acknowledged within it, and the two changes then
// cost one row update.
const lingerFor = 2 * time.Millisecond

func newWriter(db *storage.DB, log *slog.Logger, committed func([]storage.CommandUpdate)) *writer {
	return &writer{db: db, log: log, committed: committed, ch: make(chan storage.CommandUpdate, maxBatch)}
}

// add queues a change; it waits while the queue is full, until ctx ends.
func (w *writer) add(ctx context.Context, u storage.CommandUpdate) error {
	select {
	case w.ch <- u:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run stores the changes until ctx ends. A change lost to a failed write or a stop only means
// the command is sent again later, and devices ignore a command id they have already done.
func (w *writer) run(ctx context.Context) {
	batch := make([]storage.CommandUpdate, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-w.ch:
			batch = append(batch[:0], u)
		}
		// Group commit: a moment for the rest of a burst (the other devices' acks, the ack of
		// the command just sent) to arrive, so that they share one transaction.
		linger := time.NewTimer(lingerFor)
	gather:
		for len(batch) < maxBatch {
			select {
			case u := <-w.ch:
				batch = append(batch, u)
			case <-linger.C:
				break gather
			case <-ctx.Done():
				linger.Stop()
				return
			}
		}
		linger.Stop()
	drain:
		for len(batch) < maxBatch {
			select {
			case u := <-w.ch:
				batch = append(batch, u)
			default:
				break drain
			}
		}
		batch = coalesce(batch)
		if err := w.db.UpdateCommands(ctx, batch); err != nil {
			if ctx.Err() == nil {
				w.log.Warn("devices: cannot store command states; the commands will be sent again", slog.Any(keyError, err), slog.Int(keyCount, len(batch)))
			}
			continue
		}
		if w.committed != nil {
			w.committed(batch)
		}
	}
}

// coalesce folds a command's "sent" into its acknowledgement or failure when both are in the
// batch, so that a command answered quickly costs one row update instead of two. Order is kept.
func coalesce(batch []storage.CommandUpdate) []storage.CommandUpdate {
	sentAt := map[int64]int{} // seq → index of its pending "sent" in out
	out := batch[:0]
	for _, u := range batch {
		if u.State == storage.CommandSent {
			sentAt[u.Seq] = len(out)
			out = append(out, u)
			continue
		}
		if i, ok := sentAt[u.Seq]; ok {
			u.SentAt = out[i].At
			out[i] = u
			delete(sentAt, u.Seq)
			continue
		}
		out = append(out, u)
	}
	return out
}
