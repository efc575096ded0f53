//go:build !linux

package harness

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// The benchmarks are measured on Linux (process groups, /proc, the page cache); elsewhere the
// bench builds, and its children are plain processes.

func sysProcAttr() *syscall.SysProcAttr { return nil }

func (p *Proc) killGroup() { _ = p.cmd.Process.Kill() }

func (p *Proc) terminate() { _ = p.cmd.Process.Signal(os.Interrupt) }

// ProcessCPU is not measured outside Linux: 0.
func ProcessCPU() time.Duration { return 0 }

// DropPageCache needs Linux's /proc/sys/vm/drop_caches.
func DropPageCache() error { return errors.New("-cold: dropping the page cache needs Linux") }

// SyncDisks does nothing outside Linux.
func SyncDisks() {}
