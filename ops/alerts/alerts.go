package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// Mailer delivers alert mails. SMTP is the real one.
type Mailer interface {
	// Send delivers m to every recipient. nil means the mail server accepted it; an error says,
	// in words for shop IT, why not (the status shows it), and m is sent again later.
	Send(ctx context.Context, m Message) error
	// Check connects and logs in without sending anything, so that a wrong address or password
	// shows before an alert needs the server; its error is worded as Send's.
	Check(ctx context.Context) error
}

var _ Mailer = (*SMTP)(nil)

// Options configure Alerts.
type Options struct {
	DB *storage.DB
	// Facts gathers what the rules look at; called once per check. An error skips the check:
	// nothing opens or resolves on facts that could not be read.
	Facts  func(ctx context.Context) (Facts, error)
	Config config.Alerts
	// Mailer sends the mails; nil when no mail server is configured: alerts still open and
	// resolve, and the status shows them, but nothing is queued.
	Mailer   Mailer
	Identity Identity
	Logger   *slog.Logger
	// Now is the clock of the rules, the queue and the hourly limit; nil: time.Now.
	Now func() time.Time
	// RetryMin and RetryMax bound the wait before sending again after a failure; zero:
	// DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// Redact cleans the error texts of the facts (the WAN's, the backup's, the back office's)
	// before an alert quotes them: a mail leaves the shop through a mail server, and an error
	// may echo what another system sent (the daemon's hides the configuration's secrets). The
	// mail server's own errors go through it too before the status or the queue keeps them:
	// some servers' refusal of a login repeats the password. nil: they are kept as they are.
	Redact func(string) string
}

// Defaults of Options.
const (
	DefaultRetryMin = 10 * time.Second
	DefaultRetryMax = 10 * time.Minute
)

const (
	maxDigest = 100                 // notices in one digest mail; more wait for the next
	keepSent  = 30 * 24 * time.Hour // sent notices are kept this long, then pruned
	pruneEach = 24 * time.Hour
)

// States of the mail server in Status.Mail.
const (
	MailOff     = "off"     // no mail server configured
	MailUnknown = "unknown" // not tried yet
	MailOK      = "ok"      // the last attempt worked
	MailFailing = "failing" // the last attempt failed: see Status.LastError
)

// Alerts checks the rules and sends their mails. Run does both until its context ends; Check
// and Flush are its two steps, also called directly by tests with an injected clock.
type Alerts struct {
	o     Options
	log   *slog.Logger
	now   func() time.Time
	rules []rule

	checkMu sync.Mutex // serialises Check; protects the field below
	dl      deadLetters
	rf      refusals

	flushMu sync.Mutex // serialises Flush

	mu        sync.Mutex // protects the fields below
	bo        *backoff.Backoff
	retryAt   time.Time // no attempt to send before this
	nextAt    time.Time // what the last Flush returned
	mail      string    // a Mail* state
	lastErr   string
	lastErrAt time.Time
	logged    string // the send error last logged at WARN, so a repeated one is not logged again
	checkErr  string // the same for the check
	lastPrune time.Time
}

// New checks the options; it starts nothing.
func New(o Options) (*Alerts, error) {
	if o.DB == nil || o.Facts == nil {
		return nil, errors.New("alerts: no database or no facts")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.Config.MaxMailsPerHour <= 0 {
		o.Config.MaxMailsPerHour = config.DefaultAlertMailsPerHour
	}
	if o.Config.CheckInterval <= 0 {
		o.Config.CheckInterval = config.DefaultAlertCheckInterval
	}
	a := &Alerts{o: o, log: o.Logger, now: o.Now, bo: backoff.New(o.RetryMin, o.RetryMax), mail: MailOff}
	if o.Mailer != nil {
		a.mail = MailUnknown
	}
	a.rules = ruleSet(o.Config, &a.dl, &a.rf)
	return a, nil
}

// Run checks the rules every alerts.check_interval and sends what they queue, until ctx ends.
// Unless a mail went already, it logs in to the mail server after the first check, so that a
// wrong password shows in the status at once. Without a mail server it first drops the mails
// an earlier configuration left queued: they would stay queued for ever, and go weeks late
// once a mail server is configured again.
func (a *Alerts) Run(ctx context.Context) error {
	if a.o.Mailer == nil {
		a.dropQueued(ctx)
	}
	tick := time.NewTicker(a.o.Config.CheckInterval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		err := a.Check(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.logCheckError(err)
		next, err := a.Flush(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.logSendError(err, next)
		a.checkMailer(ctx)
		a.prune(ctx)
		retry.Stop()
		var wake <-chan time.Time
		if !next.IsZero() {
			retry.Reset(max(next.Sub(a.now()), 0))
			wake = retry.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-wake:
		}
	}
}

// dropQueued forgets the mails left queued, saying how many.
func (a *Alerts) dropQueued(ctx context.Context) {
	n, err := a.o.DB.DropQueuedAlertMails(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		a.log.Warn("alerts: cannot drop the mails left queued without a mail server", slog.Any("error", err))
	case n > 0:
		a.log.Info("alerts: dropped the alert mails left queued: smtp.host is empty, nothing is mailed", slog.Int64("mails", n))
	}
}

// Check gathers the facts and moves each rule on: a rule whose condition has held long
// enough opens, one whose condition is over resolves, each with its mail queued in the same
// transaction.
func (a *Alerts) Check(ctx context.Context) error {
	a.checkMu.Lock()
	defer a.checkMu.Unlock()
	f, err := a.o.Facts(ctx)
	if err != nil {
		return fmt.Errorf("alerts: gather facts: %w", err)
	}
	if a.o.Redact != nil {
		f.redact(a.o.Redact)
	}
	list, err := a.o.DB.AlertStates(ctx)
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	states := make(map[string]*storage.AlertState, len(list))
	for i := range list {
		states[list[i].Rule] = &list[i]
	}
	now := a.now()
	for _, r := range a.rules {
		old := states[r.name]
		delete(states, r.name)
		c := r.check(&f, now, old != nil && old.Open())
		n, event := next(r, old, c, now)
		if !changed(r, old, n) {
			c.saw()
			continue
		}
		st := n
		if st == nil {
			st = old
		}
		var mail *storage.AlertMail
		if event != "" && a.o.Mailer != nil {
			mail = a.o.Identity.notice(r, *st, event, now)
		}
		if err := a.o.DB.SaveAlert(ctx, r.name, n, mail); err != nil {
			return fmt.Errorf("alerts: %w", err)
		}
		if event != "" {
			a.logEvent(r, *st, event, now)
		}
		c.saw()
	}
	// What is left belongs to rules switched off: forgotten, without a mail (whoever switched
	// the rule off knows), so that switched on again the rule starts afresh and mails its alert.
	for name, st := range states {
		if err := a.o.DB.SaveAlert(ctx, name, nil, nil); err != nil {
			return fmt.Errorf("alerts: %w", err)
		}
		if st.Open() {
			a.log.Info("alert forgotten: its rule is switched off", slog.String("rule", name), slog.String("summary", st.Summary))
		}
	}
	return nil
}

func (a *Alerts) logEvent(r rule, st storage.AlertState, event string, now time.Time) {
	if event == storage.AlertOpened {
		// An open alert is, by definition, something that needs a human.
		a.log.Error("alert opened: "+r.title, slog.String("rule", r.name), slog.String("summary", st.Summary))
		return
	}
	a.log.Info("alert resolved: "+r.title, slog.String("rule", r.name), slog.Duration("open_for", now.Sub(st.OpenedAt)))
}

// Flush sends the queued notices, oldest first, as far as the hourly limit lets: one mail each
// while the hour's allowance covers them all, and the rest together in one digest as the last
// mail the hour allows. It returns when to try again (zero when nothing waits): after a failure,
// the backoff's wait; at the hourly limit, when the oldest mail of the hour leaves the window.
// It does nothing before that time. Its error is a send failure (the notices stay queued) or
// the database's.
func (a *Alerts) Flush(ctx context.Context) (time.Time, error) {
	if a.o.Mailer == nil {
		return time.Time{}, nil
	}
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	next, err := a.flush(ctx)
	a.mu.Lock()
	a.nextAt = next
	a.mu.Unlock()
	return next, err
}

func (a *Alerts) flush(ctx context.Context) (time.Time, error) {
	now := a.now()
	a.mu.Lock()
	retryAt := a.retryAt
	a.mu.Unlock()
	if now.Before(retryAt) {
		return retryAt, nil
	}
	for {
		sent, first, err := a.o.DB.AlertMailsSince(ctx, now.Add(-time.Hour))
		if err != nil {
			return time.Time{}, fmt.Errorf("alerts: %w", err)
		}
		budget := a.o.Config.MaxMailsPerHour - sent
		queued, err := a.o.DB.QueuedAlertMails(ctx, max(budget, 0)+maxDigest)
		switch {
		case err != nil:
			return time.Time{}, fmt.Errorf("alerts: %w", err)
		case len(queued) == 0:
			return time.Time{}, nil
		case budget <= 0:
			return first.Add(time.Hour), nil
		}
		batch := queued[:1]
		if budget == 1 && len(queued) > 1 {
			batch = queued[:min(len(queued), maxDigest)]
		}
		if err := a.send(ctx, batch, now); err != nil {
			return a.retryTime(), err
		}
	}
}

// send sends one mail carrying batch and records the outcome.
func (a *Alerts) send(ctx context.Context, batch []storage.AlertMail, now time.Time) error {
	msg := a.o.Identity.single(batch[0], now)
	if len(batch) > 1 {
		msg = a.o.Identity.digest(batch, now)
	}
	ids := make([]int64, len(batch))
	for i, m := range batch {
		ids[i] = m.ID
	}
	if err := a.o.Mailer.Send(ctx, msg); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.failed(err, now)
		if dbErr := a.o.DB.AlertMailsFailed(ctx, ids, a.errorText(err)); dbErr != nil {
			return errors.Join(err, fmt.Errorf("alerts: %w", dbErr))
		}
		return err
	}
	a.succeeded()
	if err := a.o.DB.AlertMailsSent(ctx, ids, now); err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	a.log.Info("alerts: mail sent", slog.String("subject", msg.Subject), slog.Int("notices", len(batch)))
	return nil
}

func (a *Alerts) failed(err error, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.retryAt = now.Add(a.bo.Next(0))
	a.mail, a.lastErr, a.lastErrAt = MailFailing, a.errorText(err), now
}

// maxErrorText bounds an error kept for the status: the mail server's answer is outside input.
const maxErrorText = 1000

// clipError cuts s to maxErrorText bytes, on a character boundary.
func clipError(s string) string { return clip.String(s, maxErrorText) }

// errorText is a mail server's error as the status and the queue keep it: without the
// configuration's secrets (a refused login's answer may repeat the password), clipped.
func (a *Alerts) errorText(err error) string {
	s := err.Error()
	if a.o.Redact != nil {
		s = a.o.Redact(s)
	}
	return clipError(s)
}

func (a *Alerts) succeeded() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mail == MailFailing {
		a.log.Info("alerts: the mail server takes mail again")
	}
	a.bo.Reset()
	a.retryAt = time.Time{}
	a.mail, a.lastErr, a.lastErrAt, a.logged = MailOK, "", time.Time{}, ""
}

func (a *Alerts) retryTime() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.retryAt
}

// logCheckError logs a failed check at WARN, and at DEBUG while the same error repeats.
func (a *Alerts) logCheckError(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	a.mu.Lock()
	repeated := a.checkErr == msg
	a.checkErr = msg
	a.mu.Unlock()
	if err == nil {
		return
	}
	level := slog.LevelWarn
	if repeated {
		level = slog.LevelDebug
	}
	a.log.Log(context.Background(), level, "alerts: check failed; trying again at the next", slog.Any("error", err))
}

// logSendError logs a failure of Flush at WARN the first time it is seen, and at DEBUG while
// it repeats: a mail server down for a day is one line, not a thousand.
func (a *Alerts) logSendError(err error, retryAt time.Time) {
	if err == nil {
		return
	}
	a.mu.Lock()
	repeated := a.logged == err.Error()
	a.logged = err.Error()
	a.mu.Unlock()
	level := slog.LevelWarn
	if repeated {
		level = slog.LevelDebug
	}
	a.log.Log(context.Background(), level, "alerts: cannot send the alert mails; they stay queued and are tried again",
		slog.Any("error", err), slog.Time("retry_at", retryAt))
}

// checkMailer logs in to the mail server while nothing has been tried, so that its state is
// known before an alert needs it.
func (a *Alerts) checkMailer(ctx context.Context) {
	a.mu.Lock()
	tried := a.mail != MailUnknown
	a.mu.Unlock()
	if tried {
		return
	}
	err := a.o.Mailer.Check(ctx)
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mail != MailUnknown { // a send meanwhile knows better
		return
	}
	if err != nil {
		a.mail, a.lastErr, a.lastErrAt = MailFailing, a.errorText(err), a.now()
		a.logged = err.Error()
		a.log.Warn("alerts: the mail server cannot be used; alerts are queued until it can", slog.Any("error", err))
		return
	}
	a.mail = MailOK
	a.log.Info("alerts: the mail server takes the login")
}

// prune forgets notices sent long ago, once a day.
func (a *Alerts) prune(ctx context.Context) {
	now := a.now()
	a.mu.Lock()
	due := now.Sub(a.lastPrune) >= pruneEach
	if due {
		a.lastPrune = now
	}
	a.mu.Unlock()
	if !due {
		return
	}
	if _, err := a.o.DB.PruneAlertMails(ctx, now.Add(-keepSent)); err != nil && ctx.Err() == nil {
		a.log.Warn("alerts: cannot prune sent mails; trying again tomorrow", slog.Any("error", err))
	}
}
