package syncbench

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the same driver as storage

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// The sync baseline is the simplest loader that stores what the daemon stores: one goroutine
// reading the downloaded feed line by line, encoding/json for every line (and every product
// document), plain prepared upserts into storage's own schema, one transaction per
// baselineBatch rows, and the search index filled once at the end. No validation, no quarantine,
// no cursor bookkeeping, no network. It runs as a child process of the bench (the bench binary
// itself, command BaselineCommand) so its peak memory is its own.

const (
	// BaselineCommand is the bench's command that runs Baseline; the sync benchmark runs its own
	// executable with it.
	BaselineCommand = "sync-baseline"
	baselineBatch   = 1000
	resultPrefix    = "RESULT "
)

type baselineResult struct {
	Rows         map[string]int64 `json:"rows"`
	Total        int64            `json:"total"`
	LoadSeconds  float64          `json:"load_seconds"`  // schema, decode and upserts
	FTSSeconds   float64          `json:"fts_seconds"`   // filling products_fts at the end
	TotalSeconds float64          `json:"total_seconds"` // both
	PeakRSSKB    int64            `json:"peak_rss_kb"`
	CPUSeconds   float64          `json:"-"` // user+system, filled in by the parent from the child's rusage
}

func (b baselineResult) rate() float64 { return float64(b.Total) / b.TotalSeconds }

// runBaseline runs the baseline loader as a child process on a fresh database and removes the
// database afterwards.
func runBaseline(ctx context.Context, o *harness.Options, feeds string, w io.Writer) (baselineResult, error) {
	var res baselineResult
	dir := filepath.Join(o.WorkDir, "baseline")
	if err := os.RemoveAll(dir); err != nil {
		return res, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	var mu sync.Mutex
	var line string
	p, err := harness.Start("baseline", o.SelfBin, []string{BaselineCommand, "-feeds", feeds, "-db", filepath.Join(dir, "baseline.db")}, nil,
		func(l string, _ time.Time) {
			if s, ok := strings.CutPrefix(l, resultPrefix); ok {
				mu.Lock()
				line = s
				mu.Unlock()
			}
		})
	if err != nil {
		return res, err
	}
	defer p.Kill()
	if err := p.Wait(ctx, o.SyncLimit); err != nil {
		return res, err
	}
	if p.ExitCode() != 0 {
		return res, p.ExitErr()
	}
	mu.Lock()
	defer mu.Unlock()
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, fmt.Errorf("baseline result %q: %w; its output:\n%s", line, err, p.Tail())
	}
	res.CPUSeconds = p.CPUSeconds()
	return res, nil
}

// Baseline is the child process: it loads the feed files of -feeds into a new database -db and
// prints its figures as one RESULT line of JSON.
func Baseline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := harness.NewFlagSet(BaselineCommand, stderr)
	feeds := fs.String("feeds", "", "`directory` of COLLECTION.ndjson feed files")
	dbPath := fs.String("db", "", "database `file` to create; must not exist")
	if err := harness.ParseFlags(fs, args); err != nil {
		return err
	}
	if *feeds == "" || *dbPath == "" {
		return harness.Usagef("-feeds and -db are required")
	}
	if _, err := os.Stat(*dbPath); err == nil {
		return fmt.Errorf("baseline: %s exists; the baseline loads a fresh database", *dbPath)
	}
	res, err := loadBaseline(ctx, *feeds, *dbPath)
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s%s\n", resultPrefix, b)
	return nil
}

// baselineDSN is storage's writer DSN (storage/db.go dsn(path, false)), copied because it is
// unexported: the same pragmas, so the comparison is of the code, not of the SQLite settings.
func baselineDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "cache_size(-32768)")
	q.Add("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

func loadBaseline(ctx context.Context, feeds, path string) (baselineResult, error) {
	res := baselineResult{Rows: map[string]int64{}}
	start := time.Now()
	// The schema comes from storage's own migrations.
	sdb, err := storage.Open(ctx, path)
	if err != nil {
		return res, fmt.Errorf("baseline: %w", err)
	}
	if err := sdb.Close(); err != nil {
		return res, fmt.Errorf("baseline: %w", err)
	}
	db, err := sql.Open("sqlite", baselineDSN(path))
	if err != nil {
		return res, fmt.Errorf("baseline: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	var seq int64
	for _, coll := range cloudapi.Collections {
		n, err := loadFeedFile(ctx, db, coll, filepath.Join(feeds, coll+".ndjson"), &seq)
		if err != nil {
			return res, fmt.Errorf("baseline: %s: %w", coll, err)
		}
		res.Rows[coll] = n
		res.Total += n
	}
	if _, err := db.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'seq'`, seq); err != nil {
		return res, fmt.Errorf("baseline: %w", err)
	}
	loaded := time.Now()
	if _, err := db.ExecContext(ctx, `INSERT INTO products_fts(rowid, name, brand, category) SELECT rowid, name, brand, category FROM products WHERE deleted = 0`); err != nil {
		return res, fmt.Errorf("baseline: fill products_fts: %w", err)
	}
	end := time.Now()
	res.LoadSeconds = loaded.Sub(start).Seconds()
	res.FTSSeconds = end.Sub(loaded).Seconds()
	res.TotalSeconds = end.Sub(start).Seconds()
	res.PeakRSSKB, _ = harness.ProcStatus(os.Getpid(), "VmHWM")
	return res, nil
}

// loadFeedFile applies every change line of one collection's feed file; end lines are skipped.
func loadFeedFile(ctx context.Context, db *sql.DB, coll, file string, seq *int64) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(bufio.NewReaderSize(f, 256<<10))
	sc.Buffer(make([]byte, 64<<10), cloudapi.MaxLineBytes+2)

	b := newBatcher(ctx, db, coll)
	defer b.rollback()
	var rows int64
	for sc.Scan() {
		var l struct {
			cloudapi.Change
			End *cloudapi.PageEnd `json:"end"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return rows, fmt.Errorf("line %d: %w", rows+1, err)
		}
		if l.End != nil {
			continue
		}
		if err := b.add(&l.Change, seq); err != nil {
			return rows, err
		}
		rows++
	}
	if err := sc.Err(); err != nil {
		return rows, err
	}
	return rows, b.flush()
}
