package doctor

import (
	"cmp"
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
)

// findHolder asks Windows which process owns the socket listening on port, IPv4 then IPv6 (a
// server listening on ":port" holds a dual-stack IPv6 socket), from GetExtendedTcpTable /
// GetExtendedUdpTable with owner PIDs, then names its program.
func findHolder(proto string, port int) (Holder, error) {
	var firstErr error
	for _, t := range ownerTables(proto) {
		buf, err := ownerTable(t)
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		if pid, ok := ownerOfPort(buf, t.layout, port); ok {
			return windowsHolder(pid, t.udp), nil
		}
	}
	return Holder{}, cmp.Or(firstErr, errHolderUnknown)
}

// ownerTable is one table of the sockets with their owner PIDs.
func ownerTable(t ownerTableKind) ([]byte, error) {
	proc, class := procGetExtendedTcpTable, uintptr(tcpTableOwnerPIDListener)
	if t.udp {
		proc, class = procGetExtendedUdpTable, udpTableOwnerPID
	}
	size := uint32(64 << 10)
	for range 3 {
		buf := make([]byte, size)
		r, _, _ := proc.Call(uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0, uintptr(t.family), class, 0)
		switch {
		case r == 0 && len(buf) >= 4:
			return buf, nil
		case r != uintptr(windows.ERROR_INSUFFICIENT_BUFFER):
			return nil, fmt.Errorf("%w: GetExtended%sTable: error %d", errHolderUnknown, map[bool]string{false: "Tcp", true: "Udp"}[t.udp], r)
		}
	}
	return nil, errHolderUnknown
}

func windowsHolder(pid int, udp bool) Holder {
	h := Holder{PID: pid, Name: fmt.Sprintf("process %d", pid)}
	switch {
	case pid == 4 && !udp:
		// The kernel's HTTP server, for IIS or a program that registered the port with it.
		h.Name = "System (HTTP.SYS; netsh http show servicestate names who registered the port)"
		return h
	case pid == 4:
		h.Name = "System (the kernel: NetBIOS or SMB)"
		return h
	}
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
