package testenv

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process identifies a local process.
type Process struct {
	PID  int
	Name string // /proc/PID/comm: the executable's name, at most 15 bytes
}

// SocketOwner returns the process owning the local end of the TCP connection
// whose local address is addr, such as r.RemoteAddr inside an HTTP handler.
// Tests use it to prove that a connection came from a proxy process and not
// from the test binary itself. Call it while the connection is open (inside
// the handler). Linux only; other systems return an error.
func SocketOwner(addr string) (Process, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return Process{}, fmt.Errorf("socket owner: %w", err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	inode, err := socketInode(ap)
	if err != nil {
		return Process{}, fmt.Errorf("socket owner of %s: %w", addr, err)
	}
	want := "socket:[" + inode + "]"
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range pids {
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || link != want {
				continue
			}
			pid, _ := strconv.Atoi(filepath.Base(dir))
			comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
			return Process{PID: pid, Name: strings.TrimSpace(string(comm))}, nil
		}
	}
	return Process{}, fmt.Errorf("socket owner of %s: no process holds socket inode %s", addr, inode)
}

// socketInode finds the inode of the non-listening TCP socket bound locally
// to ap in /proc/net/tcp or /proc/net/tcp6.
func socketInode(ap netip.AddrPort) (string, error) {
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] == "0A" { // 0A: LISTEN
				continue
			}
			local, err := parseProcAddr(fields[1])
			if err != nil || local != ap {
				continue
			}
			if fields[9] == "0" { // TIME_WAIT and such: no owner any more
				continue
			}
			f.Close()
			return fields[9], nil
		}
		f.Close()
	}
	return "", fmt.Errorf("no open TCP socket with that local address")
}

// parseProcAddr decodes /proc/net/tcp{,6}'s "0100007F:1F90": the address as
// 32-bit words in host byte order (little-endian on the machines we run),
// then the port in hex. IPv4-mapped IPv6 addresses are unmapped.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(hexIP)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for w := 0; w < len(raw); w += 4 {
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}
