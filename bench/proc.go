//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a running child process. Its stdout and stderr go, line by line, to a tail kept for
// error messages and to an optional hook.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time // just before exec
	done    chan struct{}
	waitErr error

	mu   sync.Mutex // protects the field below
	tail []string
}

const tailLines = 40

// children are the processes still running, killed by killAll on exit or interrupt.
var children struct {
	sync.Mutex // protects the field below
	m          map[*proc]struct{}
}

// startProc starts bin with args, printing the command line. hook, when set, sees every output
// line with the time it was read. The child gets its own process group and SIGKILL when the bench
// dies, so nothing outlives a crashed bench.
func startProc(name, bin string, args []string, env []string, hook func(line string, at time.Time)) (*proc, error) {
	fmt.Printf("$ %s\n", shellJoin(append([]string{bin}, args...)))
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	w.Close()
	children.Lock()
	if children.m == nil {
		children.m = make(map[*proc]struct{})
	}
	children.m[p] = struct{}{}
	children.Unlock()

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			now := time.Now()
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > tailLines {
				p.tail = p.tail[len(p.tail)-tailLines:]
			}
			p.mu.Unlock()
			if hook != nil {
				hook(line, now)
			}
		}
	}()
	go func() {
		p.waitErr = p.cmd.Wait()
		// The output is read to its end before done closes, so the tail is complete.
		select {
		case <-readDone:
		case <-time.After(2 * time.Second): // a grandchild holds the pipe: do not wait for it
		}
		children.Lock()
		delete(children.m, p)
		children.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Tail is the last lines the process printed.
func (p *proc) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitErr describes an unexpected end of the process, with its last output.
func (p *proc) exitErr() error {
	return fmt.Errorf("%s exited unexpectedly (%v); its last output:\n%s", p.name, p.waitErr, p.Tail())
}

// kill ends the process group at once and waits for the process.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to grace for the process to end; it kills the process if it
// does not. It returns an error unless the process exited 0 in time.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return p.exitErr()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.kill()
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed. Its last output:\n%s", p.name, grace, p.Tail())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited %d after SIGTERM; its last output:\n%s", p.name, code, p.Tail())
	}
	return nil
}

// cpuSeconds is the user+system CPU time of an ended process.
func (p *proc) cpuSeconds() float64 {
	if p.cmd.ProcessState == nil {
		return 0
	}
	return (p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()).Seconds()
}

// killAll kills every child still running.
func killAll() {
	children.Lock()
	ps := make([]*proc, 0, len(children.m))
	for p := range children.m {
		ps = append(ps, p)
	}
	children.Unlock()
	for _, p := range ps {
		p.kill()
	}
}

// procStatus reads one field of /proc/PID/status in kB (VmHWM: peak resident set, VmRSS).
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			break
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// shellJoin quotes a command line so it can be pasted into a shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// errNotLoopback refuses any connection that would leave the machine.
var errNotLoopback = errors.New("bench talks to 127.0.0.1 only")

// loopbackDial dials only loopback addresses, so a mistake can never send benchmark traffic
// elsewhere.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("dial %s: %w", addr, errNotLoopback)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// newClient returns an HTTP client for loopback servers: no proxy from the environment, loopback
// only, and a bound on every request.
func newClient(timeout time.Duration, keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: authTransport{&http.Transport{
			Proxy:               nil,
			DialContext:         loopbackDial,
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 16,
			DisableCompression:  true,
		}},
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
