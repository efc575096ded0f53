package doctor

import "encoding/binary"

// The tables of sockets with their owner PIDs that Windows gives (GetExtendedTcpTable and
// GetExtendedUdpTable): a row count, then rows of a fixed size whose local port is in network
// order in the low 16 bits of a field at portOff, and whose owner PID is the last field. Read
// here, not in the Windows-only file, so that the reading is tested everywhere.
type tableLayout struct{ rowSize, portOff int }

var (
	tcp4Rows = tableLayout{24, 8}  // MIB_TCPROW_OWNER_PID
	tcp6Rows = tableLayout{56, 20} // MIB_TCP6ROW_OWNER_PID: address, scope id, port…
	udp4Rows = tableLayout{12, 4}  // MIB_UDPROW_OWNER_PID
	udp6Rows = tableLayout{28, 20} // MIB_UDP6ROW_OWNER_PID
)

// Address families of the tables (ws2def.h).
const (
	afInet  = 2
	afInet6 = 23
)

// ownerTableKind is one table to ask for.
type ownerTableKind struct {
	udp    bool
	family int
	layout tableLayout
}

// ownerTables are the tables that may hold a listener on proto's port: IPv4, then IPv6.
func ownerTables(proto string) []ownerTableKind {
	if proto == "udp" {
		return []ownerTableKind{{true, afInet, udp4Rows}, {true, afInet6, udp6Rows}}
	}
	return []ownerTableKind{{false, afInet, tcp4Rows}, {false, afInet6, tcp6Rows}}
}

// ownerOfPort finds the owner PID of the row whose local port is port.
func ownerOfPort(buf []byte, l tableLayout, port int) (int, bool) {
	if len(buf) < 4 {
		return 0, false
	}
	n := int(binary.LittleEndian.Uint32(buf))
	for i := 0; i < n; i++ {
		row := 4 + i*l.rowSize
		if row+l.rowSize > len(buf) {
			break
		}
		if int(binary.BigEndian.Uint16(buf[row+l.portOff:])) == port {
			return int(binary.LittleEndian.Uint32(buf[row+l.rowSize-4:])), true
		}
	}
	return 0, false
}
