package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// AlertState is a rule whose condition holds: pending, or open once OpenedAt is set.
type AlertState struct {
	Rule         string
	PendingSince time.Time
	OpenedAt     time.Time // zero while pending
	LastActive   time.Time
	Summary      string
	Detail       string
}

// Open reports whether the alert has opened.
func (s AlertState) Open() bool { return !s.OpenedAt.IsZero() }

// AlertMail is one notice of the alert mail queue: an alert that opened or resolved.
type AlertMail struct {
	ID        int64
	Rule      string
	Event     string // AlertOpened or AlertResolved
	At        time.Time
	Subject   string
	Body      string
	Attempts  int
	LastError string
}

// The events of AlertMail.
const (
	AlertOpened   = "opened"
	AlertResolved = "resolved"
)

const qAlertStates = `SELECT rule, pending_since, opened_at, last_active, summary, detail FROM alert_state ORDER BY rule`

// AlertStates returns the rules that are pending or open.
func (db *DB) AlertStates(ctx context.Context) ([]AlertState, error) {
	rows, err := db.stmt(qAlertStates).QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: alert states: %w", err)
	}
	defer rows.Close()
	var out []AlertState
	for rows.Next() {
		var s AlertState
		var pending, opened, active int64
		if err := rows.Scan(&s.Rule, &pending, &opened, &active, &s.Summary, &s.Detail); err != nil {
			return nil, fmt.Errorf("storage: alert states: %w", err)
		}
		s.PendingSince, s.OpenedAt, s.LastActive = utcMillis(pending), utcMillis(opened), utcMillis(active)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: alert states: %w", err)
	}
	return out, nil
}

// SaveAlert stores the state of a rule, or forgets it when st is nil, and queues mail if not
// nil, in one transaction: an alert never opens or resolves without its mail.
func (db *DB) SaveAlert(ctx context.Context, rule string, st *AlertState, mail *AlertMail) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		if st == nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM alert_state WHERE rule = ?`, rule); err != nil {
				return err
			}
		} else if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO alert_state(rule, pending_since, opened_at, last_active, summary, detail)
			VALUES (?, ?, ?, ?, ?, ?)`, rule, toMillis(st.PendingSince), toMillis(st.OpenedAt), toMillis(st.LastActive), st.Summary, st.Detail); err != nil {
			return err
		}
		if mail == nil {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO alert_mail(rule, event, at, subject, body) VALUES (?, ?, ?, ?, ?)`,
			mail.Rule, mail.Event, toMillis(mail.At), mail.Subject, mail.Body)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: save alert %s: %w", rule, err)
	}
	return nil
}

// QueuedAlertMails returns up to limit notices not sent yet, oldest first.
func (db *DB) QueuedAlertMails(ctx context.Context, limit int) ([]AlertMail, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, rule, event, at, subject, body, attempts, last_error FROM alert_mail
		WHERE sent_at = 0 ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: queued alert mails: %w", err)
	}
	defer rows.Close()
	var out []AlertMail
	for rows.Next() {
		var m AlertMail
		var at int64
		if err := rows.Scan(&m.ID, &m.Rule, &m.Event, &at, &m.Subject, &m.Body, &m.Attempts, &m.LastError); err != nil {
			return nil, fmt.Errorf("storage: queued alert mails: %w", err)
		}
		m.At = utcMillis(at)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: queued alert mails: %w", err)
	}
	return out, nil
}

// AlertMailsSent records that one mail carrying the notices ids was accepted at at.
func (db *DB) AlertMailsSent(ctx context.Context, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	q, args := inIDs(`UPDATE alert_mail SET sent_at = ?, mail = ? WHERE id IN `, ids, toMillis(at), ids[0])
	if err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}); err != nil {
		return fmt.Errorf("storage: alert mails sent: %w", err)
	}
	return nil
}

// AlertMailsFailed counts a failed attempt to send the notices ids, and why.
func (db *DB) AlertMailsFailed(ctx context.Context, ids []int64, reason string) error {
	if len(ids) == 0 {
		return nil
	}
	q, args := inIDs(`UPDATE alert_mail SET attempts = attempts + 1, last_error = ? WHERE id IN `, ids, reason)
	if err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}); err != nil {
		return fmt.Errorf("storage: alert mails failed: %w", err)
	}
	return nil
}

// inIDs completes q with "(?, ?, …)" for ids, after the arguments before.
func inIDs(q string, ids []int64, before ...any) (string, []any) {
	args := append(before, make([]any, 0, len(ids))...)
	for _, id := range ids {
		args = append(args, id)
	}
	return q + "(" + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ")", args
}

// AlertMailsSince counts the mails sent since t (a digest counts once), and gives the time the
// first of them was sent (zero when none).
func (db *DB) AlertMailsSince(ctx context.Context, t time.Time) (n int, first time.Time, err error) {
	var firstMS sql.NullInt64
	err = db.r.QueryRowContext(ctx, `SELECT count(DISTINCT mail), min(sent_at) FROM alert_mail WHERE sent_at != 0 AND sent_at > ?`,
		toMillis(t)).Scan(&n, &firstMS)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("storage: alert mails sent: %w", err)
	}
	if firstMS.Valid {
		first = utcMillis(firstMS.Int64)
	}
	return n, first, nil
}

// AlertQueue is what the status shows of the alert mail queue.
type AlertQueue struct {
	Queued      int64
	OldestAt    time.Time // the oldest queued notice; zero when none
	LastSentAt  time.Time // zero: none sent (or all pruned)
	LastError   string    // the last failure of the oldest queued notice, if any
	LastAttempt int       // failed attempts of the oldest queued notice
}

const qAlertQueue = `SELECT
	(SELECT count(*) FROM alert_mail WHERE sent_at = 0),
	(SELECT at FROM alert_mail WHERE sent_at = 0 ORDER BY id LIMIT 1),
	(SELECT last_error FROM alert_mail WHERE sent_at = 0 ORDER BY id LIMIT 1),
	(SELECT attempts FROM alert_mail WHERE sent_at = 0 ORDER BY id LIMIT 1),
	(SELECT max(sent_at) FROM alert_mail WHERE sent_at != 0)`

// AlertQueueState counts the queued notices.
func (db *DB) AlertQueueState(ctx context.Context) (AlertQueue, error) {
	var q AlertQueue
	var oldest, sent sql.NullInt64
	var lastErr sql.NullString
	var attempts sql.NullInt64
	err := db.stmt(qAlertQueue).QueryRowContext(ctx).Scan(&q.Queued, &oldest, &lastErr, &attempts, &sent)
	if err != nil {
		return q, fmt.Errorf("storage: alert queue: %w", err)
	}
	q.OldestAt, q.LastSentAt = utcMillis(oldest.Int64), utcMillis(sent.Int64)
	q.LastError, q.LastAttempt = lastErr.String, int(attempts.Int64)
	return q, nil
}

// DropQueuedAlertMails forgets the notices not sent yet, and says how many.
func (db *DB) DropQueuedAlertMails(ctx context.Context) (int64, error) {
	return db.writeCount(ctx, "drop queued alert mails", `DELETE FROM alert_mail WHERE sent_at = 0`)
}

// PruneAlertMails forgets the notices sent before t, and says how many.
func (db *DB) PruneAlertMails(ctx context.Context, before time.Time) (int64, error) {
	return db.writeCount(ctx, "prune alert mails", `DELETE FROM alert_mail WHERE sent_at != 0 AND sent_at < ?`, toMillis(before))
}
