package soak

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"

	"github.com/storeedge/storeedge/bench/harness"
)

// Command is "bench soak": it parses the flags, runs the soak, prints the report and fails
// when any check failed.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := Options{Log: stdout}
	var binDir string
	fs := harness.NewFlagSet("soak", stderr)
	fs.StringVar(&binDir, "bin", "bin", "`directory` holding the storeedge and cloudsim binaries")
	fs.StringVar(&o.WorkDir, "work", filepath.Join(harness.DefaultWork, "soak"), "scratch `directory` (the daemon's data directory)")
	fs.DurationVar(&o.Duration, "duration", DefaultDuration, "how long the load runs (after -warmup)")
	fs.DurationVar(&o.Warmup, "warmup", 0, "load run before -duration and left out of the growth check; 0: the first 20 % of -duration")
	fs.IntVar(&o.Devices, "devices", DefaultDevices, "paired devices, each with a push listener that acknowledges")
	fs.IntVar(&o.OrderRate, "orders-per-second", DefaultOrderRate, "orders created per second")
	fs.DurationVar(&o.CatalogEvery, "catalog-every", DefaultCatalogEvery, "interval between catalog changes in the cloud")
	fs.IntVar(&o.Products, "products", DefaultProducts, "the cloud's catalog size")
	fs.IntVar(&o.LookupRate, "lookups-per-second", 0, "product lookups per second, all devices together (default 2 per device)")
	fs.IntVar(&o.Followers, "followers", 0, "event-stream followers (default one per 50 devices, at least 2)")
	fs.DurationVar(&o.SampleEvery, "sample-every", DefaultSampleEvery, "interval between samples of the daemon's RSS, goroutines and open files")
	if err := harness.ParseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return harness.Usagef("unexpected argument %q", fs.Arg(0))
	}
	o.StoreedgeBin, o.CloudsimBin = filepath.Join(binDir, "storeedge"), filepath.Join(binDir, "cloudsim")
	if err := harness.AbsPaths(&o.StoreedgeBin, &o.CloudsimBin, &o.WorkDir); err != nil {
		return err
	}
	if err := harness.CheckBinaries(o.StoreedgeBin, o.CloudsimBin); err != nil {
		return err
	}
	r, err := Run(ctx, o)
	if err != nil {
		return err
	}
	r.Print(stdout)
	if f := r.Failures(); len(f) > 0 {
		return errors.New("soak failed: " + strings.Join(f, "; "))
	}
	return nil
}
