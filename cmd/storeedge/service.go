package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/storeedge/storeedge/ops/service"
	"github.com/storeedge/storeedge/storage"
)

const serviceUsage = `Usage: storeedge service install|uninstall|start|stop|status [--config PATH]

The Windows service (run in an administrator's prompt):
  install    register storeedge as a service that starts at boot and restarts on failure,
             running this storeedge.exe with the configuration PATH (default
             C:\ProgramData\storeedge\storeedge.yaml); its messages go to the Event Log
             (Windows Logs > Application, source storeedge)
  uninstall  stop and remove the service (configuration and data are kept)
  start, stop, status
  run        what the service control manager starts; not for a prompt
On Linux the .deb and .rpm packages install the systemd unit instead: systemctl enable --now
storeedge, systemctl status storeedge, journalctl -u storeedge.
`

// cmdService is "storeedge service ACTION".
func cmdService(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, serviceUsage)
		if len(args) == 0 {
			return usageError{errors.New("service: no action given")}
		}
		return nil
	}
	action, rest := args[0], args[1:]
	if action == "run" {
		return serviceRun(ctx, rest, env, stderr)
	}
	if err := service.CheckAction(action); err != nil {
		return usageError{err}
	}
	fs := newFlagSet("service "+action, serviceUsage, stderr)
	path := fs.String("config", "", "configuration file the service runs with")
	if err := fs.Parse(rest); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{unexpectedArg("service "+action, fs.Arg(0), rest)}
	}
	if *path != "" && !filepath.IsAbs(*path) {
		return usageError{fmt.Errorf("service: --config %q is not an absolute path: the service starts in another folder", *path)}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return err
	}
	scm, closeSCM, err := service.WindowsSCM()
	if err != nil {
		return err
	}
	defer closeSCM()
	msg, err := service.Control(scm, action, exe, *path)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

// serviceRun is the Windows service: the server, its log in the Event Log, stopped by the
// service control manager.
func serviceRun(ctx context.Context, args, env []string, stderr io.Writer) error {
	if !service.IsService() {
		return usageError{errors.New("service run: this is what the Windows service control manager starts; use \"storeedge run\" in a prompt")}
	}
	events, closeLog, err := service.OpenEventLog()
	if err != nil {
		// Nowhere to say it: the service control manager records in the System log that the
		// service did not start.
		return err
	}
	defer closeLog()
	// A service's stderr goes nowhere: a configuration it cannot use is said in the Event Log,
	// and the service stops with an error the service control manager records.
	var loadErr strings.Builder
	cfg, err := loadConfig("service run", serviceUsage, args, env, &loadErr)
	if err != nil {
		log := slog.New(service.EventLogHandler(events, slog.LevelInfo))
		attrs := []any{slog.Any("error", err)}
		if extra := strings.TrimSpace(loadErr.String()); extra != "" && !strings.Contains(err.Error(), extra) {
			attrs = append(attrs, slog.String("details", extra))
		}
		log.Error("storeedge: the service cannot start: its configuration cannot be used; fix it (storeedge config --config PATH says what is wrong), then start the service", attrs...)
		return service.RunService(0, func(context.Context) error { return service.NoRestart(err) })
	}
	log := slog.New(service.EventLogHandler(events, cfg.Log.SlogLevel()))
	// A crash's stack has nowhere else to go from a service, which has no standard error. The
	// data folder may not exist yet (the first start): it is made as the database would make it.
	crash := filepath.Join(cfg.DataDir, "crash.log")
	f, err := os.OpenFile(crash, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(cfg.DataDir, 0o750); err == nil {
			f, err = os.OpenFile(crash, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		}
	}
	if err == nil {
		err = debug.SetCrashOutput(f, debug.CrashOptions{})
		f.Close() // SetCrashOutput holds a copy of its own
	}
	if err != nil {
		log.Warn("storeedge: a crash would leave no trace: cannot write crash.log", slog.String("file", crash), slog.Any("error", err))
	}
	return service.RunService(cfg.LAN.ShutdownGrace+service.StopMargin, func(sctx context.Context) error {
		err := daemon(sctx, cfg, log, nil)
		if err != nil {
			log.Error("storeedge: stopped on an error", slog.Any("error", err))
		}
		if ue, se := (usageError{}), (*storage.SchemaError)(nil); errors.As(err, &ue) || errors.As(err, &se) {
			// A configuration the server cannot use at start, or a database a newer storeedge
			// upgraded (as storeedge run's exit 78).
			return service.NoRestart(err)
		}
		return err
	})
}
