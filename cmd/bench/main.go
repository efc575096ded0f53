// Command bench measures storeedge against baselines taken in the same run, so that each figure
// can be read as a ratio on a noisy machine (see docs/PERFORMANCE.md):
//
//	bench sync     first sync of a large catalog: the daemon against cloudsim, next to a plain
//	               single-goroutine loader writing the same rows into the same schema
//	bench startup  time from exec to the first product answer, next to a trivial Go HTTP server
//	bench http     wrk against product and barcode lookups, next to a bare net/http handler
//	bench all      the three, in that order, sharing one database
//	bench status   GET /api/v1/status while a first sync runs and idle, next to a bare handler
//	bench media    media files served next to nginx, and a prefetch from Azurite next to rclone
//	bench soak     ten minutes of a busy shop: resources flat, no error, no order lost
//
// Everything runs on 127.0.0.1: the bench starts cloudsim, storeedge and the baseline server as
// child processes, prints each command line, and kills them all on exit or interrupt. It is run
// through scripts/bench.sh, which builds the binaries first. The benchmarks themselves are the
// packages under bench/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/bench/httpbench"
	"github.com/storeedge/storeedge/bench/mediabench"
	"github.com/storeedge/storeedge/bench/profile"
	"github.com/storeedge/storeedge/bench/soak"
	"github.com/storeedge/storeedge/bench/startup"
	"github.com/storeedge/storeedge/bench/statusbench"
	"github.com/storeedge/storeedge/bench/syncbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	harness.KillAll()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode maps run's error to the exit code, in one place: 0 success, 2 a bad command line,
// 130 interrupted, 1 anything else.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(harness.UsageError)):
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "bench: interrupted; child processes stopped")
		return 130
	default:
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
}

const usage = `Usage: bench COMMAND [flags]

Commands:
  sync      first sync of -products products: storeedge vs a plain loader (baseline)
  startup   exec to first product answer: storeedge vs a trivial Go HTTP server (baseline)
  http      wrk on product/barcode lookups: storeedge vs a bare net/http handler (baseline)
  all       sync, startup and http, sharing one database
  status    GET /api/v1/status p50/p99 during a first sync and idle: storeedge vs a bare
            net/http handler answering as many bytes (baseline)

  media-serve  wrk on 1 MiB and 20 MiB media files: storeedge vs nginx with sendfile (baseline)
  media-fetch  prefetch of a container in Azurite: storeedge vs rclone copy (baseline); RSS
               growth during it; bandwidth cap accuracy
  media        media-serve, then media-fetch

  soak      -duration of -devices devices, -orders-per-second orders, catalog changes: the
            daemon's RSS, goroutines and open files flat after the warm-up, no error, every
            order in the cloud and on the event streams, push queues empty at the end

  profile-sync   CPU profile of the feed sync code, in process, against a cloudsim process
  profile-http   CPU profile of the LAN server code, in process, under wrk

Run "bench COMMAND -h" for the flags of a command. scripts/bench.sh builds the binaries and runs
this tool.
`

// run is the whole program: it parses the subcommand and calls it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return harness.Usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "sync", "startup", "http", "all", "status":
		o, err := harness.ParseOptions(cmd, rest, stderr)
		if err != nil {
			return err
		}
		return runBench(ctx, cmd, o, stdout)
	case "media-serve", "media-fetch", "media":
		return mediabench.Run(ctx, cmd, rest, stdout, stderr)
	case "soak":
		return soak.Command(ctx, rest, stdout, stderr)
	case "profile-sync":
		return profile.Sync(ctx, rest, stdout, stderr)
	case "profile-http":
		return profile.HTTP(ctx, rest, stdout, stderr)
	case syncbench.BaselineCommand:
		return syncbench.Baseline(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return harness.Usagef("unknown command %q", cmd)
	}
}

// benchmark is one of the benchmarks that share Options and the kept database.
type benchmark func(context.Context, *harness.Options, *harness.Report, io.Writer) error

// runBench runs one benchmark, or all three, and prints the tables of every one that ran at the
// end so a long run's figures sit together.
func runBench(ctx context.Context, cmd string, o *harness.Options, stdout io.Writer) error {
	if err := o.Prepare(); err != nil {
		return err
	}
	var order []benchmark
	switch cmd {
	case "sync":
		order = []benchmark{syncbench.Run}
	case "startup":
		order = []benchmark{startup.Run}
	case "http":
		order = []benchmark{httpbench.Run}
	case "status":
		order = []benchmark{statusbench.Run}
	case "all":
		order = []benchmark{syncbench.Run, startup.Run, httpbench.Run}
	}
	r := &harness.Report{}
	var err error
	for _, b := range order {
		if err = b(ctx, o, r, stdout); err != nil {
			break
		}
	}
	r.Print(stdout)
	return err
}
