package discovery

import (
	"context"
	"fmt"
	"net"
	"syscall"
)

// listenMDNS binds UDP port on every address, sharing it with another mDNS stack of the machine
// (SO_REUSEADDR).
func listenMDNS(port int) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
}
