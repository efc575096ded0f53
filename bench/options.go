//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// options are the flags of sync, startup, http and all. Every command takes all of them, so
// "all" can pass one set to the three.
type options struct {
	binDir  string // where storeedge, cloudsim and fixedserver are
	workDir string // scratch: feeds, run directories, scripts, profiles
	dataDir string // the kept database directory shared by sync, startup and http

	// sync
	products  int
	seed      int64
	pageSizes []int
	syncLimit time.Duration // longest a daemon or baseline sync may take before it is a failure
	keepFeeds bool
	sets      setFlags // extra storeedge --set KEY=VALUE for every daemon run

	// startup
	repeat int
	cold   bool

	// http
	threads, connections int
	duration             time.Duration
	warmup               time.Duration
	sample               int
	rounds               int

	// set by prepare
	storeedgeBin, cloudsimBin, fixedBin, selfBin string
}

func parseOptions(cmd string, args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bench %s [flags]\n\nFlags:\n", cmd)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.binDir, "bin", "bin", "`directory` holding the storeedge, cloudsim and fixedserver binaries")
	fs.StringVar(&o.workDir, "work", filepath.Join("bin", "bench-work"), "scratch `directory` (feeds, run directories, wrk scripts)")
	fs.StringVar(&o.dataDir, "data-dir", "", "database `directory` kept by sync and reused by startup and http (default WORK/data)")
	fs.IntVar(&o.products, "products", 1_000_000, "catalog size of the sync benchmark")
	fs.Int64Var(&o.seed, "seed", 1, "cloudsim catalog seed")
	pageSizes := fs.String("page-sizes", "5000,10000", "comma-separated cloud.page_size `values` to run the daemon sync with; the fastest run's database is kept")
	fs.DurationVar(&o.syncLimit, "sync-timeout", 15*time.Minute, "longest one sync (daemon or baseline) may take")
	fs.Var(&o.sets, "set", "extra storeedge `KEY=VALUE` for every daemon run (repeatable), e.g. -set cloud.request_timeout=10m")
	fs.BoolVar(&o.keepFeeds, "keep-feeds", false, "keep the downloaded NDJSON feeds of the baseline in WORK/feeds")
	fs.IntVar(&o.repeat, "repeat", 5, "startup: measurements of each program")
	fs.BoolVar(&o.cold, "cold", false, "startup: drop the OS page cache before every start (root; slows the whole machine for a moment)")
	fs.IntVar(&o.threads, "threads", 2, "http: wrk -t")
	fs.IntVar(&o.connections, "connections", 64, "http: wrk -c")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "http: wrk -d of each measured run")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "http: wrk -d of the unmeasured warm-up before each target (0: none)")
	fs.IntVar(&o.sample, "sample", 20000, "http: random products read over the LAN API for the average answer size and the barcode list")
	fs.IntVar(&o.rounds, "rounds", 1, "http: measured rounds of each target, alternating targets; the median round is reported")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	var err error
	if o.pageSizes, err = parseInts(*pageSizes); err != nil {
		return nil, usageError{fmt.Errorf("-page-sizes: %v", err)}
	}
	switch {
	case o.products < 1 || o.products > 5_000_000:
		return nil, usageError{fmt.Errorf("-products %d outside 1..5000000", o.products)}
	case o.seed == 0:
		return nil, usageError{errors.New("-seed 0 is reserved by cloudsim")}
	case o.repeat < 1 || o.repeat > 100:
		return nil, usageError{fmt.Errorf("-repeat %d outside 1..100", o.repeat)}
	case o.threads < 1 || o.connections < o.threads:
		return nil, usageError{errors.New("-threads must be ≥ 1 and -connections ≥ -threads")}
	case o.duration < time.Second || o.duration > 10*time.Minute:
		return nil, usageError{fmt.Errorf("-duration %v outside 1s..10m", o.duration)}
	case o.warmup < 0 || o.warmup > time.Minute:
		return nil, usageError{fmt.Errorf("-warmup %v outside 0..1m", o.warmup)}
	case o.sample < 100:
		return nil, usageError{fmt.Errorf("-sample %d: want at least 100", o.sample)}
	case o.rounds < 1 || o.rounds > 20:
		return nil, usageError{fmt.Errorf("-rounds %d outside 1..20", o.rounds)}
	case o.syncLimit < time.Minute:
		return nil, usageError{fmt.Errorf("-sync-timeout %v: want at least 1m", o.syncLimit)}
	}
	for _, ps := range o.pageSizes {
		if ps < 1 || ps > 10000 {
			return nil, usageError{fmt.Errorf("-page-sizes: %d outside 1..10000 (cloud.page_size)", ps)}
		}
	}
	return o, nil
}

// setFlags collects repeated -set KEY=VALUE flags.
type setFlags []string

func (s *setFlags) String() string { return strings.Join(*s, " ") }
func (s *setFlags) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*s = append(*s, v)
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no value")
	}
	return out, nil
}

// prepare makes the paths absolute and checks that the binaries exist.
func (o *options) prepare() error {
	var err error
	if o.binDir, err = filepath.Abs(o.binDir); err != nil {
		return err
	}
	if o.workDir, err = filepath.Abs(o.workDir); err != nil {
		return err
	}
	if o.dataDir == "" {
		o.dataDir = filepath.Join(o.workDir, "data")
	}
	if o.dataDir, err = filepath.Abs(o.dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	o.storeedgeBin = filepath.Join(o.binDir, "storeedge")
	o.cloudsimBin = filepath.Join(o.binDir, "cloudsim")
	o.fixedBin = filepath.Join(o.binDir, "fixedserver")
	for _, b := range []string{o.storeedgeBin, o.cloudsimBin, o.fixedBin} {
		if fi, err := os.Stat(b); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is missing or not executable: build it first (scripts/bench.sh does)", b)
		}
	}
	if o.selfBin, err = os.Executable(); err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	return nil
}

// dbMeta describes a database directory made by bench sync, so startup and http know what is in
// it without a cloud.
type dbMeta struct {
	Products int       `json:"products"`
	Seed     int64     `json:"seed"`
	PageSize int       `json:"page_size"`
	Created  time.Time `json:"created"`
}

const metaFile = "bench-meta.json"

func readMeta(dir string) (dbMeta, error) {
	var m dbMeta
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, metaFile), err)
	}
	if m.Products < 1 {
		return m, fmt.Errorf("%s: no product count", filepath.Join(dir, metaFile))
	}
	return m, nil
}

func writeMeta(dir string, m dbMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, metaFile), append(b, '\n'), 0o644)
}

// replaceDir moves src to dst. dst may exist only if it is a database directory of ours (it has
// our meta file or a storeedge.db) or empty, so a mistyped -data-dir never deletes anything else.
func replaceDir(src, dst string) error {
	if entries, err := os.ReadDir(dst); err == nil && len(entries) > 0 {
		_, errMeta := os.Stat(filepath.Join(dst, metaFile))
		_, errDB := os.Stat(filepath.Join(dst, "storeedge.db"))
		if errMeta != nil && errDB != nil {
			return fmt.Errorf("-data-dir %s is not empty and holds no storeedge database: not replacing it", dst)
		}
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("remove old data directory: %w", err)
		}
	} else if err == nil {
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.Rename(src, dst)
}
