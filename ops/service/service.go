// Package service is the glue between storeedge and the system's service manager: readiness and
// watchdog notifications to systemd (through go-systemd's daemon package, not a hand-written
// protocol), and the Windows service: install with restart-on-failure recovery, start, stop,
// uninstall, and the run mode the service control manager starts, logging to the Event Log.
// The Windows-specific code is a thin layer (service_windows.go) behind SCM and EventWriter,
// whose logic here is tested on every system.
package service

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Name is the service's name, in systemd and in Windows' service control manager.
const Name = "storeedge"

// Notifier tells the service manager about the server's life. Each method's error is only
// worth logging: the server runs the same without a manager.
type Notifier interface {
	// Ready says the server serves (systemd Type=notify: READY=1).
	Ready() error
	// Stopping says it is shutting down (STOPPING=1).
	Stopping() error
	// Alive pets the watchdog (WATCHDOG=1).
	Alive() error
	// WatchdogInterval is how often the manager wants Alive, 0 when it does not watch.
	WatchdogInterval() time.Duration
}

// Systemd returns the Notifier for systemd; without $NOTIFY_SOCKET (not started by systemd)
// every notification does nothing.
func Systemd() Notifier { return systemdNotifier{} }

// NoRestart marks an error that restarting the service cannot mend (a configuration it cannot
// use): RunService reports it as a stop, not a failure, so that Windows' recovery actions do
// not restart the service every minute over it, as systemd does not for exit status 78.
func NoRestart(err error) error { return noRestart{err} }

type noRestart struct{ error }

func (e noRestart) Unwrap() error { return e.error }

type systemdNotifier struct{}

var _ Notifier = systemdNotifier{}

func (systemdNotifier) Ready() error    { return notify(daemon.SdNotifyReady) }
func (systemdNotifier) Stopping() error { return notify(daemon.SdNotifyStopping) }
func (systemdNotifier) Alive() error    { return notify(daemon.SdNotifyWatchdog) }
func (systemdNotifier) WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("service: notify systemd %q: %w", state, err)
	}
	return nil
}

// RunWatchdog pets the watchdog at half its interval for as long as healthy says the server
// works (a database that does not answer stops the petting, and systemd restarts the service),
// until ctx ends. It returns at once when the manager does not watch.
func RunWatchdog(ctx context.Context, n Notifier, healthy func(context.Context) error) error {
	every := n.WatchdogInterval() / 2
	if every <= 0 {
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, every)
		err := healthy(hctx)
		cancel()
		if err == nil {
			n.Alive()
		}
	}
}
