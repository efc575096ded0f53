package discovery

import "syscall"

// reuseAddr sets SO_REUSEADDR on a socket.
func reuseAddr(fd uintptr) error {
	return syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
}
