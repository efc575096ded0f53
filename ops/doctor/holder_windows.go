package doctor

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	iphlpapi                = windows.NewLazySystemDLL("iphlpapi.dll")
	procGetExtendedTcpTable = iphlpapi.NewProc("GetExtendedTcpTable")
	procGetExtendedUdpTable = iphlpapi.NewProc("GetExtendedUdpTable")
)

// Table classes of GetExtendedTcpTable and GetExtendedUdpTable (iphlpapi.h).
const (
	tcpTableOwnerPIDListener = 3
	udpTableOwnerPID         = 1
	afInet                   = 2
)

// findHolder asks Windows which process owns the IPv4 socket listening on port
// (GetExtendedTcpTable / GetExtendedUdpTable with owner PIDs), then names its program.
func findHolder(proto string, port int) (Holder, error) {
	proc, class, rowSize := procGetExtendedTcpTable, uintptr(tcpTableOwnerPIDListener), 24 // MIB_TCPROW_OWNER_PID
	if proto == "udp" {
		proc, class, rowSize = procGetExtendedUdpTable, udpTableOwnerPID, 12 // MIB_UDPROW_OWNER_PID
	}
	size := uint32(64 << 10)
	var buf []byte
	for range 3 {
		buf = make([]byte, size)
		r, _, _ := proc.Call(uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0, afInet, class, 0)
		if r == 0 {
			break
		}
		if r != uintptr(windows.ERROR_INSUFFICIENT_BUFFER) {
			return Holder{}, fmt.Errorf("%w: GetExtendedTcpTable: error %d", errHolderUnknown, r)
		}
		buf = nil
	}
	if len(buf) < 4 {
		return Holder{}, errHolderUnknown
	}
	pid, ok := ownerOfPort(buf, rowSize, port)
	if !ok {
		return Holder{}, errHolderUnknown
	}
	return windowsHolder(pid), nil
}

// ownerOfPort reads a MIB_*TABLE_OWNER_PID: a row count, then rows whose local port is at byte
// 4 (TCP: 8) in network order in the low 16 bits, and whose owner PID is the last field.
func ownerOfPort(buf []byte, rowSize, port int) (int, bool) {
	n := int(binary.LittleEndian.Uint32(buf))
	portOff := 4
	if rowSize == 24 {
		portOff = 8
	}
	for i := 0; i < n; i++ {
		row := 4 + i*rowSize
		if row+rowSize > len(buf) {
			break
		}
		p := int(binary.BigEndian.Uint16(buf[row+portOff:]))
		if p == port {
			return int(binary.LittleEndian.Uint32(buf[row+rowSize-4:])), true
		}
	}
	return 0, false
}

func windowsHolder(pid int) Holder {
	h := Holder{PID: pid, Name: fmt.Sprintf("process %d", pid)}
	ph, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return h
	}
	defer windows.CloseHandle(ph)
	name := make([]uint16, windows.MAX_PATH)
	size := uint32(len(name))
	if windows.QueryFullProcessImageName(ph, 0, &name[0], &size) == nil {
		h.Exe = windows.UTF16ToString(name[:size])
		h.Name = filepath.Base(h.Exe)
	}
	return h
}
