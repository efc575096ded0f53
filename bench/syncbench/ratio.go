package syncbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// Rates runs the plain loader and the daemon's first sync rounds times each, alternating, on
// one cloudsim and one download of its feed, and returns each side's rows per second: the
// regression bench (bench/regress) compares their medians. The daemon runs with the first of
// o.PageSizes; nothing is kept.
func Rates(ctx context.Context, o *harness.Options, rounds int, w io.Writer) (daemon, baseline []float64, err error) {
	cloud, cloudURL, err := harness.StartCloud(ctx, harness.Cloud{Bin: o.CloudsimBin, Products: o.Products, Seed: o.Seed, Ready: 2 * time.Minute})
	if err != nil {
		return nil, nil, err
	}
	defer cloud.Kill()
	feeds := filepath.Join(o.WorkDir, "feeds")
	defer os.RemoveAll(feeds)
	if _, err := downloadFeeds(ctx, cloudURL, feeds, o.SyncLimit, io.Discard); err != nil {
		return nil, nil, err
	}
	for i := range rounds {
		var base baselineResult
		var d *daemonSync
		err := harness.Alternate(i, func() error {
			var err error
			d, err = runDaemonSync(ctx, o, cloudURL, o.PageSizes[0], i+1, io.Discard)
			if d != nil && d.dir != "" {
				os.RemoveAll(d.dir)
			}
			return err
		}, func() error {
			var err error
			base, err = runBaseline(ctx, o, feeds, io.Discard)
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		baseline, daemon = append(baseline, base.rate()), append(daemon, d.rate())
		fmt.Fprintf(w, "sync: daemon %.0f rows/s, plain loader %.0f rows/s\n", d.rate(), base.rate())
	}
	return daemon, baseline, nil
}
