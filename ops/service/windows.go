package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/config"
)

// SCM is the part of Windows' service control manager that storeedge uses. The Windows
// implementation (service_windows.go) maps each method onto golang.org/x/sys/windows/svc/mgr;
// errors are the system's, wrapped.
type SCM interface {
	// Create registers the service (and its Event Log source) to run exe with args.
	Create(s Spec) error
	// Delete stops nothing: it removes the registration; the Event Log source stays, so that
	// the service's messages stay readable.
	Delete(name string) error
	Start(name string) error
	// Stop asks the service to stop and waits up to timeout for it.
	Stop(name string, timeout time.Duration) error
	// State is "running", "stopped", …; ErrNotInstalled when there is no such service.
	State(name string) (string, error)
}

// ErrNotInstalled: no service of that name is registered.
var ErrNotInstalled = errors.New("service: storeedge is not installed as a service")

// Spec is the registration of the Windows service.
type Spec struct {
	Name, DisplayName, Description string
	Exe                            string
	Args                           []string
	// RestartDelays are the recovery actions: restart after each delay on the 1st, 2nd and
	// later failures; ResetAfter zeroes the failure count after that long without one.
	RestartDelays []time.Duration
	ResetAfter    time.Duration
	// PreshutdownTimeout is how long Windows waits for the service when the machine shuts down
	// (the pre-shutdown notice): the longest stop, instead of the system's few seconds.
	PreshutdownTimeout time.Duration
}

// Recovery: restart after 5 s, 30 s, then every minute; forget failures after a day.
var (
	restartDelays = []time.Duration{5 * time.Second, 30 * time.Second, time.Minute}
	resetAfter    = 24 * time.Hour
)

// DataDir is where the Windows service keeps its configuration and data.
const DataDir = `C:\ProgramData\storeedge`

// SpecFor is the service that runs exe with the configuration file configPath: started at boot,
// restarted on failure, running "storeedge service run --config configPath".
func SpecFor(exe, configPath string) (Spec, error) {
	if !filepath.IsAbs(exe) || (configPath != "" && !filepath.IsAbs(configPath) && !strings.HasPrefix(configPath, `C:\`)) {
		return Spec{}, fmt.Errorf("service: the program %q and the configuration %q need absolute paths", exe, configPath)
	}
	if configPath == "" {
		configPath = DataDir + `\storeedge.yaml`
	}
	return Spec{
		Name:          Name,
		DisplayName:   "storeedge in-store edge server",
		Description:   "Serves the shop's devices from a local copy of the catalog and keeps it in sync with the vendor's cloud.",
		Exe:           exe,
		Args:          []string{"service", "run", "--config", configPath},
		RestartDelays: restartDelays,
		ResetAfter:    resetAfter,

		PreshutdownTimeout: stopTimeout,
	}, nil
}

// CheckAction says whether Control carries out action: nil, or the error naming those it does.
func CheckAction(action string) error {
	switch action {
	case "install", "uninstall", "start", "stop", "status":
		return nil
	}
	return fmt.Errorf("service: unknown action %q; want install, uninstall, start, stop or status", action)
}

// Control carries out "storeedge service ACTION" against scm and says what it did.
func Control(scm SCM, action, exe, configPath string) (string, error) {
	switch action {
	case "install":
		spec, err := SpecFor(exe, configPath)
		if err != nil {
			return "", err
		}
		if _, err := scm.State(Name); err == nil {
			return "", errors.New("service: storeedge is already installed; run \"storeedge service uninstall\" first to change it")
		}
		if err := scm.Create(spec); err != nil {
			return "", fmt.Errorf("service: install: %w", err)
		}
		msg := fmt.Sprintf("installed the service %q: %s %s; it starts at boot and restarts on failure. Start it with: storeedge service start", Name, spec.Exe, strings.Join(spec.Args, " "))
		if ProgramPath != "" && !strings.EqualFold(filepath.Clean(exe), filepath.Clean(ProgramPath)) {
			msg += fmt.Sprintf("\nnote: the program is not %s, the path the rules of storeedge firewall name (install.md, step 1): Windows' firewall will not let devices reach this one, and a folder outside Program Files may let users who are not administrators replace it; move it there and install again", ProgramPath)
		}
		return msg, nil
	case "uninstall":
		if st, err := scm.State(Name); err == nil && st != "stopped" {
			if err := scm.Stop(Name, stopTimeout); err != nil {
				return "", fmt.Errorf("service: stop before uninstalling: %w", err)
			}
		}
		if err := scm.Delete(Name); err != nil {
			return "", fmt.Errorf("service: uninstall: %w", err)
		}
		return "uninstalled the service; the configuration and data in " + DataDir + " are kept", nil
	case "start":
		if err := scm.Start(Name); err != nil {
			return "", fmt.Errorf("service: start: %w", err)
		}
		// A configuration or a database the service cannot use stops it at once, after Windows
		// took the start: watched for a moment, so that "started" means it runs.
		for deadline := time.Now().Add(StartWatch); ; time.Sleep(startPoll) {
			if st, err := scm.State(Name); err == nil && st == "stopped" {
				return "", errors.New("service: start: the service stopped at once (after a failure other than its configuration, Windows' recovery starts it again within a minute); the Event Log (Windows Logs > Application, source storeedge) says why")
			}
			if time.Now().After(deadline) {
				break
			}
		}
		return "started; the Event Log (Windows Logs > Application, source storeedge) shows its messages", nil
	case "stop":
		if st, err := scm.State(Name); err == nil && st == "stopped" {
			return "already stopped", nil // an upgrade's first step, after a stop by hand
		}
		if err := scm.Stop(Name, stopTimeout); err != nil {
			return "", fmt.Errorf("service: stop: %w", err)
		}
		return "stopped", nil
	case "status":
		st, err := scm.State(Name)
		if err != nil {
			return "", err
		}
		return st, nil
	}
	return "", CheckAction(action)
}

// StartWatch is how long "storeedge service start" watches the service after Windows took the
// start, and startPoll how often it looks.
var (
	StartWatch = 5 * time.Second
	startPoll  = 250 * time.Millisecond
)

// ProgramPath is where install.md puts storeedge.exe and the firewall rules name it
// (%ProgramW6432%\storeedge\storeedge.exe); "" where it is not known (not on Windows).
var ProgramPath = programPath()

// stopTimeout covers the longest shutdown grace the server may be given (lan.shutdown_grace) and
// some: "service stop" and "uninstall" return as soon as the service has stopped.
const stopTimeout = config.MaxLANShutdownGrace + StopMargin

// StopMargin is what a stop takes beyond the shutdown grace: the workers' own ends, the
// database's close.
const StopMargin = 30 * time.Second

// EventWriter is the Windows Event Log of one source (golang.org/x/sys/windows/svc/eventlog.Log).
type EventWriter interface {
	Info(eid uint32, msg string) error
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// Event ids by level, so that an administrator can filter on them.
const (
	eventInfo    = 1
	eventWarning = 2
	eventError   = 3
)

// EventLogHandler is a slog handler that writes each record as one Event Log entry, the level
// choosing the entry's type; DEBUG records go nowhere unless level allows them.
func EventLogHandler(w EventWriter, level slog.Leveler) slog.Handler {
	return &eventHandler{w: w, level: level}
}

type eventHandler struct {
	w     EventWriter
	level slog.Leveler
	attrs []slog.Attr
	group string
}

func (h *eventHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *eventHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Error(eventError, b.String())
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(eventWarning, b.String())
	}
	return h.w.Info(eventInfo, b.String())
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = name
	return &c
}
