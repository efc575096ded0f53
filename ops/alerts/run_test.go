package alerts

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// syncBuffer is a log the test reads while Run writes it.
type syncBuffer struct {
	mu sync.Mutex // protects the field below
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runAlerts runs an Alerts of db (with mailer, nil for none, and f's facts), logging at DEBUG to
// logBuf; checked hears each gathering of the facts, and stop ends Run and returns what it did.
func runAlerts(t *testing.T, db *storage.DB, mailer Mailer, f *facts, logBuf *syncBuffer) (a *Alerts, checked <-chan struct{}, stop func() error) {
	t.Helper()
	c := make(chan struct{}, 100)
	a, err := New(Options{DB: db, Mailer: mailer, Identity: testIdentity, Config: config.Default().Alerts,
		Logger: slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Facts: func(ctx context.Context) (Facts, error) {
			c <- struct{}{}
			return f.get(ctx)
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return a, c, func() error {
		cancel()
		return <-done
	}
}

// Run checks at once, mails what opens, logs it, and stops when told, leaving no goroutine.
func TestRunMailsAndStops(t *testing.T) {
	// Checked after every cleanup (the database, the mail server): the first one runs last.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	srv, mailer := plainServer(t)
	db := openDB(t, "")
	var logBuf syncBuffer
	f := &facts{f: Facts{MediaQuotaFull: true}}
	_, checked, stop := runAlerts(t, db, mailer, f, &logBuf)
	<-checked
	// The mail goes in the same round as the check; the server is another process, so poll it,
	// and the log, which says so once the server has answered the whole conversation.
	deadline := time.Now().Add(20 * time.Second)
	for (len(srv.Messages()) == 0 || !strings.Contains(logBuf.String(), "alerts: mail sent")) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	wantSubjects(t, srv, "[storeedge] Lyon Part-Dieu: ALERT media cache full")
	log := logBuf.String()
	for _, want := range []string{"level=ERROR msg=\"alert opened: media cache full\"", "alerts: mail sent"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// A mail server that stays down is one WARN line, not one per attempt.
func TestRepeatedSendErrorLoggedOnce(t *testing.T) {
	srv, mailer := plainServer(t)
	srv.Stop()
	var logBuf syncBuffer
	r := newRig(t, nil, mailer, nil)
	r.a.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	r.facts.set(func(f *Facts) { f.MediaQuotaFull = true })
	r.check(t)
	for range 3 {
		next, err := r.a.Flush(context.Background())
		r.a.logSendError(err, next)
		r.clock.Advance(next.Sub(r.clock.Now()))
	}
	if n := strings.Count(logBuf.String(), "cannot send the alert mails"); n != 1 {
		t.Errorf("%d WARN lines for one outage:\n%s", n, logBuf.String())
	}
}

// Mails left queued by a configuration with a mail server are dropped once there is none: they
// would show as queued for ever (storeedge_alerts_queued_mails above 0, "the mail server
// refuses"), and go weeks late once mail is configured again.
func TestQueuedMailsDroppedWithoutAMailServer(t *testing.T) {
	srv, mailer := plainServer(t)
	db := openDB(t, "")
	r := newRig(t, db, mailer, nil)
	srv.Stop()
	r.facts.set(func(f *Facts) { f.Quarantined = map[string]int64{"stock": 1} })
	r.check(t)
	if _, err := r.a.Flush(context.Background()); err == nil {
		t.Fatal("flush with the mail server down: no error")
	}
	if st := r.status(t); st.QueuedMails != 1 {
		t.Fatalf("status %+v: want one mail queued", st)
	}

	var logBuf syncBuffer
	a, checked, stop := runAlerts(t, db, nil, r.facts, &logBuf) // smtp.host emptied
	<-checked
	stop()
	st, err := a.Status(context.Background())
	if err != nil || st.Mail != MailOff || st.QueuedMails != 0 || len(st.Open) != 1 {
		t.Errorf("status without a mail server %+v (%v): want mail off, nothing queued, the alert still open", st, err)
	}
	if !strings.Contains(logBuf.String(), `msg="alerts: dropped the alert mails left queued: smtp.host is empty, nothing is mailed" mails=1`) {
		t.Errorf("log:\n%s", logBuf.String())
	}
}
