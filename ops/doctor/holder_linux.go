package doctor

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// findHolder finds the process listening on port: the socket's inode from /proc/net, then the
// process with a file descriptor on that socket (readable for other users' processes by root
// only).
func findHolder(proto string, port int) (Holder, error) {
	want := 0x0A // TCP LISTEN
	if proto == "udp" {
		want = 0x07
	}
	inodes := map[uint64]int{} // inode → uid
	for _, file := range []string{proto, proto + "6"} {
		f, err := os.Open(filepath.Join("/proc/net", file))
		if err != nil {
			continue
		}
		socks, _ := parseProcNet(f)
		f.Close()
		for _, s := range socks {
			if s.Port == port && s.State == want && s.Inode != 0 {
				inodes[s.Inode] = s.UID
			}
		}
	}
	if len(inodes) == 0 {
		return Holder{}, errHolderUnknown
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(p, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(p, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			inode, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err == nil {
				if _, ok := inodes[inode]; ok {
					return processHolder(pid), nil
				}
			}
		}
	}
	for _, uid := range inodes {
		var h Holder
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			h.Account = u.Username
		}
		return h, fmt.Errorf("%w: a process of user id %d holds it", errHolderUnknown, uid)
	}
	return Holder{}, errHolderUnknown
}

func processHolder(pid int) Holder {
	h := Holder{PID: pid}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
		h.Name = strings.TrimSpace(string(comm))
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		h.Exe = exe
		if h.Name == "" || len(h.Name) == 15 { // comm is cut at 15 characters
			h.Name = filepath.Base(exe)
		}
	}
	return h
}
