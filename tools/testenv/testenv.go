// Package testenv starts the real external programs that tests run against
// (HTTP and SOCKS proxies, ...) and finds the tools they need. It is an
// ordinary package so any package's tests can import it; nothing outside
// tests should.
//
// Programs are Debian packages installed by scripts/install-test-deps.sh.
// When one is missing, tests skip locally and fail under CI=true, so CI cannot
// go green by skipping. Every program runs in the foreground with its config
// in t.TempDir(), on 127.0.0.1 and a free port, and is stopped by t.Cleanup.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Require returns the path of executable bin, looking in PATH and then in
// the sbin/bin directories a non-root PATH often lacks. If bin is missing the
// test is skipped, or failed when CI=true.
func Require(t testing.TB, bin string) string {
	t.Helper()
	if p, ok := findBin(bin); ok {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: %s not installed: run scripts/install-test-deps.sh", bin)
		return ""
	}
	t.Skipf("testenv: %s not installed: run scripts/install-test-deps.sh", bin)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// programs started here retry with another port if it is taken meanwhile. A
// port is never handed out twice in one test binary: the system may give the
// port it just freed to the next caller, and a daemon given one port for two
// listeners refuses to start.
func FreePort(t testing.TB) int {
	t.Helper()
	ln := listenNew(t)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// listenNew listens on 127.0.0.1 at a port the system chooses that was never handed out before.
func listenNew(t testing.TB) net.Listener {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		if claim(ln.Addr().(*net.TCPAddr).Port) {
			return ln
		}
		ln.Close()
	}
}

// claim records port as handed out, and says whether it was not before.
func claim(port int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	seen := handedOut.ports[port]
	handedOut.ports[port] = true
	return !seen
}

// ListenOutsideEphemeral listens on 127.0.0.1 at a port below the system's range of ephemeral
// ports, for a server a test stops and starts again on the same port: while it is down, a port
// of that range may be taken by any outgoing connection on the machine (another test's, say).
func ListenOutsideEphemeral(t testing.TB) net.Listener {
	t.Helper()
	low := 32768 // Linux's default start of the range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const from = 15000
	if low <= from+1000 {
		return listenNew(t) // no room below the range: a port of it, as FreePort's
	}
	for range 200 {
		port := from + rand.IntN(low-from)
		if !claim(port) {
			continue
		}
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			return ln
		}
	}
	t.Fatalf("testenv: no free port between %d and %d", from, low)
	return nil
}

// MarkTaken keeps FreePort from handing out port: the port of a program the test started on a
// port of its own choosing, which a daemon given it later would find in use, or, once the
// program is stopped, would answer in its place (a cloud stopped to test an outage, say).
func MarkTaken(port int) { claim(port) }

// PortOutsideEphemeral is a port below the range of ephemeral ports that was free a moment ago,
// for a program a test starts, stops and starts again on it (see ListenOutsideEphemeral).
func PortOutsideEphemeral(t testing.TB) int {
	t.Helper()
	ln := ListenOutsideEphemeral(t)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// handedOut are the ports FreePort returned.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// WaitListening polls addr until it accepts a TCP connection, and returns
// nil, or the last dial error once ctx ends. A connection to itself (a dial of
// a free port of the ephemeral range may get that port as its own source
// port, and the kernel then connects the socket to itself) is not a listener.
func WaitListening(ctx context.Context, addr string) error {
	const interval = 10 * time.Millisecond
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			self := c.LocalAddr().String() == c.RemoteAddr().String()
			c.Close()
			if !self {
				return nil
			}
			err = errors.New("connected to itself: nothing listens")
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s not listening: %w (last error: %v)", addr, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// startupTimeout bounds how long a program may take to listen.
const startupTimeout = 15 * time.Second

// spec describes one program to start by startProgram.
type spec struct {
	name string
	bin  string
	// args returns the command line for a program listening on port in dir,
	// writing any config it needs there.
	args func(dir string, port int) ([]string, error)
	// logFile, if set, is a log the program writes besides stdout/stderr,
	// shown when it fails.
	logFile func(dir string) string
}

// startProgram runs s on a free port and returns "127.0.0.1:port" once the
// port accepts connections. If the program exits first because the port was
// taken meanwhile, it retries on another one.
func startProgram(t testing.TB, s spec) string {
	t.Helper()
	const attempts = 3
	var lastErr error
	for i := 0; i < attempts; i++ {
		dir := t.TempDir()
		// Below the ephemeral range (where the system leaves room for it), the
		// port cannot be taken meanwhile by an outgoing connection or another
		// test's listener on port 0, which the readiness check would take for
		// the program.
		port := PortOutsideEphemeral(t)
		addr, err := runOnce(t, s, dir, port)
		if err == nil {
			return addr
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("testenv: start %s: %v", s.name, lastErr)
	return ""
}

var errPortTaken = errors.New("port taken")

func runOnce(t testing.TB, s spec, dir string, port int) (string, error) {
	args, err := s.args(dir, port)
	if err != nil {
		return "", err
	}
	out := &Buffer{}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	// A forked worker that outlives the program would keep the output pipe
	// open and Wait blocked; stop waiting for the pipe soon after the exit.
	cmd.WaitDelay = 2 * time.Second
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	report := func(what string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s (%s %s)\n--- output ---\n%s", what, s.bin, strings.Join(args, " "), out.String())
		if s.logFile != nil {
			if log, err := os.ReadFile(s.logFile(dir)); err == nil {
				fmt.Fprintf(&b, "\n--- log ---\n%s", log)
			}
		}
		return b.String()
	}

	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- WaitListening(ctx, addr) }()
	select {
	case err := <-exited:
		cancel()
		<-ready
		msg := report(fmt.Sprintf("exited before listening on %s: %v", addr, err))
		if strings.Contains(strings.ToLower(msg), "address already in use") {
			return "", fmt.Errorf("%w: %s", errPortTaken, msg)
		}
		return "", errors.New(msg)
	case err := <-ready:
		if err != nil {
			stopProcess(cmd, exited)
			return "", errors.New(report(err.Error()))
		}
	}
	t.Cleanup(func() {
		// A program that died during a failed test says why.
		select {
		case err := <-exited:
			exited <- err // for stopProcess
			if t.Failed() {
				t.Log(report(fmt.Sprintf("testenv: %s exited before the test ended: %v", s.name, err)))
			}
		default:
		}
		stopProcess(cmd, exited)
	})
	return addr, nil
}

// stopProcess asks the program (and any children in its process group) to
// stop, waits for it, and kills what is left after a grace period.
func stopProcess(cmd *exec.Cmd, exited <-chan error) {
	signalGroup(cmd, false)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		signalGroup(cmd, true)
		<-exited
	}
	// Forked workers (danted's) that outlived their parent.
	signalGroup(cmd, true)
}

// findBin finds an executable on PATH, or in the sbin and bin folders a non-root PATH may lack.
func findBin(bin string) (string, bool) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin", "/usr/local/bin"} {
		if p := filepath.Join(dir, bin); isExecutable(p) {
			return p, true
		}
	}
	return "", false
}
