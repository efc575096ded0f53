package harness

import (
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

// DefaultWork is the default scratch directory of every command.
var DefaultWork = filepath.Join("bin", "bench-work")

// Options are the flags of sync, startup, http and all. Every command takes all of them, so
// "all" can pass one set to the three.
type Options struct {
	BinDir  string // where storeedge, cloudsim and fixedserver are
	WorkDir string // scratch: feeds, run directories, scripts, profiles
	DataDir string // the kept database directory shared by sync, startup and http

	// sync
	Products  int
	Seed      int64
	PageSizes []int
	SyncLimit time.Duration // longest a daemon or baseline sync may take before it is a failure
	KeepFeeds bool
	Sets      SetFlags // extra storeedge --set KEY=VALUE for every daemon run

	// startup
	Repeat int
	Cold   bool

	// http
	Threads, Connections int
	Duration             time.Duration
	Warmup               time.Duration
	Sample               int
	Rounds               int

	// set by Prepare
	StoreedgeBin, CloudsimBin, FixedBin, SelfBin string
}

// ParseOptions reads the flags of the command cmd.
func ParseOptions(cmd string, args []string, stderr io.Writer) (*Options, error) {
	o := &Options{}
	fs := NewFlagSet(cmd, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bench %s [flags]\n\nFlags:\n", cmd)
		fs.PrintDefaults()
	}
	pageSizes := o.flags(fs)
	if err := ParseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, Usagef("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.PageSizes, err = parseInts(*pageSizes); err != nil {
		return nil, Usagef("-page-sizes: %v", err)
	}
	return o, o.validate()
}

// flags defines the flags on fs; -page-sizes is returned to be parsed after.
func (o *Options) flags(fs *flag.FlagSet) (pageSizes *string) {
	fs.StringVar(&o.BinDir, "bin", "bin", "`directory` holding the storeedge, cloudsim and fixedserver binaries")
	fs.StringVar(&o.WorkDir, "work", DefaultWork, "scratch `directory` (feeds, run directories, wrk scripts)")
	fs.StringVar(&o.DataDir, "data-dir", "", "database `directory` kept by sync and reused by startup and http (default WORK/data)")
	fs.IntVar(&o.Products, "products", 1_000_000, "catalog size of the sync benchmark")
	fs.Int64Var(&o.Seed, "seed", 1, "cloudsim catalog seed")
	pageSizes = fs.String("page-sizes", "5000,10000", "comma-separated cloud.page_size `values` to run the daemon sync with; the fastest run's database is kept")
	fs.DurationVar(&o.SyncLimit, "sync-timeout", 15*time.Minute, "longest one sync (daemon or baseline) may take")
	fs.Var(&o.Sets, "set", "extra storeedge `KEY=VALUE` for every daemon run (repeatable), e.g. -set cloud.request_timeout=10m")
	fs.BoolVar(&o.KeepFeeds, "keep-feeds", false, "keep the downloaded NDJSON feeds of the baseline in WORK/feeds")
	fs.IntVar(&o.Repeat, "repeat", 5, "startup: measurements of each program")
	fs.BoolVar(&o.Cold, "cold", false, "startup: drop the OS page cache before every start (root; slows the whole machine for a moment)")
	fs.IntVar(&o.Threads, "threads", 2, "http: wrk -t")
	fs.IntVar(&o.Connections, "connections", 64, "http: wrk -c")
	fs.DurationVar(&o.Duration, "duration", 15*time.Second, "http: wrk -d of each measured run")
	fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "http: wrk -d of the unmeasured warm-up before each target (0: none)")
	fs.IntVar(&o.Sample, "sample", 20000, "http: random products read over the LAN API for the average answer size and the barcode list")
	fs.IntVar(&o.Rounds, "rounds", 1, "http: measured rounds, each target next to its baseline in each; the medians are reported")
	return pageSizes
}

// validate checks the values against their ranges.
func (o *Options) validate() error {
	switch {
	case o.Products < 1 || o.Products > 5_000_000:
		return Usagef("-products %d outside 1..5000000", o.Products)
	case o.Seed == 0:
		return Usagef("-seed 0 is reserved by cloudsim")
	case o.Repeat < 1 || o.Repeat > 100:
		return Usagef("-repeat %d outside 1..100", o.Repeat)
	case o.Threads < 1 || o.Connections < o.Threads:
		return Usagef("-threads must be ≥ 1 and -connections ≥ -threads")
	case o.Duration < time.Second || o.Duration > 10*time.Minute:
		return Usagef("-duration %v outside 1s..10m", o.Duration)
	case o.Warmup < 0 || o.Warmup > time.Minute:
		return Usagef("-warmup %v outside 0..1m", o.Warmup)
	case o.Sample < 100:
		return Usagef("-sample %d: want at least 100", o.Sample)
	case o.Rounds < 1 || o.Rounds > 20:
		return Usagef("-rounds %d outside 1..20", o.Rounds)
	case o.SyncLimit < time.Minute:
		return Usagef("-sync-timeout %v: want at least 1m", o.SyncLimit)
	}
	for _, ps := range o.PageSizes {
		if ps < 1 || ps > 10000 {
			return Usagef("-page-sizes: %d outside 1..10000 (cloud.page_size)", ps)
		}
	}
	return nil
}

// Prepare makes the paths absolute and checks that the binaries exist.
func (o *Options) Prepare() error {
	if err := AbsPaths(&o.BinDir, &o.WorkDir); err != nil {
		return err
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(o.WorkDir, "data")
	}
	if err := AbsPaths(&o.DataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	o.StoreedgeBin = filepath.Join(o.BinDir, "storeedge")
	o.CloudsimBin = filepath.Join(o.BinDir, "cloudsim")
	o.FixedBin = filepath.Join(o.BinDir, "fixedserver")
	if err := CheckBinaries(o.StoreedgeBin, o.CloudsimBin, o.FixedBin); err != nil {
		return err
	}
	var err error
	if o.SelfBin, err = os.Executable(); err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	return nil
}

// AbsPaths makes each path absolute, in place.
func AbsPaths(paths ...*string) error {
	for _, p := range paths {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	return nil
}

// CheckBinaries fails unless every binary is an executable file.
func CheckBinaries(bins ...string) error {
	for _, b := range bins {
		if fi, err := os.Stat(b); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is missing or not executable: build it first (scripts/bench.sh does)", b)
		}
	}
	return nil
}

// SetFlags collects repeated -set KEY=VALUE flags.
type SetFlags []string

func (s *SetFlags) String() string { return strings.Join(*s, " ") }

// Set adds one KEY=VALUE.
func (s *SetFlags) Set(v string) error {
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

// UsageError is a mistake on the command line: exit code 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef is a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// NewFlagSet is the flag set of "bench CMD", writing its messages to stderr.
func NewFlagSet(cmd string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// ParseFlags parses args; a bad flag is a UsageError, -h is flag.ErrHelp.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{err}
	}
	return nil
}
