package doctor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// procSocket is one line of /proc/net/{tcp,tcp6,udp,udp6}.
type procSocket struct {
	Port  int
	State int // 0x0A LISTEN for TCP, 0x07 for a bound UDP socket
	UID   int
	Inode uint64
}

// maxProcNetLines bounds what parseProcNet reads: a machine with more sockets than this is not
// a shop's server, and doctor must not spend its time there.
const maxProcNetLines = 1 << 20

// parseProcNet reads the socket table of /proc/net/tcp and friends: a header line, then
// "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …",
// addresses as hex IP ":" hex port.
func parseProcNet(r io.Reader) ([]procSocket, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	var out []procSocket
	for n := 0; sc.Scan(); n++ {
		if n == 0 {
			continue // header
		}
		if n > maxProcNetLines {
			return out, errors.New("procnet: too many sockets")
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			return out, fmt.Errorf("procnet: line %d: %d fields, want at least 10", n+1, len(f))
		}
		_, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			return out, fmt.Errorf("procnet: line %d: local address %q has no port", n+1, f[1])
		}
		port, err1 := strconv.ParseUint(portHex, 16, 16)
		state, err2 := strconv.ParseUint(f[3], 16, 8)
		uid, err3 := strconv.ParseUint(f[7], 10, 31)
		inode, err4 := strconv.ParseUint(f[9], 10, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return out, fmt.Errorf("procnet: line %d: %w", n+1, err)
		}
		out = append(out, procSocket{Port: int(port), State: int(state), UID: int(uid), Inode: inode})
	}
	return out, sc.Err()
}
