package mediabench

import (
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// options are the flags of the media benchmarks.
type options struct {
	binDir, workDir      string
	connections, threads int
	duration, warmup     time.Duration
	rounds               int
	products             int
	capRate              int64
	capWindow            time.Duration
	parallel             int

	storeedgeBin, cloudsimBin string
}

func parseOptions(cmd string, args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := harness.NewFlagSet(cmd, stderr)
	fs.StringVar(&o.binDir, "bin", "bin", "`directory` holding the storeedge and cloudsim binaries")
	fs.StringVar(&o.workDir, "work", harness.DefaultWork, "scratch `directory`")
	fs.IntVar(&o.threads, "threads", 2, "media-serve: wrk -t")
	fs.IntVar(&o.connections, "connections", 64, "media-serve: wrk -c")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "media-serve: wrk -d of each measured run")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "media-serve: unmeasured warm-up before each target")
	fs.IntVar(&o.rounds, "rounds", 3, "media-serve: measured rounds of each target; media-fetch: prefetches of each program; alternating, the median is reported")
	fs.IntVar(&o.products, "products", 42000, "media-fetch: cloudsim catalog size (42000 products: 10,500 media items, about 2.1 GB)")
	fs.Int64Var(&o.capRate, "cap", 4<<20, "media-fetch: media.max_bandwidth of the cap run, bytes per second")
	fs.DurationVar(&o.capWindow, "cap-window", 20*time.Second, "media-fetch: how long the cap run is measured")
	fs.IntVar(&o.parallel, "parallel", 4, "media-fetch: media.parallel of the daemon and rclone --transfers")
	if err := harness.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	switch {
	case o.connections < o.threads || o.threads < 1:
		return nil, harness.Usagef("-threads must be ≥ 1 and -connections ≥ -threads")
	case o.duration < time.Second, o.rounds < 1, o.products < 4, o.capRate < 16<<10, o.capWindow < 5*time.Second, o.parallel < 1:
		return nil, harness.Usagef("-duration ≥ 1s, -rounds ≥ 1, -products ≥ 4, -cap ≥ 16384, -cap-window ≥ 5s, -parallel ≥ 1")
	}
	if err := harness.AbsPaths(&o.binDir, &o.workDir); err != nil {
		return nil, err
	}
	o.storeedgeBin, o.cloudsimBin = filepath.Join(o.binDir, "storeedge"), filepath.Join(o.binDir, "cloudsim")
	if err := harness.CheckBinaries(o.storeedgeBin, o.cloudsimBin); err != nil {
		return nil, err
	}
	return o, os.MkdirAll(o.workDir, 0o755)
}
