package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// How a support request's id stands against those taken before (RememberSupportRequest).
const (
	SupportRequestNew         = "new"         // first seen
	SupportRequestRedelivered = "redelivered" // seen in this very message before: it came again
	SupportRequestReplayed    = "replayed"    // seen before in another message
	// SupportRequestBeforeRestore: first seen, but issued before the database was restored from
	// a backup: the machine of the replaced database may have taken it after the backup.
	SupportRequestBeforeRestore = "before_restore"
)

// metaRestoredAt is when the database was last restored from a backup (Unix milliseconds).
const metaRestoredAt = "restored_at"

// RememberSupportRequest notes the support request id, issued at issued and brought by the
// message of Service Bus sequence number seq, until until, and says whether it is new, a
// redelivery of the message that brought it, a replay (the same id in another message), or
// new but issued before the database was restored from a backup (the ids taken after the backup
// went with the database it replaced). Requests whose until has passed are forgotten first.
func (db *DB) RememberSupportRequest(ctx context.Context, id, kind string, seq int64, issued, now, until time.Time) (string, error) {
	state := SupportRequestNew
	// Durable: the id is what refuses the same request in another message, across restarts
	// and power cuts alike (remote-support.md).
	err := db.writeDurable(ctx, nil, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM support_requests WHERE until < ?`, now.UnixMilli()); err != nil {
			return err
		}
		var was int64
		err := tx.QueryRowContext(ctx, `SELECT seq FROM support_requests WHERE id = ?`, id).Scan(&was)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			before, err := issuedBeforeRestore(ctx, tx, issued)
			if err != nil {
				return err
			}
			if before {
				state = SupportRequestBeforeRestore
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO support_requests(id, seq, kind, received_at, until) VALUES (?, ?, ?, ?, ?)`,
				id, seq, kind, now.UnixMilli(), until.UnixMilli())
			return err
		case err != nil:
			return err
		case was == seq && seq >= 0:
			state = SupportRequestRedelivered
			// A message refused as issued before the restore, delivered again (its dead-lettering
			// failed, or a stop came first), is refused again, not run.
			if before, err := issuedBeforeRestore(ctx, tx, issued); err != nil || before {
				state = SupportRequestBeforeRestore
				return err
			}
		default:
			state = SupportRequestReplayed
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("storage: remember support request: %w", err)
	}
	return state, nil
}

// issuedBeforeRestore reports whether issued comes before the database's last restore.
func issuedBeforeRestore(ctx context.Context, tx *sql.Tx, issued time.Time) (bool, error) {
	var restored int64
	err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT value FROM meta WHERE key = ?), 0)`, metaRestoredAt).Scan(&restored)
	return err == nil && issued.UnixMilli() < restored, err
}

// RetryRejectedOutbox puts every outbox entry the cloud refused back in the upload queue, and
// returns how many.
func (db *DB) RetryRejectedOutbox(ctx context.Context) (int64, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = requeue(ctx, tx, `1`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("storage: retry rejected outbox: %w", err)
	}
	if n > 0 {
		db.outboxSig.notify()
	}
	return n, nil
}
