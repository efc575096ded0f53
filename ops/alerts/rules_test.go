package alerts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// openRules lists the rules open now, as the status shows them.
func (r *rig) openRules(t *testing.T) string {
	t.Helper()
	var names []string
	for _, o := range r.status(t).Open {
		names = append(names, o.Rule)
	}
	return strings.Join(names, ",")
}

// queued lists the subjects waiting in the mail queue.
func (r *rig) queued(t *testing.T) []string {
	t.Helper()
	ms, err := r.db.QueuedAlertMails(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, strings.TrimPrefix(m.Subject, "[storeedge] Lyon Part-Dieu: "))
	}
	return out
}

func wantQueued(t *testing.T, r *rig, want ...string) {
	t.Helper()
	if got := r.queued(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("queued %q, want %q", got, want)
	}
}

// A stand-in mailer for the rules' tests, which look at the queue, not at delivery (the
// delivery tests use a real SMTP server).
type noMail struct{}

func (noMail) Send(ctx context.Context, m Message) error {
	return errors.New("not sending in this test")
}
func (noMail) Check(ctx context.Context) error { return nil }

// An order waiting to upload counts from when it was queued, not from when the check first
// saw it: an order already 14 minutes old at start opens the alert a minute later.
func TestUploadWaitingCountsFromTheOrder(t *testing.T) {
	r := newRig(t, nil, noMail{}, nil)
	r.facts.set(func(f *Facts) { f.OldestUpload, f.UploadsWaiting = t0.Add(-14*time.Minute), 3 })
	r.check(t)
	wantQueued(t, r)
	r.clock.Advance(time.Minute)
	r.check(t)
	wantQueued(t, r, "ALERT orders waiting to upload")
	if st := r.status(t); len(st.Open) != 1 || !st.Open[0].Since.Equal(t0.Add(-14*time.Minute)) || !strings.Contains(st.Open[0].Summary, "3 order(s)") {
		t.Errorf("status: %+v", st.Open)
	}
	// The backlog drains; newer orders wait, but not for long: resolved.
	r.clock.Advance(time.Minute)
	r.facts.set(func(f *Facts) { f.OldestUpload = r.clock.Now().Add(-time.Minute) })
	r.check(t)
	wantQueued(t, r, "ALERT orders waiting to upload", "RESOLVED orders waiting to upload")
}

// The WAN's threshold counts across a restart: the pending state is in the database.
func TestPendingSurvivesRestart(t *testing.T) {
	db := openDB(t, "")
	r := newRig(t, db, noMail{}, nil)
	r.facts.set(wanDownFacts)
	r.check(t)

	again := newRig(t, db, noMail{}, nil)
	again.facts.set(wanDownFacts)
	again.clock.Advance(6 * time.Minute)
	again.check(t)
	wantQueued(t, again)
	again.clock.Advance(4 * time.Minute)
	again.check(t)
	wantQueued(t, again, "ALERT WAN down")

	// A WAN that comes back before 10 minutes raises nothing, and starts counting afresh.
	r2 := newRig(t, nil, noMail{}, nil)
	r2.facts.set(wanDownFacts)
	r2.check(t)
	r2.clock.Advance(9 * time.Minute)
	r2.facts.set(wanUpFacts)
	r2.check(t)
	r2.facts.set(wanDownFacts)
	r2.clock.Advance(2 * time.Minute)
	r2.check(t)
	wantQueued(t, r2)
	if r2.openRules(t) != "" {
		t.Errorf("open: %s", r2.openRules(t))
	}
}

// A restart during an outage: until the first sync attempt since the start has finished, nothing
// is known of the link, so an open wan_down alert stays open (no RESOLVED mail, no second ALERT)
// and none opens; it resolves at the first attempt that reaches the cloud.
func TestWANDownHeldAcrossARestart(t *testing.T) {
	db := openDB(t, "")
	r := newRig(t, db, noMail{}, nil)
	r.facts.set(wanDownFacts)
	r.check(t)
	r.clock.Advance(10 * time.Minute)
	r.check(t)
	wantQueued(t, r, "ALERT WAN down")

	again := newRig(t, db, noMail{}, nil)
	again.clock.Advance(11 * time.Minute)
	unknown := func(f *Facts) { f.WAN = &WAN{Unknown: true, State: "never", Route: "direct"} }
	again.facts.set(unknown)
	again.check(t)
	wantQueued(t, again, "ALERT WAN down")
	if again.openRules(t) != RuleWANDown {
		t.Fatalf("open after the restart: %q, want %s", again.openRules(t), RuleWANDown)
	}
	again.facts.set(wanDownFacts)
	again.check(t)
	wantQueued(t, again, "ALERT WAN down")
	again.facts.set(wanUpFacts)
	again.check(t)
	wantQueued(t, again, "ALERT WAN down", "RESOLVED WAN down")

	// With nothing open, a start opens nothing and starts no count.
	fresh := newRig(t, nil, noMail{}, nil)
	fresh.facts.set(unknown)
	fresh.check(t)
	fresh.clock.Advance(time.Hour)
	fresh.check(t)
	wantQueued(t, fresh)
}

// A dead-lettered order is an event: the alert opens at once, stays open an hour after the
// last one, and a second dead-letter within that hour sends no second mail.
func TestDeadLetteredHeldForAnHour(t *testing.T) {
	r := newRig(t, nil, noMail{}, nil)
	sb := func(n int64) func(f *Facts) {
		return func(f *Facts) { f.ServiceBus = &ServiceBus{Queue: "orders", DeadLettered: n} }
	}
	r.facts.set(sb(0))
	r.check(t)
	wantQueued(t, r)
	r.facts.set(sb(1))
	r.check(t)
	wantQueued(t, r, "ALERT order dead-lettered")
	r.clock.Advance(40 * time.Minute)
	r.facts.set(sb(2))
	r.check(t)
	r.clock.Advance(59 * time.Minute)
	r.check(t)
	wantQueued(t, r, "ALERT order dead-lettered")
	if r.openRules(t) != RuleDeadLettered {
		t.Fatalf("open: %q", r.openRules(t))
	}
	r.clock.Advance(time.Minute)
	r.check(t)
	wantQueued(t, r, "ALERT order dead-lettered", "RESOLVED order dead-lettered")

	// Across a restart the receiver counts from 0 again; a dead-letter is still seen.
	again := newRig(t, r.db, noMail{}, nil)
	again.facts.set(sb(1))
	again.check(t)
	wantQueued(t, again, "ALERT order dead-lettered", "RESOLVED order dead-lettered", "ALERT order dead-lettered")
}

// A disk hovering at the threshold does not flap: the alert resolves only with a tenth more
// than the threshold free. A failed measure neither opens nor resolves it.
func TestDiskLowResolvesWithAMargin(t *testing.T) {
	r := newRig(t, nil, noMail{}, func(c *config.Alerts) { c.DiskLow.FreeMB = 1000 })
	free := func(mb uint64) func(f *Facts) {
		return func(f *Facts) { f.Disk = &Disk{Path: "/var/lib/storeedge", Free: mb << 20} }
	}
	for _, step := range []struct {
		freeMB uint64
		open   bool
	}{{1500, false}, {999, true}, {0, true}, {1001, true}, {1099, true}, {1100, false}, {0, false}, {1050, false}, {990, true}} {
		r.facts.set(free(step.freeMB))
		if step.freeMB == 0 { // the free space could not be measured
			r.facts.set(func(f *Facts) { f.Disk = nil })
		}
		r.clock.Advance(time.Minute)
		r.check(t)
		if got := r.openRules(t) == RuleDiskLow; got != step.open {
			t.Fatalf("%d MiB free: open %v, want %v", step.freeMB, got, step.open)
		}
	}
	wantQueued(t, r, "ALERT disk almost full", "RESOLVED disk almost full", "ALERT disk almost full")
	if st := r.status(t); !strings.Contains(st.Open[0].Summary, "990.0 MiB free on the disk of /var/lib/storeedge") {
		t.Errorf("summary: %s", st.Open[0].Summary)
	}
}

// Devices offline is opt-in; once on, it names the silent devices and ignores connected ones.
func TestDevicesOffline(t *testing.T) {
	devs := func(f *Facts) {
		f.Devices = []Device{
			{ID: "d1", Name: "Kiosk 1", LastSeen: t0.Add(-40 * time.Minute)},
			{ID: "d2", Name: "Tablet 2", LastSeen: t0.Add(-time.Minute)},
			{ID: "d3", Name: "POS 3", LastSeen: t0.Add(-2 * time.Hour), Connected: true},
		}
	}
	off := newRig(t, nil, noMail{}, nil)
	off.facts.set(devs)
	off.check(t)
	wantQueued(t, off)

	r := newRig(t, nil, noMail{}, func(c *config.Alerts) { c.DevicesOffline.Enabled = true })
	r.facts.set(devs)
	r.check(t)
	wantQueued(t, r, "ALERT devices offline")
	ms, _ := r.db.QueuedAlertMails(context.Background(), 10)
	if !strings.Contains(ms[0].Body, "1 device(s) silent for more than 30m: Kiosk 1") || strings.Contains(ms[0].Body, "POS 3") ||
		strings.Contains(ms[0].Body, "Tablet 2") {
		t.Errorf("body:\n%s", ms[0].Body)
	}
	r.facts.set(func(f *Facts) { f.Devices[0].Connected = true })
	r.clock.Advance(time.Minute)
	r.check(t)
	wantQueued(t, r, "ALERT devices offline", "RESOLVED devices offline")
}

// Facts that cannot be read change nothing: no alert resolves because the database hiccuped.
func TestFactsErrorChangesNothing(t *testing.T) {
	r := newRig(t, nil, noMail{}, nil)
	r.facts.set(func(f *Facts) { f.MediaQuotaFull = true })
	r.check(t)
	r.facts.mu.Lock()
	r.facts.f, r.facts.err = Facts{}, errors.New("database is locked")
	r.facts.mu.Unlock()
	if err := r.a.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Fatalf("check: %v", err)
	}
	if r.openRules(t) != RuleMediaQuotaFull {
		t.Errorf("open: %q", r.openRules(t))
	}
	wantQueued(t, r, "ALERT media cache full")
}

// Without a mail server the alerts still open and resolve, and the status shows them; nothing
// is queued (it would never go).
func TestWithoutMailServer(t *testing.T) {
	r := newRig(t, nil, nil, nil)
	r.facts.set(func(f *Facts) { f.MediaQuotaFull = true })
	r.check(t)
	st := r.status(t)
	if st.Mail != MailOff || len(st.Open) != 1 || st.QueuedMails != 0 {
		t.Errorf("status: %+v", st)
	}
	if next, err := r.a.Flush(context.Background()); err != nil || !next.IsZero() {
		t.Errorf("flush: %v %v", next, err)
	}
	r.facts.set(func(f *Facts) { f.MediaQuotaFull = false })
	r.clock.Advance(MediaQuotaHold)
	r.check(t)
	if st := r.status(t); len(st.Open) != 0 || st.QueuedMails != 0 {
		t.Errorf("status: %+v", st)
	}
}

// Events the cloud refused for good open upload_refused until an admin's retry leaves none.
func TestUploadRefused(t *testing.T) {
	r := newRig(t, nil, noMail{}, nil)
	r.facts.set(func(f *Facts) { f.UploadsRefused = 2 })
	r.check(t)
	wantQueued(t, r, "ALERT orders refused by the cloud")
	if st := r.status(t); len(st.Open) != 1 || !strings.Contains(st.Open[0].Summary, "2 order event(s) refused") {
		t.Errorf("status: %+v", st.Open)
	}
	r.clock.Advance(time.Minute)
	r.facts.set(func(f *Facts) { f.UploadsRefused = 0 })
	r.check(t)
	wantQueued(t, r, "ALERT orders refused by the cloud", "RESOLVED orders refused by the cloud")
}

// The media quota alert does not open and resolve with each check while the cache makes room
// and fills it again: it resolves once no item has waited for room for MediaQuotaHold.
func TestMediaQuotaDoesNotFlap(t *testing.T) {
	r := newRig(t, nil, noMail{}, nil)
	for i := range 6 {
		r.facts.set(func(f *Facts) { f.MediaQuotaFull = i%2 == 0 })
		r.check(t)
		r.clock.Advance(30 * time.Second)
	}
	wantQueued(t, r, "ALERT media cache full")
	r.clock.Advance(MediaQuotaHold)
	r.check(t)
	wantQueued(t, r, "ALERT media cache full", "RESOLVED media cache full")
}

// A rule switched off is not checked and its open alert is not shown; its alert is forgotten
// without a mail, so that switched on again during a new incident it mails a new alert, not
// nothing.
func TestRuleSwitchedOff(t *testing.T) {
	db := openDB(t, "")
	r := newRig(t, db, noMail{}, nil)
	r.facts.set(func(f *Facts) { f.Quarantined = map[string]int64{"prices": 1} })
	r.check(t)
	off := newRig(t, db, noMail{}, func(c *config.Alerts) { c.Quarantined.Enabled = false })
	off.check(t) // facts say nothing is quarantined, but the rule is off: no resolution
	if off.openRules(t) != "" {
		t.Errorf("open: %q", off.openRules(t))
	}
	wantQueued(t, off, "ALERT catalog documents quarantined")
	on := newRig(t, db, noMail{}, nil)
	on.clock.Advance(time.Hour)
	on.facts.set(func(f *Facts) { f.Quarantined = map[string]int64{"products": 3} })
	on.check(t)
	wantQueued(t, on, "ALERT catalog documents quarantined", "ALERT catalog documents quarantined")
	if st := on.status(t); len(st.Open) != 1 || !st.Open[0].OpenedAt.Equal(on.clock.Now()) {
		t.Errorf("switched on again: %+v, want the alert opened now", st.Open)
	}
}

// The state machine of one rule, check by check.
func TestNext(t *testing.T) {
	r := rule{name: "x", after: 10 * time.Minute}
	on := condition{active: true, summary: "s"}
	st, ev := next(r, nil, on, t0)
	if st == nil || st.Open() || ev != "" || !st.PendingSince.Equal(t0) {
		t.Fatalf("first seen: %+v %q", st, ev)
	}
	st, ev = next(r, st, on, t0.Add(10*time.Minute))
	if !st.Open() || ev != storage.AlertOpened || !st.OpenedAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("after 10m: %+v %q", st, ev)
	}
	if st2, ev := next(r, st, on, t0.Add(11*time.Minute)); ev != "" || changed(r, st, st2) {
		t.Errorf("still on: %+v %q", st2, ev)
	}
	if st2, ev := next(r, st, condition{}, t0.Add(12*time.Minute)); st2 != nil || ev != storage.AlertResolved {
		t.Errorf("over: %+v %q", st2, ev)
	}
}

func TestDurText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 40 * time.Second: "40s", 5 * time.Minute: "5m", 125*time.Minute + 10*time.Second: "2h5m",
		3 * time.Hour: "3h", 90 * time.Second: "2m",
	} {
		if got := durText(d); got != want {
			t.Errorf("durText(%v) = %q, want %q", d, got, want)
		}
	}
}

// A failed scheduled backup opens backup_failed at once, counted from the first failure, and
// the next good backup resolves it.
func TestBackupFailedUntilTheNextGoodOne(t *testing.T) {
	r := newRig(t, nil, noMail{}, nil)
	good := r.clock.Now().Add(-24 * time.Hour)
	state := func(failures int, since time.Time) func(f *Facts) {
		return func(f *Facts) {
			f.Backup = &Backup{Dir: "/mnt/nas/storeedge", Failures: failures, FailingSince: since, LastError: "backup: mkdir /mnt/nas: permission denied",
				LastSuccess: good, LastFile: "storeedge-box-1-20260301T030000Z.backup"}
		}
	}
	r.facts.set(state(0, time.Time{}))
	r.check(t)
	wantQueued(t, r)
	failedAt := r.clock.Now()
	r.facts.set(state(1, failedAt))
	r.check(t)
	wantQueued(t, r, "ALERT backup failed")
	st, err := r.a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Open) != 1 || !st.Open[0].Since.Equal(failedAt) || !strings.Contains(st.Open[0].Summary, "permission denied") {
		t.Fatalf("open alerts %+v", st.Open)
	}
	r.clock.Advance(24 * time.Hour)
	r.facts.set(state(2, failedAt))
	r.check(t)
	wantQueued(t, r, "ALERT backup failed")

	// A restart: until a scheduled backup has run, the alert stays open.
	again := newRig(t, r.db, noMail{}, nil)
	again.clock.Advance(r.clock.Now().Sub(again.clock.Now()))
	again.facts.set(func(f *Facts) { f.Backup = &Backup{Dir: "/mnt/nas/storeedge", Unknown: true} })
	again.check(t)
	if again.openRules(t) != RuleBackupFailed {
		t.Fatalf("after a restart: open %q", again.openRules(t))
	}
	good = again.clock.Now()
	again.facts.set(state(0, time.Time{}))
	again.check(t)
	wantQueued(t, again, "ALERT backup failed", "RESOLVED backup failed")

	// Nothing known after a restart opens nothing.
	fresh := newRig(t, nil, noMail{}, nil)
	fresh.facts.set(func(f *Facts) { f.Backup = &Backup{Dir: "/mnt/nas/storeedge", Unknown: true} })
	fresh.check(t)
	wantQueued(t, fresh)
}

// A scheduled backup writing for an hour without end (a share that hangs) opens backup_failed,
// before any backup has ended since the start too; its end resolves it.
func TestBackupHangingOpensBackupFailed(t *testing.T) {
	r := newRig(t, nil, noMail{}, nil)
	started := r.clock.Now()
	writing := func(f *Facts) { f.Backup = &Backup{Dir: "/mnt/nas/storeedge", Unknown: true, RunningSince: started} }
	r.facts.set(writing)
	r.clock.Advance(59 * time.Minute)
	r.check(t)
	wantQueued(t, r)
	r.clock.Advance(2 * time.Minute)
	r.check(t)
	wantQueued(t, r, "ALERT backup failed")
	st, err := r.a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Open) != 1 || !st.Open[0].Since.Equal(started.Add(time.Hour)) || !strings.Contains(st.Open[0].Summary, "writing for 1h1m without end") {
		t.Fatalf("open alerts %+v", st.Open)
	}
	r.facts.set(func(f *Facts) {
		f.Backup = &Backup{Dir: "/mnt/nas/storeedge", LastSuccess: r.clock.Now(), LastFile: "b"}
	})
	r.check(t)
	wantQueued(t, r, "ALERT backup failed", "RESOLVED backup failed")

	// A large shop whose last backup took 40 minutes: three times that before it hangs.
	slow := newRig(t, nil, noMail{}, nil)
	started = slow.clock.Now()
	slow.facts.set(func(f *Facts) {
		f.Backup = &Backup{Dir: "/mnt/nas/storeedge", RunningSince: started, LastTook: 40 * time.Minute}
	})
	slow.clock.Advance(119 * time.Minute)
	slow.check(t)
	wantQueued(t, slow)
	slow.clock.Advance(2 * time.Minute)
	slow.check(t)
	wantQueued(t, slow, "ALERT backup failed")
}

// Back-office runs failing open backoffice_failing after its delay, and a run that succeeds
// resolves it; refusals since the start open backoffice_refused for an hour, from the first one
// on, the first run's included.
func TestBackOfficeFailingAndRefused(t *testing.T) {
	r := newRig(t, nil, noMail{}, func(c *config.Alerts) { c.BackOfficeFailing.After = 30 * time.Minute })
	bo := func(lastError string, refused int64) func(f *Facts) {
		return func(f *Facts) { f.BackOffice = &BackOffice{LastError: lastError, Refused: refused} }
	}
	// The first run refuses two orders (queued while the server was down) before the first
	// check.
	r.facts.set(func(f *Facts) { f.BackOffice = &BackOffice{Unknown: true} })
	r.check(t)
	wantQueued(t, r)
	r.facts.set(bo("", 2))
	r.check(t)
	wantQueued(t, r, "ALERT refused by the back office")
	r.clock.Advance(RefusedHold)
	r.check(t)
	wantQueued(t, r, "ALERT refused by the back office", "RESOLVED refused by the back office")
	r.facts.set(bo("backoffice: webhook: the ERP answered 401", 2))
	r.check(t)
	r.clock.Advance(29 * time.Minute)
	r.check(t)
	first := []string{"ALERT refused by the back office", "RESOLVED refused by the back office"}
	wantQueued(t, r, first...)
	r.clock.Advance(time.Minute)
	r.check(t)
	wantQueued(t, r, append(first, "ALERT back office failing")...)
	// An admin retried one of the two refused orders and the ERP refused another: the count of
	// refused orders is the same, but it is a new refusal.
	r.facts.set(bo("", 3))
	r.clock.Advance(time.Minute)
	r.check(t)
	wantQueued(t, r, append(first, "ALERT back office failing", "RESOLVED back office failing", "ALERT refused by the back office")...)
	r.clock.Advance(RefusedHold)
	r.check(t)
	wantQueued(t, r, append(first, "ALERT back office failing", "RESOLVED back office failing", "ALERT refused by the back office",
		"RESOLVED refused by the back office")...)

	// Failing again, then a restart: the alert stays open until a run has ended.
	r.facts.set(bo("backoffice: export: permission denied", 3))
	r.check(t)
	r.clock.Advance(31 * time.Minute)
	r.check(t)
	again := newRig(t, r.db, noMail{}, func(c *config.Alerts) { c.BackOfficeFailing.After = 30 * time.Minute })
	again.clock.Advance(r.clock.Now().Sub(again.clock.Now()))
	again.facts.set(func(f *Facts) { f.BackOffice = &BackOffice{Unknown: true} })
	again.check(t)
	if again.openRules(t) != RuleBackOfficeFail {
		t.Fatalf("after a restart: open %q", again.openRules(t))
	}
}

// A dead-letter or a refusal seen by a check whose save failed is seen again by the next
// check: the alert opens then, rather than never.
func TestCountedEventSurvivesAFailedSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.db")
	r := newRig(t, openDB(t, path), noMail{}, nil)
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	r.facts.set(func(f *Facts) {
		f.ServiceBus = &ServiceBus{Queue: "orders"}
		f.BackOffice = &BackOffice{}
	})
	r.check(t)
	// The disk refuses the alerts' writes for one check.
	exec(`CREATE TRIGGER refuse_alerts BEFORE INSERT ON alert_state BEGIN SELECT RAISE(ABORT, 'disk refused'); END`)
	r.facts.set(func(f *Facts) {
		f.ServiceBus = &ServiceBus{Queue: "orders", DeadLettered: 1}
		f.BackOffice = &BackOffice{Refused: 1}
	})
	for range 2 { // a failed save ends the check: the second reaches the rule after it, if the first forgot its event
		if err := r.a.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "disk refused") {
			t.Fatalf("check with the writes refused: %v", err)
		}
	}
	exec(`DROP TRIGGER refuse_alerts`)
	r.check(t)
	if got := r.openRules(t); got != RuleBackOfficeRef+","+RuleDeadLettered {
		t.Fatalf("open after the failed saves: %q", got)
	}
	wantQueued(t, r, "ALERT order dead-lettered", "ALERT refused by the back office")
}

// A notice keeps its Message-ID when it is sent again; a notice of a database that numbers its
// notices afresh (restored from a backup, or a new data_dir under the same server_id) gets
// another one, so a mail client does not take a new alert for one already read.
func TestMessageIDIsTheNoticesOwn(t *testing.T) {
	id := Identity{ShopName: "Lyon", ServerID: "box-1"}
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	first := storage.AlertMail{ID: 7, At: at, Subject: "ALERT WAN down"}
	if a, b := id.single(first, at), id.single(first, at.Add(time.Hour)); a.ID != b.ID || !strings.HasSuffix(a.ID, ".box-1@storeedge") {
		t.Errorf("the same notice sent twice: %q and %q", a.ID, b.ID)
	}
	again := first
	again.At = at.Add(24 * time.Hour)
	if a, b := id.single(first, at), id.single(again, again.At); a.ID == b.ID {
		t.Errorf("two notices numbered 7 at different times share the Message-ID %q", a.ID)
	}
}

// The error texts an alert quotes go through Options.Redact first (the daemon's hides the
// configuration's secrets): a mail leaves the shop through a mail server, and an error may echo
// another system's answer. The daemon's structures are not changed.
func TestAlertsQuoteRedactedErrors(t *testing.T) {
	r := newRig(t, nil, noMail{}, nil)
	r.a.o.Redact = func(s string) string { return strings.ReplaceAll(s, "s3cr3t", "xxxxx") }
	wan := &WAN{State: "unauthorized", LastError: `cloud: feed products: 403: gateway echoed "Authorization: Bearer s3cr3t"`, Route: "direct"}
	r.facts.set(func(f *Facts) {
		f.WAN = wan
		f.BackOffice = &BackOffice{LastError: "backoffice: webhook: the ERP answered 401: token s3cr3t refused"}
		f.DiskFailed = "the disk failed a flush of the database's log: sync /mnt/s3cr3t/storeedge.db-wal: input/output error"
	})
	r.check(t)
	r.clock.Advance(time.Hour)
	r.check(t)
	ms, err := r.db.QueuedAlertMails(context.Background(), 100)
	if err != nil || len(ms) != 3 {
		t.Fatalf("queued %d mails (%v), want the WAN's, the back office's and the disk's", len(ms), err)
	}
	for _, m := range ms {
		if strings.Contains(m.Body, "s3cr3t") || !strings.Contains(m.Body, "xxxxx") {
			t.Errorf("mail %q quotes the error unredacted:\n%s", m.Subject, m.Body)
		}
	}
	if st := r.status(t); len(st.Open) != 3 || strings.Contains(fmt.Sprint(st.Open), "s3cr3t") {
		t.Errorf("open alerts %+v", st.Open)
	}
	if !strings.Contains(wan.LastError, "s3cr3t") {
		t.Error("the daemon's WAN state was changed")
	}
}

// A flush the disk failed opens disk_failed at the next check, its mail quoting the error and
// saying what to do; it resolves when the fact goes (a restart), and is off when switched off.
func TestDiskFailed(t *testing.T) {
	const why = "the disk failed a flush of the database's log: sync /var/lib/storeedge/storeedge.db-wal: input/output error"
	r := newRig(t, nil, noMail{}, nil)
	r.facts.set(func(f *Facts) { f.DiskFailed = why })
	r.check(t)
	wantQueued(t, r, "ALERT disk failed a write")
	ms, _ := r.db.QueuedAlertMails(context.Background(), 10)
	if !strings.Contains(ms[0].Body, "input/output error") || !strings.Contains(ms[0].Body, "restart the machine") {
		t.Errorf("body:\n%s", ms[0].Body)
	}
	if st := r.status(t); len(st.Open) != 1 || st.Open[0].Rule != RuleDiskFailed || !strings.Contains(st.Open[0].Summary, "no LAN order") {
		t.Errorf("status: %+v", st.Open)
	}
	r.facts.set(func(f *Facts) { f.DiskFailed = "" })
	r.clock.Advance(time.Minute)
	r.check(t)
	wantQueued(t, r, "ALERT disk failed a write", "RESOLVED disk failed a write")
	ms, _ = r.db.QueuedAlertMails(context.Background(), 10)
	if !strings.Contains(ms[1].Body, "says nothing of the disk") {
		t.Errorf("the resolution's body does not say what it does not mean:\n%s", ms[1].Body)
	}

	off := newRig(t, nil, noMail{}, func(c *config.Alerts) { c.DiskFailed.Enabled = false })
	off.facts.set(func(f *Facts) { f.DiskFailed = why })
	off.check(t)
	wantQueued(t, off)
}
