package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Proc is a running child process. Its stdout and stderr go, line by line, to a tail kept for
// error messages and to an optional hook.
type Proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time // just before exec
	done    chan struct{}
	waitErr error

	mu   sync.Mutex // protects the field below
	tail []string
}

const tailLines = 40

// children are the processes still running, killed by KillAll on exit or interrupt.
var children struct {
	sync.Mutex // protects the field below
	m          map[*Proc]struct{}
}

// Start starts bin with args, printing the command line. hook, when set, sees every output line
// with the time it was read. On Linux the child gets its own process group and SIGKILL when the
// bench dies, so nothing outlives a crashed bench.
func Start(name, bin string, args []string, env []string, hook func(line string, at time.Time)) (*Proc, error) {
	fmt.Printf("$ %s\n", ShellJoin(append([]string{bin}, args...)))
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.SysProcAttr = sysProcAttr()
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	w.Close()
	children.Lock()
	if children.m == nil {
		children.m = make(map[*Proc]struct{})
	}
	children.m[p] = struct{}{}
	children.Unlock()

	readDone := make(chan struct{})
	go p.readOutput(r, hook, readDone)
	go p.wait(readDone)
	return p, nil
}

// readOutput keeps the tail of the output and shows each line to hook, until the pipe closes.
func (p *Proc) readOutput(r io.ReadCloser, hook func(string, time.Time), readDone chan<- struct{}) {
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
}

// wait reaps the process, then closes done.
func (p *Proc) wait(readDone <-chan struct{}) {
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
}

// Name is the name the process was started with.
func (p *Proc) Name() string { return p.name }

// Started is when the process was executed.
func (p *Proc) Started() time.Time { return p.started }

// Done is closed when the process has ended and its output has been read.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// ExitCode is the exit code of an ended process (-1 while it runs or when a signal ended it).
func (p *Proc) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Tail is the last lines the process printed.
func (p *Proc) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitErr describes an unexpected end of the process, with its last output.
func (p *Proc) ExitErr() error {
	return fmt.Errorf("%s exited unexpectedly (%v); its last output:\n%s", p.name, p.waitErr, p.Tail())
}

// Wait waits until the process ends, ctx ends, or limit passes (0: no limit). It does not judge
// the exit code.
func (p *Proc) Wait(ctx context.Context, limit time.Duration) error {
	var expired <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-expired:
		return fmt.Errorf("%s did not finish within %v", p.name, limit)
	}
}

// Kill ends the process (on Linux its whole group) at once and waits for the process.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	p.killGroup()
	<-p.done
}

// Stop sends SIGTERM and waits up to grace for the process to end; it kills the process if it
// does not. It returns an error unless the process exited 0 in time.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.ExitErr()
	}
	p.terminate()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed. Its last output:\n%s", p.name, grace, p.Tail())
	}
	if code := p.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited %d after SIGTERM; its last output:\n%s", p.name, code, p.Tail())
	}
	return nil
}

// CPUSeconds is the user+system CPU time of an ended process.
func (p *Proc) CPUSeconds() float64 {
	if p.cmd.ProcessState == nil {
		return 0
	}
	return (p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()).Seconds()
}

// KillAll kills every child still running.
func KillAll() {
	children.Lock()
	ps := make([]*Proc, 0, len(children.m))
	for p := range children.m {
		ps = append(ps, p)
	}
	children.Unlock()
	for _, p := range ps {
		p.Kill()
	}
}

// ProcStatus reads one field of /proc/PID/status in kB (VmHWM: peak resident set, VmRSS).
func ProcStatus(pid int, field string) (int64, error) {
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

// ShellJoin quotes a command line so it can be pasted into a shell.
func ShellJoin(args []string) string {
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

// ProcCPU is the user+system CPU time of a running process so far, from /proc/PID/stat (in
// clock ticks of 1/100 s, as on every Linux this runs on).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces: count from after it.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime: fields 14 and 15 of the line
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
