package doctor

import (
	"encoding/binary"
	"testing"
)

// A table laid out as Windows gives it (MIB_*TABLE_OWNER_PID) is read for the owner of a port,
// IPv4 and IPv6, TCP and UDP; a row cut short, or a count beyond the buffer, is not read.
func TestOwnerOfPort(t *testing.T) {
	// The layouts as iphlpapi.h gives them, written out here rather than taken from the code:
	// the row's size, where its local port is, where its owner PID is.
	for name, w := range map[string]struct {
		l                   tableLayout
		size, portAt, pidAt int
	}{
		"tcp4": {tcp4Rows, 24, 8, 20},  // state, local addr, local port, remote addr, remote port, pid
		"tcp6": {tcp6Rows, 56, 20, 52}, // local addr[16], scope, port, remote addr[16], scope, port, state, pid
		"udp4": {udp4Rows, 12, 4, 8},   // local addr, local port, pid
		"udp6": {udp6Rows, 28, 20, 24}, // local addr[16], scope, port, pid
	} {
		l := w.l
		buf := binary.LittleEndian.AppendUint32(nil, 3) // three rows announced, two given
		for _, r := range []struct{ port, pid int }{{8080, 111}, {80, 4242}} {
			row := make([]byte, w.size)
			binary.BigEndian.PutUint16(row[w.portAt:], uint16(r.port))
			binary.LittleEndian.PutUint32(row[w.pidAt:], uint32(r.pid))
			buf = append(buf, row...)
		}
		if pid, ok := ownerOfPort(buf, l, 80); !ok || pid != 4242 {
			t.Errorf("%s: port 80 owned by %d (%v), want 4242", name, pid, ok)
		}
		if _, ok := ownerOfPort(buf, l, 443); ok {
			t.Errorf("%s: port 443 found in a table without it", name)
		}
		if _, ok := ownerOfPort(buf[:len(buf)-1], l, 80); ok {
			t.Errorf("%s: a row cut short was read", name)
		}
	}
	if len(ownerTables("tcp")) != 2 || ownerTables("udp")[1].family != afInet6 {
		t.Error("both families are not asked")
	}
}
