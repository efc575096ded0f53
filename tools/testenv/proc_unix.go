//go:build unix

package testenv

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the program in its own process group, so that
// stopping it also reaches the workers it forks (danted forks many).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends SIGTERM, or SIGKILL if kill, to the program's process
// group. Errors (typically "no such process": already gone) are ignored.
func signalGroup(cmd *exec.Cmd, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}
