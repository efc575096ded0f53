package backup

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	log      *slog.Logger
}

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
		version: version, schedule: sched, now: time.Now, log: log}, nil
}

// Run takes a backup at each time of the schedule until ctx ends. A failed backup is logged and
// the next one is taken at its time.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		now := s.now()
		if err := backoff.Sleep(ctx, s.schedule.Next(now).Sub(now)); err != nil {
			return err
		}
		if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("backup: scheduled backup failed", slog.Any("error", err), slog.String("dir", s.dir))
		}
	}
}

// RunOnce takes one backup now, removes the ones beyond Keep and the leftovers of backups cut
// short, and returns the new file.
func (s *Scheduler) RunOnce(ctx context.Context) (string, error) {
	start := s.now()
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	s.removeLeftovers()
	file := filepath.Join(s.dir, s.prefix+start.UTC().Format("20060102T150405Z")+".backup")
	if err := s.db.Backup(ctx, file, storage.Manifest{CreatedAt: start, Version: s.version, Reason: "scheduled"}); err != nil {
		return "", err
	}
	removed, err := s.prune()
	attrs := []any{slog.String("file", file), slog.Duration("took", s.now().Sub(start)), slog.Int("removed", len(removed))}
	if fi, err := os.Stat(file); err == nil {
		attrs = append(attrs, slog.Int64("bytes", fi.Size()))
	}
	s.log.Info("backup: scheduled backup written", attrs...)
	return file, err
}

// prune removes this server's backups beyond the newest keep; names sort by time.
func (s *Scheduler) prune() ([]string, error) {
	all, err := s.list()
	if err != nil || len(all) <= s.keep {
		return nil, err
	}
	old := all[:len(all)-s.keep]
	for _, name := range old {
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
			return nil, fmt.Errorf("backup: remove an old backup: %w", err)
		}
	}
	return old, nil
}

// list returns the names of this server's scheduled backups in dir, oldest first.
func (s *Scheduler) list() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, s.prefix) && strings.HasSuffix(n, ".backup") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// removeLeftovers removes the temporary files of this server's backups that were cut short
// (killed, power lost). Only this scheduler writes under its prefix, one backup at a time.
func (s *Scheduler) removeLeftovers() {
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "."+s.prefix) && strings.Contains(n, storage.TempMark) {
			os.Remove(filepath.Join(s.dir, n))
		}
	}
}
