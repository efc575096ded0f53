//go:build !linux

package testenv

import "errors"

// Process identifies a local process.
type Process struct {
	PID  int
	Name string
}

// SocketOwner is implemented on Linux only.
func SocketOwner(addr string) (Process, error) {
	return Process{}, errors.New("socket owner: only implemented on Linux")
}
