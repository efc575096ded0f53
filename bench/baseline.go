//go:build linux

package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the same driver as storage

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// The sync baseline is the simplest loader that stores what the daemon stores: one goroutine
// reading the downloaded feed line by line, encoding/json for every line (and every product
// document), plain prepared upserts into storage's own schema, one transaction per
// baselineBatch rows, and the search index filled once at the end. No validation, no quarantine,
// no cursor bookkeeping, no network. It runs as a child process of the bench (this same binary,
// command sync-baseline) so its peak memory is its own.

const (
	baselineCommand = "sync-baseline"
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

func cmdSyncBaseline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench "+baselineCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	feeds := fs.String("feeds", "", "`directory` of COLLECTION.ndjson feed files")
	dbPath := fs.String("db", "", "database `file` to create; must not exist")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *feeds == "" || *dbPath == "" {
		return usageError{errors.New("-feeds and -db are required")}
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
	res.PeakRSSKB, _ = procStatus(os.Getpid(), "VmHWM")
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

	var upsertSQL, deleteSQL string
	if coll == cloudapi.Products {
		upsertSQL = `INSERT INTO products(id, rev, seq, deleted, name, brand, category, doc) VALUES (?, ?, ?, 0, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 0, name = excluded.name,
			brand = excluded.brand, category = excluded.category, doc = excluded.doc WHERE excluded.rev > products.rev`
		deleteSQL = `INSERT INTO products(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 1, NULL)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 1, name = '', brand = '', category = '', doc = NULL
			WHERE excluded.rev > products.rev`
	} else {
		upsertSQL = `INSERT INTO ` + coll + `(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 0, ?)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 0, doc = excluded.doc WHERE excluded.rev > ` + coll + `.rev`
		deleteSQL = `INSERT INTO ` + coll + `(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 1, NULL)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 1, doc = NULL WHERE excluded.rev > ` + coll + `.rev`
	}
	const codeSQL = `INSERT OR REPLACE INTO barcodes(code, product_id) VALUES (?, ?)`

	var (
		tx                  *sql.Tx
		upsert, del, addBar *sql.Stmt
		inTx, rows          int64
	)
	begin := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if tx, err = db.BeginTx(ctx, nil); err != nil {
			return err
		}
		if upsert, err = tx.PrepareContext(ctx, upsertSQL); err != nil {
			return err
		}
		if del, err = tx.PrepareContext(ctx, deleteSQL); err != nil {
			return err
		}
		if coll == cloudapi.Products {
			if addBar, err = tx.PrepareContext(ctx, codeSQL); err != nil {
				return err
			}
		}
		return nil
	}
	commit := func() error {
		inTx = 0
		err := tx.Commit() // closes the transaction's statements
		tx = nil
		return err
	}
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()

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
		if tx == nil {
			if err := begin(); err != nil {
				return rows, err
			}
		}
		c := &l.Change
		*seq++
		var err error
		switch {
		case c.Op == cloudapi.OpDelete:
			_, err = del.ExecContext(ctx, c.ID, c.Rev, *seq)
		case coll == cloudapi.Products:
			var p cloudapi.Product
			if err = json.Unmarshal(c.Doc, &p); err != nil {
				return rows, fmt.Errorf("%s: %w", c.ID, err)
			}
			if _, err = upsert.ExecContext(ctx, c.ID, c.Rev, *seq, p.Name, p.Brand, p.Category, string(c.Doc)); err != nil {
				break
			}
			for _, code := range p.Barcodes {
				if _, err = addBar.ExecContext(ctx, code, c.ID); err != nil {
					break
				}
			}
		default:
			_, err = upsert.ExecContext(ctx, c.ID, c.Rev, *seq, string(c.Doc))
		}
		if err != nil {
			return rows, fmt.Errorf("%s rev %d: %w", c.ID, c.Rev, err)
		}
		rows++
		if inTx++; inTx == baselineBatch {
			if err := commit(); err != nil {
				return rows, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return rows, err
	}
	if tx != nil {
		if err := commit(); err != nil {
			return rows, err
		}
	}
	return rows, nil
}
