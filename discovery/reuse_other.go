//go:build !windows

package discovery

import "syscall"

// reuseAddr sets SO_REUSEADDR on a socket.
func reuseAddr(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
}
