package backup

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

// scheduler is a scheduler of server serverID's backups in dir, on a test clock.
func scheduler(t *testing.T, serverID, dir string, keep int, clock *testenv.Clock) *Scheduler {
	t.Helper()
	cfg := testConfig(t, "lyon", "key")
	cfg.ServerID, cfg.Backup.Dir, cfg.Backup.Keep = serverID, dir, keep
	db := runningShop(t, cfg)
	t.Cleanup(func() { db.Close() })
	s, err := NewScheduler(cfg, db, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.Now
	return s
}

// backupEvery takes n backups with s, step apart on clock, and returns their file names.
func backupEvery(t *testing.T, s *Scheduler, clock *testenv.Clock, n int, step time.Duration) []string {
	t.Helper()
	var made []string
	for range n {
		f, err := s.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, filepath.Base(f))
		clock.Advance(step)
	}
	return made
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Two servers may share a backup folder, one's id the start of the other's ("pos" and "pos-2"):
// each removes only its own old backups and its own leftovers.
func TestSharedFolderKeepsTheOtherServersBackups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := testenv.NewClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	pos, pos2 := scheduler(t, "pos", dir, 2, clock), scheduler(t, "pos-2", dir, 2, clock)
	var want []string
	for _, s := range []*Scheduler{pos2, pos2, pos, pos, pos} {
		f, err := s.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, filepath.Base(f))
		clock.Advance(time.Hour)
	}
	want = slices.Delete(want, 2, 3) // pos's first: its keep is 2
	// pos-2's backup being written while pos cleans up.
	writing := "." + want[0] + storage.TempMark + "abc"
	if err := os.WriteFile(filepath.Join(dir, writing), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pos.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := dirNames(t, dir)
	for _, name := range append(want[:2:2], writing) {
		if !slices.Contains(got, name) {
			t.Errorf("pos removed %s of pos-2; the folder holds %q", name, got)
		}
	}
}

// A clock set back (a dead battery, no NTP yet) makes the new backup's name the oldest: it is
// kept all the same, and the oldest of the others goes.
func TestClockSetBackKeepsTheNewBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := testenv.NewClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	s := scheduler(t, "box-1", dir, 2, clock)
	made := backupEvery(t, s, clock, 2, 24*time.Hour)
	clock.Advance(-27 * 365 * 24 * time.Hour)
	f, err := s.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names, err := s.list()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Base(f), made[1]}; !slices.Equal(names, want) {
		t.Fatalf("kept %q, want the backup just written and the newest before it %q", names, want)
	}
}

// fakeSleep advances the clock instead of sleeping, and ends the run once stop says so.
func fakeSleep(clock *testenv.Clock, cancel context.CancelFunc, stop func() bool) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		if stop() {
			cancel()
			return ctx.Err()
		}
		clock.Advance(d)
		return ctx.Err()
	}
}

// A scheduled time that passed while the machine was off (a shop box switched off at night) is
// made up shortly after the start; a server whose newest backup is after the last scheduled
// time waits for the next one.
func TestBackupMissedWhileOffIsTakenAtStart(t *testing.T) {
	// The names of the backups hold UTC times; the schedule is the server's local time, here UTC
	// and an hour east of it.
	for _, loc := range []*time.Location{time.UTC, time.FixedZone("CET", 3600)} {
		t.Run(loc.String(), func(t *testing.T) {
			dir := t.TempDir()
			// The newest backup is from two days ago, 03:00; the server starts at 08:00.
			clock := testenv.NewClock(time.Date(2026, 3, 1, 3, 0, 0, 0, loc))
			s := scheduler(t, "box-1", dir, 7, clock)
			if _, err := s.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			clock.Advance(53 * time.Hour)
			start := clock.Now()
			var runs []time.Time
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var sleeps []time.Duration
			s.sleep = fakeSleep(clock, cancel, func() bool {
				if names, _ := s.list(); len(names) > len(runs)+1 {
					runs = append(runs, clock.Now())
				}
				return len(runs) == 2 || len(sleeps) > 1000
			})
			sleep := s.sleep
			s.sleep = func(ctx context.Context, d time.Duration) error { sleeps = append(sleeps, d); return sleep(ctx, d) }
			if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			if len(runs) != 2 {
				t.Fatalf("%d backups after the start, want 2", len(runs))
			}
			if got, want := runs[0].Sub(start), missedDelay; got != want {
				t.Errorf("the missed backup was taken %v after the start, want %v", got, want)
			}
			if want := time.Date(2026, 3, 4, 3, 0, 0, 0, loc); !runs[1].Equal(want) {
				t.Errorf("the next backup was taken at %v, want %v", runs[1], want)
			}
			for _, d := range sleeps {
				if d > maxNap {
					t.Fatalf("a wait of %v: the clock is looked at every %v at least", d, maxNap)
				}
			}
			st := s.Status()
			if want, _ := s.stamp(filepath.Base(mustNewest(t, s))); !st.LastSuccess.Equal(want) || st.Failures != 0 {
				t.Errorf("status %+v", st)
			}

			// Started again at 05:00 the same day: nothing was missed.
			clock.Advance(2 * time.Hour)
			ctx, cancel = context.WithCancel(context.Background())
			defer cancel()
			restart := clock.Now()
			var first time.Time
			s.sleep = fakeSleep(clock, cancel, func() bool {
				if names, _ := s.list(); len(names) == 4 && first.IsZero() {
					first = clock.Now()
				}
				return !first.IsZero()
			})
			if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			if want := restart.Add(22 * time.Hour); !first.Equal(want) {
				t.Errorf("after a restart with nothing missed the first backup was at %v, want %v", first, want)
			}
		})
	}
}

func mustNewest(t *testing.T, s *Scheduler) string {
	t.Helper()
	_, name := s.newest()
	if name == "" {
		t.Fatal("no backup")
	}
	return name
}

// A failed scheduled backup is in the status, with when the failures began, until one succeeds.
func TestFailedBackupsAreInTheStatus(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "share")
	if err := os.WriteFile(dir, []byte("not a folder"), 0o600); err != nil { // the share is not mounted
		t.Fatal(err)
	}
	clock := testenv.NewClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	s := scheduler(t, "box-1", dir, 7, clock)
	ctx := context.Background()
	s.run(ctx)
	failedAt := clock.Now()
	clock.Advance(24 * time.Hour)
	s.run(ctx)
	st := s.Status()
	if st.Failures != 2 || !st.FailingSince.Equal(failedAt) || !strings.Contains(st.LastError, "not a directory") || !st.LastSuccess.IsZero() {
		t.Fatalf("status after two failures: %+v", st)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	s.run(ctx)
	st = s.Status()
	if st.Failures != 0 || st.LastError != "" || !st.FailingSince.IsZero() || !st.LastSuccess.Equal(clock.Now().Truncate(time.Second)) ||
		st.Dir != dir || st.Keep != 7 || st.Schedule != config.Default().Backup.Schedule {
		t.Fatalf("status after a success: %+v", st)
	}
}

// Old backups that cannot be removed leave the backup just written good: it is the last
// success, and the status says why the folder fills up; the others are still removed.
func TestOldBackupsNotRemovedLeaveTheNewOneGood(t *testing.T) {
	dir := t.TempDir()
	clock := testenv.NewClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	s := scheduler(t, "box-1", dir, 1, clock)
	made := backupEvery(t, s, clock, 1, 24*time.Hour)
	s.remove = func(name string) error {
		if filepath.Base(name) == made[0] {
			return &os.PathError{Op: "remove", Path: name, Err: errors.New("access denied")}
		}
		return os.Remove(name)
	}
	made = append(made, backupEvery(t, s, clock, 2, 24*time.Hour)...)
	st := s.Status()
	if st.Failures != 0 || st.LastError != "" || st.LastFile != made[2] || !strings.Contains(st.PruneError, "access denied") {
		t.Fatalf("status %+v", st)
	}
	if names, _ := s.list(); !slices.Equal(names, []string{made[0], made[2]}) {
		t.Fatalf("folder holds %q, want the one that could not be removed and the newest", names)
	}
}

// The scheduler reads the wall clock, without Go's monotonic reading, by which times compare:
// a clock set back must be seen as such.
func TestSchedulerReadsTheWallClock(t *testing.T) {
	cfg := testConfig(t, "lyon", "key")
	cfg.Backup.Dir = t.TempDir()
	s, err := NewScheduler(cfg, nil, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if now := s.now(); now != now.Round(0) {
		t.Errorf("the scheduler's clock reads %v, with a monotonic reading", now)
	}
}

// While a scheduled backup is written its start is in the status (the alert on a hung share
// reads it); once it is done, well or not, it is gone, and a good one leaves how long it took.
func TestTheStatusShowsTheBackupBeingWritten(t *testing.T) {
	dir := t.TempDir()
	clock := testenv.NewClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	s := scheduler(t, "box-1", dir, 1, clock)
	backupEvery(t, s, clock, 1, 24*time.Hour)
	if st := s.Status(); !st.RunningSince.IsZero() {
		t.Fatalf("running_since %v after the backup ended", st.RunningSince)
	}
	// The old backup is removed once the new one is written: the run is still going then.
	started := clock.Now()
	var during Status
	s.remove = func(name string) error {
		during = s.Status()
		clock.Advance(3 * time.Minute)
		return os.Remove(name)
	}
	backupEvery(t, s, clock, 1, 24*time.Hour)
	if !during.RunningSince.Equal(started) {
		t.Fatalf("running_since while writing: %v, want %v", during.RunningSince, started)
	}
	b, err := json.Marshal(during)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"running_since":"2026-03-02T03:00:00Z"`) {
		t.Fatalf("status while writing: %s", b)
	}
	st := s.Status()
	if !st.RunningSince.IsZero() || st.LastTook != 3*time.Minute {
		t.Fatalf("after the backup: running_since %v, took %v", st.RunningSince, st.LastTook)
	}
	if b, _ := json.Marshal(st); strings.Contains(string(b), "running_since") {
		t.Fatalf("status after the backup: %s", b)
	}

	// A failed backup ends the run too.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run(context.Background())
	if st := s.Status(); st.Failures != 1 || !st.RunningSince.IsZero() {
		t.Fatalf("after a failed backup: %+v", st)
	}
}
