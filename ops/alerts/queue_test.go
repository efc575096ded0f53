package alerts

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
)

// The mail server down: every alert that opens or resolves meanwhile waits in the database,
// through a restart of storeedge too, the status says why, and when the server is back each
// arrives, once, in order.
func TestMailServerDownAndBackLosesNothing(t *testing.T) {
	srv, mailer := plainServer(t)
	path := t.TempDir() + "/storeedge.db"
	db := openDB(t, path)
	r := newRig(t, db, mailer, func(c *config.Alerts) { c.DiskLow.FreeMB = 1024 })
	srv.Stop()

	r.facts.set(func(f *Facts) {
		f.Quarantined = map[string]int64{"stock": 1}
		f.Disk = &Disk{Path: "/var/lib/storeedge", Free: 100 << 20}
	})
	r.check(t)
	if _, err := r.a.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot connect to the mail server") {
		t.Fatalf("flush with the server down: %v", err)
	}
	st := r.status(t)
	if st.Mail != MailFailing || st.QueuedMails != 2 || !strings.Contains(st.LastError, "cannot connect") || st.NextAttemptAt == nil ||
		!st.NextAttemptAt.After(t0) || st.OldestQueuedAt == nil || !st.OldestQueuedAt.Equal(t0) {
		t.Errorf("status with the server down: %+v", st)
	}
	// Before the backoff's wait is over nothing is tried: no error, nothing sent.
	if next, err := r.a.Flush(context.Background()); err != nil || !next.Equal(*st.NextAttemptAt) {
		t.Errorf("flush during the wait: %v, next %v", err, next)
	}

	r.clock.Advance(5 * time.Minute)
	r.facts.set(func(f *Facts) { f.Quarantined = nil }) // resolved while the server is down
	r.check(t)
	if _, err := r.a.Flush(context.Background()); err == nil {
		t.Fatal("flush succeeded with the server down")
	}

	// storeedge restarts (same database) while the server is still down.
	db.Close()
	db = openDB(t, path)
	again := newRig(t, db, mailer, func(c *config.Alerts) { c.DiskLow.FreeMB = 1024 })
	again.clock.Advance(6 * time.Minute)
	again.facts.set(func(f *Facts) { f.Disk = &Disk{Path: "/var/lib/storeedge", Free: 100 << 20} })
	again.check(t) // nothing new: the disk alert is open already
	if st := again.status(t); st.QueuedMails != 3 || len(st.Open) != 1 || st.Open[0].Rule != RuleDiskLow {
		t.Errorf("status after the restart: %+v", st)
	}
	// Not tried since the restart: the waiting mails' last failure is shown, with no time
	// (openapi.yaml's AlertsStatus).
	if st := again.status(t); st.Mail != MailUnknown || !strings.Contains(st.LastError, "cannot connect") || st.LastErrorAt != nil {
		t.Errorf("status after the restart, before a try: mail %s, last error %q at %v", st.Mail, st.LastError, st.LastErrorAt)
	}

	srv.Start()
	again.flush(t)
	wantSubjects(t, srv,
		"[storeedge] Lyon Part-Dieu: ALERT catalog documents quarantined",
		"[storeedge] Lyon Part-Dieu: ALERT disk almost full",
		"[storeedge] Lyon Part-Dieu: RESOLVED catalog documents quarantined")
	if st := again.status(t); st.Mail != MailOK || st.QueuedMails != 0 || st.LastError != "" || st.NextAttemptAt != nil {
		t.Errorf("status once delivered: %+v", st)
	}
	again.clock.Advance(time.Minute)
	again.check(t)
	again.flush(t)
	if n := len(srv.Messages()); n != 3 {
		t.Errorf("%d mails after another check, want still 3", n)
	}
}

// The failed attempts back off: each wait is longer, up to the maximum, and a success starts
// again from the minimum.
func TestRetryBacksOff(t *testing.T) {
	srv, mailer := plainServer(t)
	r := newRig(t, nil, mailer, nil)
	srv.Stop()
	r.facts.set(func(f *Facts) { f.MediaQuotaFull = true })
	r.check(t)
	var waits []time.Duration
	for range 8 {
		next, err := r.a.Flush(context.Background())
		if err == nil {
			t.Fatal("sent with the server down")
		}
		waits = append(waits, next.Sub(r.clock.Now()))
		r.clock.Advance(next.Sub(r.clock.Now()))
	}
	for i, w := range waits {
		if w < DefaultRetryMin/2 || w > DefaultRetryMax {
			t.Errorf("wait %d = %v, outside [%v, %v]", i, w, DefaultRetryMin/2, DefaultRetryMax)
		}
	}
	if waits[len(waits)-1] < DefaultRetryMax/2 || waits[0] > DefaultRetryMin {
		t.Errorf("waits do not grow from %v to %v: %v", DefaultRetryMin, DefaultRetryMax, waits)
	}
	srv.Start()
	r.flush(t)
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("%d mails", n)
	}
	r.facts.set(func(f *Facts) { f.MediaQuotaFull = false })
	r.clock.Advance(MediaQuotaHold)
	r.check(t)
	if st := r.status(t); st.QueuedMails != 1 {
		t.Fatalf("the resolution is not queued: %+v", st)
	}
	srv.Stop()
	next, _ := r.a.Flush(context.Background())
	if w := next.Sub(r.clock.Now()); w > DefaultRetryMin {
		t.Errorf("first wait after a success = %v, want at most %v", w, DefaultRetryMin)
	}
}

// Beyond alerts.max_mails_per_hour nothing is dropped: the last mail the hour allows carries
// what is left, and later notices wait for the hour to pass.
func TestRateLimitSendsADigest(t *testing.T) {
	srv, mailer := plainServer(t)
	r := newRig(t, nil, mailer, func(c *config.Alerts) { c.MaxMailsPerHour = 3; c.DiskLow.FreeMB = 1024 })

	// Five alerts open at once.
	r.facts.set(func(f *Facts) {
		f.Quarantined = map[string]int64{"products": 1}
		f.Disk = &Disk{Path: "/data", Free: 1 << 20}
		f.MediaQuotaFull = true
		f.ServiceBus = &ServiceBus{Queue: "orders", DeadLettered: 1}
		f.OldestUpload, f.UploadsWaiting = t0.Add(-time.Hour), 4
	})
	r.check(t)
	r.flush(t)
	ms := wantSubjects(t, srv,
		"[storeedge] Lyon Part-Dieu: ALERT orders waiting to upload",
		"[storeedge] Lyon Part-Dieu: ALERT order dead-lettered",
		"[storeedge] Lyon Part-Dieu: 3 alert notices")
	for _, want := range []string{"ALERT catalog documents quarantined", "ALERT disk almost full", "ALERT media cache full", "max_mails_per_hour"} {
		if !strings.Contains(ms[2].Body, want) {
			t.Errorf("the digest lacks %q:\n%s", want, ms[2].Body)
		}
	}

	// Within the hour, a resolution waits.
	r.clock.Advance(10 * time.Minute)
	r.facts.set(func(f *Facts) { f.MediaQuotaFull = false })
	r.check(t)
	next, err := r.a.Flush(context.Background())
	if err != nil || !next.Equal(t0.Add(time.Hour)) {
		t.Errorf("flush at the limit: next %v, %v; want %v", next, err, t0.Add(time.Hour))
	}
	if st := r.status(t); st.QueuedMails != 1 || st.NextAttemptAt == nil || !st.NextAttemptAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("status at the limit: %+v", st)
	}
	r.clock.Advance(50*time.Minute + time.Second)
	r.flush(t)
	wantSubjects(t, srv,
		"[storeedge] Lyon Part-Dieu: ALERT orders waiting to upload",
		"[storeedge] Lyon Part-Dieu: ALERT order dead-lettered",
		"[storeedge] Lyon Part-Dieu: 3 alert notices",
		"[storeedge] Lyon Part-Dieu: RESOLVED media cache full")
}
