//go:build !unix

package testenv

import "os/exec"

func setProcessGroup(cmd *exec.Cmd) {}

func signalGroup(cmd *exec.Cmd, kill bool) { _ = cmd.Process.Kill() }
