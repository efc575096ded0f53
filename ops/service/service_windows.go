package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// programPath is %ProgramW6432%\storeedge\storeedge.exe: C:\Program Files in a 32-bit shell
// too, as the firewall scripts say it.
func programPath() string {
	if p := os.Getenv("ProgramW6432"); p != "" {
		return p + `\storeedge\storeedge.exe`
	}
	return ""
}

// WindowsSCM connects to the service control manager (needs an administrator).
func WindowsSCM() (SCM, func(), error) {
	m, err := mgr.Connect()
	if err != nil {
		return nil, nil, fmt.Errorf("service: connect to the service control manager (run as administrator): %w", err)
	}
	return winSCM{m}, func() { m.Disconnect() }, nil
}

type winSCM struct{ m *mgr.Mgr }

var _ SCM = winSCM{}

func (w winSCM) Create(s Spec) (err error) {
	sv, err := w.m.CreateService(s.Name, s.Exe, mgr.Config{
		DisplayName: s.DisplayName, Description: s.Description,
		StartType: mgr.StartAutomatic, DelayedAutoStart: true,
	}, s.Args...)
	if err != nil {
		return err
	}
	defer sv.Close()
	defer func() {
		if err != nil {
			sv.Delete() // not half installed: "install" may be run again
		}
	}()
	var actions []mgr.RecoveryAction
	for _, d := range s.RestartDelays {
		actions = append(actions, mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: d})
	}
	if err := sv.SetRecoveryActions(actions, uint32(s.ResetAfter/time.Second)); err != nil {
		return err
	}
	// Restart also when the server exits with an error, not only when it crashes.
	if err := sv.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return err
	}
	// The machine's shutdown gives the service the time of a stop, not the system's default.
	pre := preshutdownInfo{Timeout: uint32(s.PreshutdownTimeout / time.Millisecond)}
	if err := windows.ChangeServiceConfig2(sv.Handle, windows.SERVICE_CONFIG_PRESHUTDOWN_INFO, (*byte)(unsafe.Pointer(&pre))); err != nil {
		return fmt.Errorf("pre-shutdown time: %w", err)
	}
	// A source left by an earlier installation is the same source: eventlog says so with an
	// error of its own words, not ERROR_ALREADY_EXISTS.
	if err := eventlog.InstallAsEventCreate(s.Name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil &&
		!errors.Is(err, windows.ERROR_ALREADY_EXISTS) && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("event log source: %w", err)
	}
	return nil
}

// preshutdownInfo is SERVICE_PRESHUTDOWN_INFO, which golang.org/x/sys/windows does not define.
type preshutdownInfo struct {
	Timeout uint32 // milliseconds
}

func (w winSCM) Delete(name string) error {
	sv, err := w.m.OpenService(name)
	if err != nil {
		return ErrNotInstalled
	}
	defer sv.Close()
	// The Event Log source stays: without it, the messages the service wrote (why it failed,
	// say) would show as "the description cannot be found"; a later install takes it as it is.
	return sv.Delete()
}

func (w winSCM) Start(name string) error {
	sv, err := w.m.OpenService(name)
	if err != nil {
		return ErrNotInstalled
	}
	defer sv.Close()
	return sv.Start()
}

func (w winSCM) Stop(name string, timeout time.Duration) error {
	sv, err := w.m.OpenService(name)
	if err != nil {
		return ErrNotInstalled
	}
	defer sv.Close()
	st, err := sv.Control(svc.Stop)
	if errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return nil // stopped already
	}
	for deadline := time.Now().Add(timeout); ; {
		switch {
		case errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE):
			return nil // stopped between the query and the stop sent again
		case errors.Is(err, windows.ERROR_SERVICE_CANNOT_ACCEPT_CTRL):
			// Starting or stopping: ask again once it runs, or see it stopped.
		case err != nil:
			return err
		case st.State == svc.Stopped:
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still %s after %s", stateName(st.State), timeout)
		}
		time.Sleep(300 * time.Millisecond)
		if st, err = sv.Query(); err == nil && st.State == svc.Running {
			st, err = sv.Control(svc.Stop)
		}
	}
}

func (w winSCM) State(name string) (string, error) {
	sv, err := w.m.OpenService(name)
	if err != nil {
		return "", ErrNotInstalled
	}
	defer sv.Close()
	st, err := sv.Query()
	if err != nil {
		return "", err
	}
	return stateName(st.State), nil
}

func stateName(s svc.State) string {
	switch s {
	case svc.Stopped:
		return "stopped"
	case svc.StartPending:
		return "starting"
	case svc.StopPending:
		return "stopping"
	case svc.Running:
		return "running"
	}
	return fmt.Sprintf("state %d", s)
}

// OpenEventLog opens the Event Log source of the service.
func OpenEventLog() (EventWriter, func(), error) {
	l, err := eventlog.Open(Name)
	if err != nil {
		return nil, nil, err
	}
	return l, func() { l.Close() }, nil
}

// IsService reports whether the service control manager started this process.
func IsService() bool {
	ok, err := svc.IsWindowsService()
	return err == nil && ok
}

// RunService runs run as the Windows service until the manager says stop or shut down (then
// run's context ends), and reports run's error to the manager as a failure, so that the
// recovery actions restart it.
// The service control manager is told that a stop may take stopWait (the server's shutdown
// grace and StopMargin), so that it does not take a long grace for a hung service.
func RunService(stopWait time.Duration, run func(ctx context.Context) error) error {
	return svc.Run(Name, &handler{run: run, stopWait: stopWait})
}

type handler struct {
	run      func(ctx context.Context) error
	stopWait time.Duration
	err      error
}

func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.run(ctx) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown | svc.AcceptPreShutdown}
	stopping := false
	for {
		select {
		case err := <-done:
			cancel()
			var final noRestart
			if errors.As(err, &final) || stopping {
				// Any other exit code is a failure, which the recovery actions restart; the
				// reason is in the Event Log. A stop that was asked for is a stop, whatever the
				// server's last error: not restarted in the middle of an upgrade.
				h.err = err
				return false, 0
			}
			if err != nil {
				h.err = err
				return true, 1 // a service-specific error: recovery restarts it
			}
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown, svc.PreShutdown:
				stopping = true
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32(h.stopWait / time.Millisecond)}
				cancel()
			}
		}
	}
}
