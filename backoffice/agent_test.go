package backoffice

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

// every is a schedule that fires every d.
type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// TestRun finishes an interrupted file at start, before the first scheduled time, then runs on
// the schedule, and stops with the context.
func TestRun(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	bo := config.BackOffice{Schedule: "@every 1h", Export: config.BackOfficeExport{Dir: dir}}
	interruptInProduction(t, db, bo)

	var logs testenv.Buffer
	a := agentFor(db, false, bo)
	a.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, func() bool { return countExported(dir) == 2 && !a.Status().NextRun.IsZero() })
	if st := a.Status(); st.NextRun.Before(time.Now().Add(59 * time.Minute)) {
		t.Fatalf("next run %v, want in an hour", st.NextRun)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if !strings.Contains(logs.String(), "finishing an order file interrupted by a stop") {
		t.Fatalf("log:\n%s", logs.String())
	}

	// On a short schedule, new orders go out without anyone asking; a failure is logged once.
	createOrders(t, db, 1, false)
	b := agentFor(db, false, bo)
	b.log = a.log
	b.sched = every(10 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- b.Run(ctx) }()
	waitFor(t, func() bool { return countExported(dir) == 3 })
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(b.Status().LastError, "does not exist") })
	for range 3 { // three more failed runs, each of which could log again
		prev := b.Status().LastRun
		waitFor(t, func() bool {
			st := b.Status()
			return st.LastRun.After(prev) && strings.Contains(st.LastError, "does not exist")
		})
	}
	os.Rename(moved, dir)
	createOrders(t, db, 1, false)
	waitFor(t, func() bool { return countExported(dir) == 4 && b.Status().LastError == "" })
	cancel()
	<-done
	if n := strings.Count(logs.String(), "level=WARN msg=\"backoffice: run failed"); n != 1 {
		t.Fatalf("the same failure was logged %d times at WARN:\n%s", n, logs.String())
	}
}

func TestRunNothingConfigured(t *testing.T) {
	a := New(Options{DB: openDB(t, ""), Config: config.BackOffice{Schedule: "*/5 * * * *"}})
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRunBadSchedule(t *testing.T) {
	a := New(Options{DB: openDB(t, ""), Config: config.BackOffice{Schedule: "every day"}})
	if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), `schedule "every day"`) {
		t.Fatal(err)
	}
}

// TestRunOnceConcurrent: an admin's "export now" during a scheduled run waits for it; each order
// is written once.
func TestRunOnceConcurrent(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	a := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: dir}})
	a.o.BatchSize = 2
	createOrders(t, db, 9, false)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			if err := a.RunOnce(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, _ := readOrderFiles(t, dir)
	if idsOnce(t, got); len(got) != 9 {
		t.Fatalf("%d orders", len(got))
	}
}

// TestStatusCounts shows what the status page shows, and survives a restart.
func TestStatusCounts(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "shop.db")
	db := openDB(t, dbPath)
	dir := t.TempDir()
	bo := config.BackOffice{Export: config.BackOfficeExport{Dir: dir}}
	a := agentFor(db, false, bo)
	createOrders(t, db, 3, false)
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	createOrders(t, db, 2, false)
	createOrders(t, db, 1, true)
	b := agentFor(db, false, bo)
	if err := b.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := b.Status()
	want := TargetStatus{Name: storage.ExportFiles, Destination: dir, Exported: 3, Pending: 2}
	if st.Mode != config.ModeProduction || len(st.Targets) != 1 || st.Targets[0] != want || st.Import != nil {
		t.Fatalf("status %+v", st)
	}
}

// countExported counts the orders in the finished JSON files of dir, for polling.
func countExported(dir string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		list, _ := parseOrders("json", data)
		n += len(list)
	}
	return n
}

// interruptInProduction creates two orders and stops a production run writing their file
// after it was recorded complete, as a crash there would.
func interruptInProduction(t *testing.T, db *storage.DB, bo config.BackOffice) {
	t.Helper()
	createOrders(t, db, 2, false)
	crashed := agentFor(db, false, bo)
	crashed.hook = crashAt(stepMarked, 1)
	if err := crashed.RunOnce(context.Background()); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An admin's run is bounded by its context, the wait for a run in progress included, and a run
// its context cut short leaves the status as the last run that ended left it.
func TestRunCutShortLeavesTheStatus(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	a := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: dir, Format: config.ExportCSV}})
	createOrders(t, db, 3, false)
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := a.Status()

	// A run in progress (this test holds its place): the admin's run waits until its deadline.
	if err := a.lockRun(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := a.RunOnce(ctx)
	cancel()
	a.unlockRun()
	if !errors.Is(err, ErrCutShort) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a run waiting past its deadline: %v", err)
	}

	// A run whose context ends while it writes a file.
	createOrders(t, db, 2, false)
	ctx, cancel = context.WithCancel(context.Background())
	a.hook = func(step string) error {
		if step == stepMarked {
			cancel()
		}
		return nil
	}
	if err := a.RunOnce(ctx); !errors.Is(err, ErrCutShort) {
		t.Fatalf("a run whose context ended: %v", err)
	}
	if after := a.Status(); after.LastError != "" || !after.LastRun.Equal(before.LastRun) {
		t.Fatalf("the status after runs cut short: %+v, want it as after the last run that ended: %+v", after, before)
	}
}

// A file interrupted in production before the shop went to test mode, with no folder in use
// in test mode (only the production folder configured), and the production share away at the
// start: Run tries again at each scheduled time, the exchange counting as configured meanwhile
// (its failure shows, and the backoffice_failing alert can open); once the file is finished,
// Run returns, as with nothing configured.
func TestRunFinishesTheOtherModesFileWithNothingElseConfigured(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	bo := config.BackOffice{Schedule: "@every 1h", Export: config.BackOfficeExport{Dir: dir}}
	interruptInProduction(t, db, bo)
	away := dir + ".away"
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	a := agentFor(db, true, bo)
	a.sched = every(10 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, func() bool { return strings.Contains(a.Status().LastError, "does not exist") })
	if !a.Configured() {
		t.Fatal("not configured while the interrupted file waits: its failure would open no alert")
	}
	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v, want nil once the file was finished", err)
	}
	if n := countExported(dir); n != 2 {
		t.Fatalf("%d orders in the production folder, want the 2 of the interrupted file", n)
	}
	if a.Configured() || !a.Status().NextRun.IsZero() {
		t.Fatalf("after the file was finished: configured %v, next run %v", a.Configured(), a.Status().NextRun)
	}
	// Nothing left to finish: Run returns at once.
	if err := agentFor(db, true, bo).Run(ctx); err != nil {
		t.Fatalf("Run with nothing to do: %v, want it to return at once", err)
	}
}

// A file interrupted in production that the start in test mode could not finish (the share was
// away) is finished by the next run, not left until the next start.
func TestRunOnceFinishesTheOtherModesFile(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir, testDir := t.TempDir(), t.TempDir()
	bo := config.BackOffice{Export: config.BackOfficeExport{Dir: dir, TestDir: testDir}}
	interruptInProduction(t, db, bo)
	away := dir + ".away"
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	a := agentFor(db, true, bo)
	if err := a.Recover(ctx); err == nil {
		t.Fatal("the start finished a file in a folder that is away")
	}
	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := readOrderFiles(t, dir); len(got) != 2 {
		t.Fatalf("the production folder holds %d orders after a run in test mode, want the 2 of the interrupted file", len(got))
	}
}

// At start, an order file a stop interrupted in production is finished even when the shop has
// been put in test mode since (its orders were promised to the ERP), and the temporary files
// left in the folders are removed. A folder of the other mode with nothing interrupted is not
// touched: in test mode the production share may not be mounted.
func TestRecoverFinishesTheOtherModesFile(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir, testDir := t.TempDir(), t.TempDir()
	bo := config.BackOffice{Export: config.BackOfficeExport{Dir: dir, TestDir: testDir}}
	interruptInProduction(t, db, bo)
	stray := filepath.Join(testDir, tmpPrefix+"orders-"+storage.ExportTestFiles+"-20261207T000000Z-1.json")
	if err := os.WriteFile(stray, []byte(`[{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := agentFor(db, true, bo).Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := readOrderFiles(t, dir); len(got) != 2 {
		t.Fatalf("the production folder holds %d orders after the start in test mode, want the 2 of the interrupted file", len(got))
	}
	if _, err := os.Stat(stray); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the temporary file left in the test folder is still there (%v)", err)
	}
	// Nothing interrupted: a production folder that is not there is no error in test mode.
	bo.Export.Dir = filepath.Join(t.TempDir(), "share-not-mounted")
	if err := agentFor(db, true, bo).Recover(ctx); err != nil {
		t.Fatalf("start in test mode with the production share away: %v", err)
	}
}
