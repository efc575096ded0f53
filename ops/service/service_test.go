package service

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
)

// fakeSCM is a service control manager in memory.
type fakeSCM struct {
	spec        *Spec
	state       string
	calls       []string
	stopsAtOnce bool // the service cannot use its configuration: stopped once started
}

func (f *fakeSCM) Create(s Spec) error {
	f.spec, f.state = &s, "stopped"
	f.calls = append(f.calls, "create")
	return nil
}
func (f *fakeSCM) Delete(string) error {
	if f.spec == nil {
		return ErrNotInstalled
	}
	f.spec = nil
	f.calls = append(f.calls, "delete")
	return nil
}
func (f *fakeSCM) Start(string) error {
	f.state = "running"
	if f.stopsAtOnce {
		f.state = "stopped"
	}
	f.calls = append(f.calls, "start")
	return nil
}
func (f *fakeSCM) Stop(string, time.Duration) error {
	if f.state == "stopped" { // as the service control manager answers (ERROR_SERVICE_NOT_ACTIVE)
		return errors.New("the service has not been started")
	}
	f.state = "stopped"
	f.calls = append(f.calls, "stop")
	return nil
}
func (f *fakeSCM) State(string) (string, error) {
	if f.spec == nil {
		return "", ErrNotInstalled
	}
	return f.state, nil
}

// watchStart sets how long "service start" watches the service, for one test.
func watchStart(t *testing.T, d time.Duration) {
	old := StartWatch
	StartWatch = d
	t.Cleanup(func() { StartWatch = old })
}

// "storeedge service start" says started only of a service that runs: one that stops at once
// (a configuration it cannot use) is an error pointing at the Event Log.
func TestServiceStartThatStopsAtOnce(t *testing.T) {
	watchStart(t, time.Second)
	scm := &fakeSCM{stopsAtOnce: true}
	exe := filepath.Join(string(filepath.Separator), "Program Files", "storeedge", "storeedge.exe")
	if _, err := Control(scm, "install", exe, ""); err != nil {
		t.Fatal(err)
	}
	if out, err := Control(scm, "start", exe, ""); err == nil || !strings.Contains(err.Error(), "stopped at once") || !strings.Contains(err.Error(), "Event Log") {
		t.Errorf("start of a service that stops at once: %q, %v", out, err)
	}
	scm.stopsAtOnce = false
	if out, err := Control(scm, "start", exe, ""); err != nil || !strings.HasPrefix(out, "started") {
		t.Errorf("start: %q, %v", out, err)
	}
}

// Installing a program from elsewhere than where the firewall rules name it is done, with a note
// saying why it matters.
func TestServiceInstalledFromElsewhereIsNoted(t *testing.T) {
	want := filepath.Join(string(filepath.Separator), "Program Files", "storeedge", "storeedge.exe")
	old := ProgramPath
	ProgramPath = want
	t.Cleanup(func() { ProgramPath = old })
	scm := &fakeSCM{}
	out, err := Control(scm, "install", filepath.Join(string(filepath.Separator), "Users", "it", "Downloads", "storeedge.exe"), "")
	if err != nil || !strings.Contains(out, "note: the program is not "+want) {
		t.Errorf("install from Downloads: %q, %v", out, err)
	}
	Control(scm, "uninstall", want, "")
	if out, err := Control(scm, "install", strings.ToUpper(want), ""); err != nil || strings.Contains(out, "note:") {
		t.Errorf("install from the path the rules name (another case): %q, %v", out, err)
	}
}

func TestWindowsServiceLifecycle(t *testing.T) {
	watchStart(t, 0)
	scm := &fakeSCM{}
	exe := filepath.Join(string(filepath.Separator), "Program Files", "storeedge", "storeedge.exe")
	if _, err := Control(scm, "install", exe, ""); err != nil {
		t.Fatal(err)
	}
	s := scm.spec
	if s == nil || s.Name != "storeedge" || s.Exe != exe || !slices.Equal(s.Args, []string{"service", "run", "--config", `C:\ProgramData\storeedge\storeedge.yaml`}) {
		t.Fatalf("installed %+v", s)
	}
	if len(s.RestartDelays) != 3 || s.RestartDelays[0] != 5*time.Second || s.ResetAfter != 24*time.Hour {
		t.Errorf("recovery: restart after %v, reset after %v", s.RestartDelays, s.ResetAfter)
	}
	// The machine's shutdown waits for the longest stop (the largest grace and the margin),
	// not the system's default of a few seconds.
	if s.PreshutdownTimeout != config.MaxLANShutdownGrace+StopMargin {
		t.Errorf("pre-shutdown time %v, want %v", s.PreshutdownTimeout, config.MaxLANShutdownGrace+StopMargin)
	}
	if _, err := Control(scm, "install", exe, ""); err == nil || !strings.Contains(err.Error(), "already installed") {
		t.Errorf("second install: %v", err)
	}
	// Stopping a service that is not running (install.md's upgrade starts with a stop) is done.
	if out, err := Control(scm, "stop", exe, ""); err != nil || out != "already stopped" {
		t.Errorf("stop of a stopped service: %q, %v", out, err)
	}
	Control(scm, "start", exe, "")
	if st, _ := Control(scm, "status", exe, ""); st != "running" {
		t.Errorf("status %q", st)
	}
	// Uninstalling a running service stops it first.
	if _, err := Control(scm, "uninstall", exe, ""); err != nil {
		t.Fatal(err)
	}
	if want := []string{"create", "start", "stop", "delete"}; !slices.Equal(scm.calls, want) {
		t.Errorf("calls %q, want %q", scm.calls, want)
	}
	if _, err := Control(scm, "status", exe, ""); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("status after uninstall: %v", err)
	}
	if _, err := Control(scm, "install", "storeedge.exe", ""); err == nil {
		t.Error("a relative program path was accepted")
	}
	if _, err := Control(scm, "restart-now", exe, ""); err == nil {
		t.Error("unknown action accepted")
	}
}

type fakeEvents struct{ kinds, msgs []string }

func (f *fakeEvents) Info(_ uint32, m string) error {
	f.kinds = append(f.kinds, "info")
	f.msgs = append(f.msgs, m)
	return nil
}
func (f *fakeEvents) Warning(_ uint32, m string) error {
	f.kinds = append(f.kinds, "warning")
	f.msgs = append(f.msgs, m)
	return nil
}
func (f *fakeEvents) Error(_ uint32, m string) error {
	f.kinds = append(f.kinds, "error")
	f.msgs = append(f.msgs, m)
	return nil
}

func TestEventLogHandler(t *testing.T) {
	ev := &fakeEvents{}
	log := slog.New(EventLogHandler(ev, slog.LevelInfo)).With(slog.String("server", "box-1"))
	log.Debug("not shown")
	log.Info("serving", slog.Int("port", 80))
	log.Warn("retrying")
	log.Error("needs a human")
	if !slices.Equal(ev.kinds, []string{"info", "warning", "error"}) || ev.msgs[0] != "serving server=box-1 port=80" {
		t.Fatalf("event log: %q %q", ev.kinds, ev.msgs)
	}
}

// listenNotify is systemd's end of $NOTIFY_SOCKET.
func listenNotify(t *testing.T) <-chan string {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func TestSystemdReadinessAndWatchdog(t *testing.T) {
	msgs := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "40000") // 40 ms
	n := Systemd()
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if m := <-msgs; m != "READY=1" {
		t.Fatalf("got %q, want READY=1", m)
	}
	if n.WatchdogInterval() != 40*time.Millisecond {
		t.Fatalf("watchdog interval %v", n.WatchdogInterval())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The first health check passes, every later one fails; calls says each one started.
	calls := make(chan int, 16)
	var checks int
	done := make(chan error)
	go func() {
		done <- RunWatchdog(ctx, n, func(context.Context) error {
			checks++
			calls <- checks
			if checks == 1 {
				return nil
			}
			return errors.New("the database does not answer")
		})
	}()
	if m := <-msgs; m != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", m)
	}
	// The third check starts once the second, failed one has been acted on.
	for c := range calls {
		if c == 3 {
			break
		}
	}
	cancel()
	<-done
	// Datagrams arrive in the order they were sent: anything before this marker was sent by
	// the watchdog after its one healthy check.
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	for m := range msgs {
		if m == "READY=1" {
			break
		}
		t.Errorf("the watchdog was petted while unhealthy: %q", m)
	}
}
