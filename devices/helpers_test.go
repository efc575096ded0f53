package devices_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const enrollment = "test-enrollment-secret-0123"

var epoch = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// env is a running Manager over a real database, with simulated devices on loopback.
type env struct {
	db    *storage.DB
	m     *devices.Manager
	clock *testenv.Clock
	logs  *testenv.Buffer
	ctx   context.Context

	mu      sync.Mutex // protects the field below
	changed chan struct{}
}

func newEnv(t *testing.T, opts ...func(*devices.Options)) *env {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, clock: testenv.NewClock(epoch), logs: &testenv.Buffer{}, changed: make(chan struct{})}
	o := devices.Options{
		DB: db, ServerID: "srv-test", EnrollmentSecret: enrollment, Now: e.clock.Now,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, Timeout: 5 * time.Second,
		Logger:    slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Committed: func([]storage.CommandUpdate) { e.notify() },
	}
	for _, f := range opts {
		f(&o)
	}
	e.m, err = devices.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- e.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		db.Close()
	})
	return e
}

func (e *env) notify() {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

func (e *env) wait() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

// waitState waits until the command reaches state; each stored batch of states is the signal.
func (e *env) waitState(t *testing.T, id, state string) storage.Command {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		ch := e.wait()
		c, err := e.db.GetCommand(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == state {
			return c
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("command %s is %s (%s), want %s\n%s", id, c.State, c.Reason, state, e.logs)
		}
	}
}

// pair pairs a device that listens at addr ("host:port").
func (e *env) pair(t *testing.T, addr string, caps ...string) devices.Credentials {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	c, err := e.m.Pair(context.Background(), devices.PairRequest{EnrollmentSecret: enrollment, Kind: "tablet", PushPort: p, Capabilities: caps}, host)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sim is a simulated device that the test runs and stops.
type sim struct {
	*devicesim.Device
	creds  devices.Credentials
	cancel context.CancelFunc
	done   chan error
}

// device pairs a simulated device and starts it.
func (e *env) device(t *testing.T, o devicesim.Options, caps ...string) *sim {
	t.Helper()
	o.Heartbeat = -1
	o.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	d := devicesim.New(o)
	addr, err := d.Listen()
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{Device: d, creds: e.pair(t, addr, caps...)}
	d.SetCredentials(s.creds.DeviceID, s.creds.Secret)
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *sim) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.Run(ctx) }()
}

// stop takes the device away: its listener and connections close.
func (s *sim) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel = nil
}

// waitCommands waits until the device has done n commands.
func (s *sim) waitCommands(t *testing.T, n int) []devicesim.Command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitFor(ctx, func(d *devicesim.Device) bool { return len(d.Commands()) >= n }); err != nil {
		t.Fatalf("device has %d commands, want %d: %v", len(s.Commands()), n, err)
	}
	return s.Commands()
}
