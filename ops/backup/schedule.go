package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// Scheduler takes the scheduled backups of the server's own database (backup.*).
type Scheduler struct {
	db       *storage.DB
	dir      string
	keep     int
	prefix   string // file name prefix of this server's backups
	version  string
	schedule cron.Schedule
	now      func() time.Time
	// sleep waits for d or until ctx ends; startDelay is the wait before a backup the server
	// missed while it was off.
	sleep      func(ctx context.Context, d time.Duration) error
	startDelay time.Duration
	remove     func(name string) error // os.Remove
	log        *slog.Logger

	mu     sync.Mutex
	status Status
}

// Status is what the status and the alerts show of the scheduled backups.
type Status struct {
	Dir      string `json:"dir"`
	Schedule string `json:"schedule"`
	Keep     int    `json:"keep"`
	// LastSuccess and LastFile are the newest backup of this server in dir, found there at start
	// or written since.
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastFile    string    `json:"last_file,omitempty"`
	// LastError is why the last scheduled backup failed; empty once one succeeds. Failures
	// counts the failed runs in a row, the first of them at FailingSince.
	LastError    string    `json:"last_error,omitempty"`
	Failures     int       `json:"failures"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	NextRun      time.Time `json:"next_run,omitzero"`
	// RunningSince is when the backup being written now started; zero when none is. LastTook is
	// how long the last good one took (zero: none since the start).
	RunningSince time.Time     `json:"running_since,omitzero"`
	LastTook     time.Duration `json:"-"`
	// Ran is true once a scheduled backup has run since the start, well or not.
	Ran bool `json:"-"`
	// PruneError is why old backups could not be removed at the last backup; empty when they
	// were. The folder fills up meanwhile.
	PruneError string `json:"prune_error,omitempty"`
}

// missedDelay is how long after the start a backup missed while the server was off is taken:
// past the start's own work.
const missedDelay = time.Minute

// maxNap bounds one wait for the next run, so that a clock set right meanwhile (NTP after a
// boot, a battery-less clock) moves the run with it.
const maxNap = 5 * time.Minute

// wallClock is the time without Go's monotonic reading: the schedule follows the wall clock, and a
// clock set back must be seen as such (times that carry the reading compare by it).
func wallClock() time.Time { return time.Now().Round(0) }

// stampLayout is the UTC time in a scheduled backup's name.
const stampLayout = "20060102T150405Z"

// NewScheduler returns the scheduler for cfg.Backup, or nil when backup.dir is empty.
func NewScheduler(cfg config.Config, db *storage.DB, version string, log *slog.Logger) (*Scheduler, error) {
	if cfg.Backup.Dir == "" {
		return nil, nil
	}
	sched, err := config.ParseSchedule(cfg.Backup.Schedule)
	if err != nil {
		return nil, fmt.Errorf("backup.schedule: %w", err)
	}
	return &Scheduler{db: db, dir: cfg.Backup.Dir, keep: cfg.Backup.Keep, prefix: "storeedge-" + cfg.ServerID + "-",
		version: version, schedule: sched, now: wallClock, sleep: backoff.Sleep,
		startDelay: missedDelay, remove: os.Remove, log: log,
		status: Status{Dir: cfg.Backup.Dir, Schedule: cfg.Backup.Schedule, Keep: cfg.Backup.Keep}}, nil
}

// Status returns the state of the scheduled backups.
func (s *Scheduler) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run takes a backup at each time of the schedule until ctx ends, and one shortly after the
// start when the schedule passed a time since this server's newest backup in the folder (the
// machine was off then) or there is none. A failed backup is logged and the next one is taken
// at its time.
func (s *Scheduler) Run(ctx context.Context) error {
	newest, name := s.newest()
	if !newest.IsZero() {
		s.mu.Lock()
		s.status.LastSuccess, s.status.LastFile = newest, name
		s.mu.Unlock()
	}
	// The name holds the newest backup's time in UTC; the schedule is in the server's local time.
	if now := s.now(); newest.IsZero() || !s.schedule.Next(newest.In(now.Location())).After(now) {
		s.setNext(now.Add(s.startDelay))
		if newest.IsZero() {
			s.log.Info("backup: no scheduled backup of this server in the folder yet; taking one shortly", slog.String("dir", s.dir))
		} else {
			s.log.Info("backup: a scheduled backup was missed while the server was off; taking one shortly",
				slog.Time("newest", newest), slog.String("dir", s.dir))
		}
		if err := s.sleep(ctx, s.startDelay); err != nil {
			return err
		}
		s.run(ctx)
	}
	from := s.now()
	for {
		next := s.schedule.Next(from)
		s.setNext(next)
		for {
			now := s.now()
			if now.Before(from) {
				// The clock went back: the schedule counts from the new time.
				from, next = now, s.schedule.Next(now)
				s.setNext(next)
			}
			d := next.Sub(now)
			if d <= 0 {
				break
			}
			if err := s.sleep(ctx, min(d, maxNap)); err != nil {
				return err
			}
		}
		s.run(ctx)
		from = s.now()
	}
}

func (s *Scheduler) setNext(t time.Time) {
	s.mu.Lock()
	s.status.NextRun = t
	s.mu.Unlock()
}

// run takes one scheduled backup, and logs its failure.
func (s *Scheduler) run(ctx context.Context) {
	if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("backup: scheduled backup failed", slog.Any("error", err), slog.String("dir", s.dir))
	}
}

// RunOnce takes one backup now, removes the ones beyond Keep and the leftovers of backups cut
// short, records how it went in the status, and returns the new file.
func (s *Scheduler) RunOnce(ctx context.Context) (string, error) {
	start := s.now()
	s.mu.Lock()
	s.status.RunningSince = start
	s.mu.Unlock()
	file, pruneErr, err := s.backup(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.RunningSince = time.Time{}
	if ctx.Err() != nil {
		return file, err
	}
	s.status.Ran = true
	if err != nil {
		if s.status.Failures == 0 {
			s.status.FailingSince = s.now()
		}
		s.status.Failures++
		s.status.LastError = err.Error()
		return file, err
	}
	if t, ok := s.stamp(filepath.Base(file)); ok {
		s.status.LastSuccess, s.status.LastFile = t, filepath.Base(file)
	}
	s.status.Failures, s.status.LastError, s.status.FailingSince = 0, "", time.Time{}
	s.status.LastTook = s.now().Sub(start)
	s.status.PruneError = ""
	if pruneErr != nil {
		s.status.PruneError = pruneErr.Error()
	}
	return file, nil
}

// backup writes one backup and removes the old ones; a failure to remove them (pruneErr) leaves
// the new backup good.
func (s *Scheduler) backup(ctx context.Context) (file string, pruneErr, err error) {
	start := s.now()
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return "", nil, fmt.Errorf("backup: %w", err)
	}
	s.removeLeftovers()
	name := s.prefix + start.UTC().Format(stampLayout) + ".backup"
	file = filepath.Join(s.dir, name)
	if err := s.db.Backup(ctx, file, storage.Manifest{CreatedAt: start, Version: s.version, Reason: "scheduled"}); err != nil {
		return "", nil, err
	}
	removed, pruneErr := s.prune(name)
	attrs := []any{slog.String("file", file), slog.Duration("took", s.now().Sub(start)), slog.Int("removed", len(removed))}
	if fi, err := os.Stat(file); err == nil {
		attrs = append(attrs, slog.Int64("bytes", fi.Size()))
	}
	s.log.Info("backup: scheduled backup written", attrs...)
	if pruneErr != nil {
		s.log.Error("backup: old backups not removed; the folder fills up", slog.Any("error", pruneErr), slog.String("dir", s.dir))
	}
	return file, pruneErr, nil
}

// prune removes this server's backups beyond the newest keep, the one just written (made)
// always kept: names sort by the time of their run, and a clock set back (a dead battery, no
// NTP yet) would otherwise make the new backup the oldest and remove it at once.
func (s *Scheduler) prune(made string) ([]string, error) {
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	others := slices.DeleteFunc(all, func(n string) bool { return n == made })
	if len(others) > 0 && others[len(others)-1] > made {
		s.log.Warn("backup: the folder has backups of this server dated after the one just written: the clock was ahead then, or is behind now",
			slog.String("written", made), slog.String("newest", others[len(others)-1]))
	}
	if len(others) <= s.keep-1 {
		return nil, nil
	}
	var removed []string
	var errs []error
	for _, name := range others[:len(others)-(s.keep-1)] {
		if err := s.remove(filepath.Join(s.dir, name)); err != nil {
			errs = append(errs, fmt.Errorf("backup: remove an old backup: %w", err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// stamp returns the time in the name of one of this server's scheduled backups; false for any
// other name, another server's whose id starts like this one's ("pos" and "pos-2") included.
func (s *Scheduler) stamp(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, s.prefix)
	if !ok {
		return time.Time{}, false
	}
	stamp, ok := strings.CutSuffix(rest, ".backup")
	if !ok || len(stamp) != len(stampLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(stampLayout, stamp)
	return t, err == nil
}

// list returns the names of this server's scheduled backups in dir, oldest first.
func (s *Scheduler) list() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var names []string
	for _, e := range entries {
		if _, ok := s.stamp(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// newest returns the time and name of this server's newest scheduled backup in dir; zero when
// there is none (or the folder cannot be read: the backup will say why).
func (s *Scheduler) newest() (time.Time, string) {
	names, err := s.list()
	if err != nil || len(names) == 0 {
		return time.Time{}, ""
	}
	name := names[len(names)-1]
	t, _ := s.stamp(name)
	return t, name
}

// removeLeftovers removes the temporary files of this server's backups that were cut short
// (killed, power lost). Only this scheduler writes under its prefix, one backup at a time.
func (s *Scheduler) removeLeftovers() {
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		hidden, ok := strings.CutPrefix(e.Name(), ".")
		if !ok {
			continue
		}
		if base, _, ok := strings.Cut(hidden, storage.TempMark); ok {
			if _, ours := s.stamp(base); ours {
				os.Remove(filepath.Join(s.dir, e.Name()))
			}
		}
	}
}
