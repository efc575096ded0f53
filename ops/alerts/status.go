package alerts

import (
	"context"
	"fmt"
	"time"
)

// Status is the alerts part of GET /api/v1/status (docs/openapi.yaml AlertsStatus).
type Status struct {
	// Mail is the mail server's state: MailOff, MailUnknown, MailOK or MailFailing.
	Mail string `json:"mail"`
	// Open lists the open alerts, by rule.
	Open []OpenAlert `json:"open"`
	// QueuedMails counts the notices waiting to be mailed; OldestQueuedAt is the oldest's time.
	QueuedMails    int64      `json:"queued_mails"`
	OldestQueuedAt *time.Time `json:"oldest_queued_at"`
	LastSentAt     *time.Time `json:"last_sent_at"`
	// LastError says why the mail server could not be used, while it cannot ("" otherwise).
	LastError   string     `json:"last_error"`
	LastErrorAt *time.Time `json:"last_error_at"`
	// NextAttemptAt is when the queued mails are tried again after a failure or at the hourly
	// limit; null when nothing waits for a time.
	NextAttemptAt *time.Time `json:"next_attempt_at"`
}

// OpenAlert is one open alert.
type OpenAlert struct {
	Rule     string    `json:"rule"`
	Title    string    `json:"title"`
	Summary  string    `json:"summary"`
	Since    time.Time `json:"since"`     // when the condition began
	OpenedAt time.Time `json:"opened_at"` // when the alert opened
}

// Status reports the open alerts and the mail queue.
func (a *Alerts) Status(ctx context.Context) (Status, error) {
	states, err := a.o.DB.AlertStates(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("alerts: %w", err)
	}
	q, err := a.o.DB.AlertQueueState(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("alerts: %w", err)
	}
	st := Status{Open: []OpenAlert{}, QueuedMails: q.Queued, OldestQueuedAt: timePtr(q.OldestAt), LastSentAt: timePtr(q.LastSentAt)}
	titles := make(map[string]string, len(a.rules))
	for _, r := range a.rules {
		titles[r.name] = r.title
	}
	for _, s := range states {
		if title, on := titles[s.Rule]; on && s.Open() {
			st.Open = append(st.Open, OpenAlert{Rule: s.Rule, Title: title, Summary: s.Summary, Since: s.PendingSince, OpenedAt: s.OpenedAt})
		}
	}
	a.mu.Lock()
	st.Mail, st.LastError, st.LastErrorAt = a.mail, a.lastErr, timePtr(a.lastErrAt)
	next := a.nextAt
	a.mu.Unlock()
	if st.Mail == MailUnknown && q.LastError != "" {
		// Not tried since the start, but the queue remembers why it failed before (as an earlier
		// version may have kept it: with a password the mail server repeated).
		st.LastError = q.LastError
		if a.o.Redact != nil {
			st.LastError = a.o.Redact(st.LastError)
		}
	}
	if q.Queued > 0 {
		st.NextAttemptAt = timePtr(next)
	}
	return st, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
