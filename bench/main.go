//go:build linux

// Command bench measures storeedge against baselines taken in the same run, so that each figure
// can be read as a ratio on a noisy machine (see docs/PERFORMANCE.md):
//
//	bench sync     first sync of a large catalog: the daemon against cloudsim, next to a plain
//	               single-goroutine loader writing the same rows into the same schema
//	bench startup  time from exec to the first product answer, next to a trivial Go HTTP server
//	bench http     wrk against product and barcode lookups, next to a bare net/http handler
//	bench all      the three, in that order, sharing one database
//	bench media    media files served next to nginx, and a prefetch from Azurite next to rclone
//
// Everything runs on 127.0.0.1: the bench starts cloudsim, storeedge and the baseline server as
// child processes, prints each command line, and kills them all on exit or interrupt. It is run
// through scripts/bench.sh, which builds the binaries first. It builds on Linux only: it relies on
// process groups, parent-death signals, getrusage and wrk.
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	killAll()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a bad command line: exit code 2.
type usageError struct{ error }

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
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

  media-serve  wrk on 1 MiB and 20 MiB media files: storeedge vs nginx with sendfile (baseline)
  media-fetch  prefetch of a container in Azurite: storeedge vs rclone copy (baseline); RSS
               growth during it; bandwidth cap accuracy
  media        media-serve, then media-fetch

  profile-sync   CPU profile of the feed sync code, in process, against a cloudsim process
  profile-http   CPU profile of the LAN server code, in process, under wrk

Run "bench COMMAND -h" for the flags of a command. scripts/bench.sh builds the binaries and runs
this tool.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "sync", "startup", "http", "all":
		o, err := parseOptions(cmd, rest, stderr)
		if err != nil {
			return err
		}
		return runBench(ctx, cmd, o, stdout)
	case "media-serve", "media-fetch", "media":
		return cmdMedia(ctx, cmd, rest, stdout, stderr)
	case "profile-sync":
		return cmdProfileSync(ctx, rest, stdout, stderr)
	case "profile-http":
		return cmdProfileHTTP(ctx, rest, stdout, stderr)
	case baselineCommand:
		return cmdSyncBaseline(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

// runBench runs one benchmark, or all three, and prints the tables of every one that ran at the
// end so a long run's figures sit together.
func runBench(ctx context.Context, cmd string, o *options, stdout io.Writer) error {
	if err := o.prepare(); err != nil {
		return err
	}
	r := &report{}
	var err error
	switch cmd {
	case "sync":
		err = benchSync(ctx, o, r, stdout)
	case "startup":
		err = benchStartup(ctx, o, r, stdout)
	case "http":
		err = benchHTTP(ctx, o, r, stdout)
	case "all":
		err = benchSync(ctx, o, r, stdout)
		if err == nil {
			err = benchStartup(ctx, o, r, stdout)
		}
		if err == nil {
			err = benchHTTP(ctx, o, r, stdout)
		}
	}
	r.print(stdout)
	return err
}
