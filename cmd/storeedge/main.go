// Command storeedge is the in-store edge server. See README.md and docs/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ignoreHangup(os.Stderr)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// ignoreHangup keeps SIGHUP, which many send to a daemon to have it read its configuration
// again, from killing the server without its clean stop (Go's default for the signal): the
// configuration is read at start only, and each SIGHUP says so.
func ignoreHangup(stderr *os.File) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			fmt.Fprintln(stderr, "storeedge: SIGHUP ignored: the configuration is read at start only; restart the service to apply a change")
		}
	}()
}
