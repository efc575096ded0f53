//go:build linux

package harness

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// sysProcAttr puts a child in its own process group, so that Kill reaches its children too, and
// has the kernel kill it when the bench dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the child's process group.
func (p *Proc) killGroup() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// terminate asks the child to stop.
func (p *Proc) terminate() { _ = p.cmd.Process.Signal(syscall.SIGTERM) }

// ProcessCPU is the user+system CPU time this process has used.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// DropPageCache empties the OS page cache, so that a start reads the database from disk as after
// a reboot. It needs root and slows everything else on the machine for a moment.
func DropPageCache() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("-cold: drop the page cache: %w (it needs root)", err)
	}
	return nil
}

// SyncDisks writes every dirty page of the machine to disk (sync(2)) and returns once written.
func SyncDisks() { syscall.Sync() }
