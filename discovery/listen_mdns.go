package discovery

import (
	"context"
	"fmt"
	"net"
	"syscall"
)

// listenMDNS binds UDP port on every address, sharing it with another mDNS stack of the machine
// (SO_REUSEADDR: avahi, Bonjour, or Windows' own hold it too).
func listenMDNS(port int) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = reuseAddr(fd) })
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
}
