package profile

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/feed"
)

// Sync profiles a first sync done by feed.Syncer in this process against a cloudsim process.
func Sync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var prof profiles
	fs := harness.NewFlagSet("profile-sync", stderr)
	binDir := fs.String("bin", "bin", "`directory` holding the cloudsim binary")
	workDir := fs.String("work", harness.DefaultWork, "scratch `directory`")
	products := fs.Int("products", 1_000_000, "catalog size")
	seed := fs.Int64("seed", 1, "cloudsim catalog seed")
	pageSize := fs.Int("page-size", 5000, "changes per feed page (cloud.page_size)")
	prof.flags(fs, "profile-sync")
	if err := harness.ParseFlags(fs, args); err != nil {
		return err
	}
	if *pageSize < 1 || *pageSize > cloudapi.MaxPageSize {
		return harness.Usagef("-page-size %d outside 1..%d", *pageSize, cloudapi.MaxPageSize)
	}
	if err := harness.AbsPaths(binDir); err != nil {
		return err
	}
	cloudProc, cloudURL, err := harness.StartCloud(ctx, harness.Cloud{Bin: filepath.Join(*binDir, "cloudsim"), Products: *products, Seed: *seed, Ready: 2 * time.Minute})
	if err != nil {
		return err
	}
	defer cloudProc.Kill()

	dir := filepath.Join(*workDir, "profile-sync")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := storage.Open(ctx, filepath.Join(dir, "storeedge.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	client, err := cloud.New(cloudURL, harness.StoreKey, harness.NewClient(2*time.Minute, true), "storeedge-bench")
	if err != nil {
		return err
	}
	syncer := feed.New(feed.Options{DB: db, Client: client, PageSize: *pageSize,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	var elapsed time.Duration
	err = prof.during(stdout, func() error {
		start := time.Now()
		err := syncer.SyncOnce(ctx)
		elapsed = time.Since(start)
		return err
	})
	if err != nil {
		return fmt.Errorf("profile-sync: %w", err)
	}
	total, err := countRows(ctx, db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "in-process first sync (feed.Syncer.SyncOnce, page size %d): %s rows in %.2f s = %.0f rows/s\n",
		*pageSize, harness.FmtInt(total), elapsed.Seconds(), float64(total)/elapsed.Seconds())
	return nil
}

// countRows is the number of rows of every collection.
func countRows(ctx context.Context, db *storage.DB) (int64, error) {
	var total int64
	for _, c := range cloudapi.Collections {
		n, err := db.Count(ctx, c)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
