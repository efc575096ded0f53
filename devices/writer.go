package devices

import (
	"context"
	"log/slog"

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
	drain:
		for len(batch) < maxBatch {
			select {
			case u := <-w.ch:
				batch = append(batch, u)
			default:
				break drain
			}
		}
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
