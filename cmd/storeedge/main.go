// Command storeedge is the in-store edge server. See README.md and docs/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mattn/go-isatty"
)

func main() {
	stopOn := []os.Signal{os.Interrupt, syscall.SIGTERM}
	switch {
	case asService(os.Args[1:]):
		ignoreHangup(os.Stderr)
	case signal.Ignored(syscall.SIGHUP):
		// Started under nohup: the hang-up stays ignored (Notify would turn it on again).
	default:
		// A terminal that closes (an SSH session that drops) stops the command cleanly, rather
		// than leaving it running without one, holding its ports and the data folder.
		stopOn = append(stopOn, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(context.Background(), stopOn...)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// asService tells the server run by a service manager (systemd, a container): storeedge run
// without a terminal on its standard input.
func asService(args []string) bool {
	return len(args) > 0 && args[0] == "run" && !isatty.IsTerminal(os.Stdin.Fd()) && !isatty.IsCygwinTerminal(os.Stdin.Fd())
}

// ignoreHangup keeps SIGHUP, which many send a service to have it read its configuration again,
// from killing the server without its clean stop (Go's default for the signal): the
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
