package doctor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/dirlock"
	"github.com/storeedge/storeedge/server"
)

// Holder is a process that holds a port.
type Holder struct {
	PID  int
	Name string // the program, e.g. "nginx"
	Exe  string // its path, when known
	// Account is the user name the socket belongs to, when the process itself cannot be named
	// (its PID, Name and Exe are then empty).
	Account string
}

func (h Holder) String() string {
	s := fmt.Sprintf("%s (pid %d", h.Name, h.PID)
	if h.Exe != "" {
		s += ", " + h.Exe
	}
	return s + ")"
}

// IsStoreedge tells the running storeedge service from another program.
func (h Holder) IsStoreedge() bool {
	return strings.EqualFold(h.Name, "storeedge") || strings.EqualFold(h.Name, "storeedge.exe")
}

// errHolderUnknown: the system does not say, or not to this user, which process holds a port.
var errHolderUnknown = errors.New("which process holds it cannot be told here")

// portHolder finds the process listening on port (proto "tcp" or "udp"); set per system.
var portHolder = findHolder

// checkPorts binds each LAN port for a moment: free, held by the running storeedge, or held by
// another program, named.
// serviceUser, when not "", is the service's account: a port held by a process of it that
// cannot be looked into is the running service's.
func checkPorts(cfg config.Config, serviceUser string) []Result {
	var out []Result
	svc := dataDirHolder(cfg.DataDir)
	for _, ln := range cfg.LAN.Listeners() {
		out = append(out, checkPort("tcp", cfg.LAN.Bind, ln.Port, ln.Key, serviceUser, svc))
	}
	if cfg.Discovery.UDP.Enabled && cfg.DiscoveryOff() == "" { // as the server opens it
		out = append(out, checkPort("udp", "", cfg.Discovery.UDP.Port, "discovery.udp.port", serviceUser, svc))
	}
	return out
}

// dataDirHolder is the process id of the storeedge that holds, or last held, dataDir, read from
// its lock file; 0 when it cannot be told: no lock file, or one written on another host or in
// another PID namespace (a container, whose process ids are not this system's, even with the
// host's network and name), or by a version that did not say its namespace.
func dataDirHolder(dataDir string) int {
	o, err := dirlock.LastOwner(dataDir)
	if err != nil {
		return 0
	}
	if host, _ := os.Hostname(); o.Host == "" || o.Host != host || o.PIDNamespace != dirlock.PIDNamespace() {
		return 0
	}
	return o.PID
}

// checkPort binds port for a moment. svc, when not 0, is the process id of the storeedge of this
// configuration's data_dir: a port held by another storeedge (a demo, a server of another
// data_dir) keeps the service from starting as any other program does.
func checkPort(proto, bind string, port int, key, serviceUser string, svc int) Result {
	addr := net.JoinHostPort(bind, strconv.Itoa(port))
	check := fmt.Sprintf("%s %d (%s)", proto, port, key)
	var err error
	if proto == "tcp" {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			ln.Close()
		}
	} else {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp4", addr); err == nil {
			pc.Close()
		}
	}
	if err == nil {
		return pass("lan", check, "free: the service can listen on it")
	}
	explained := server.ExplainListenError(key, addr, port, err)
	if !isAddrInUse(err) {
		// Unix alone: on Windows Geteuid is -1 for everyone, and a refused port is a reserved one
		// (the fix below says how to see the reserved ranges).
		if isPermission(err) && port < 1024 && runtime.GOOS != "windows" && os.Geteuid() != 0 {
			return warn("lan", check, "this account may not listen on it: "+explained.Err.Error(), "run doctor as root to check it; the service itself needs CAP_NET_BIND_SERVICE, which the systemd unit gives")
		}
		return fail("lan", check, explained.Err.Error(), explained.Fix)
	}
	h, herr := portHolder(proto, port)
	switch {
	case herr == nil && h.IsStoreedge() && svc != 0 && h.PID != svc:
		return fail("lan", check, fmt.Sprintf("held by another storeedge: %s, not the one of this data_dir (pid %d holds or last held it)", h, svc),
			fmt.Sprintf("stop that storeedge (a demo, or a server of another data_dir) or move it to another port, or change %s", key))
	case herr == nil && h.IsStoreedge():
		return pass("lan", check, "in use by the running storeedge service: "+h.String())
	case herr == nil:
		return fail("lan", check, "held by another program: "+h.String(), fmt.Sprintf("stop %s or move it to another port, or change %s", h.Name, key))
	case serviceUser != "" && h.Account == serviceUser:
		// A process of the service's account whose descriptors this user may not read: the
		// running service, whose binary's file capability (setcap, the container image) makes
		// it unreadable even to its own account.
		return pass("lan", check, "in use by a process of the "+serviceUser+" account: the running service")
	}
	return fail("lan", check, fmt.Sprintf("held by another program; %v (run doctor as root/administrator to name it)", herr), explained.Fix)
}

func isAddrInUse(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == syscall.EADDRINUSE || errno == 10048) // WSAEADDRINUSE
}

func isPermission(err error) bool {
	var errno syscall.Errno
	return errors.Is(err, os.ErrPermission) || errors.As(err, &errno) && (errno == syscall.EACCES || errno == 10013)
}

// checkInterfaces shows the interfaces discovery announces on, as storeedge discovery does.
func checkInterfaces(cfg config.Config) []Result {
	const check = "discovery interfaces"
	if !cfg.Discovery.UDP.Enabled && !cfg.Discovery.MDNS.Enabled {
		return nil
	}
	if ip, err := netip.ParseAddr(cfg.LAN.Bind); err == nil && ip.IsLoopback() {
		return []Result{warn("lan", check, "lan.bind is a loopback address: devices on the LAN cannot reach the server", "set lan.bind to this machine's LAN address, or \"\" for every interface")}
	}
	ifs, err := discovery.Interfaces(cfg.Discovery.Interfaces)
	if err != nil {
		return []Result{fail("lan", check, "cannot list the network interfaces: "+err.Error(), "run storeedge discovery for details")}
	}
	var used, left []string
	for _, it := range ifs {
		if it.Announce || it.MDNS {
			var addrs []string
			for _, a := range it.Addrs {
				addrs = append(addrs, a.String())
			}
			used = append(used, it.Name+" "+strings.Join(addrs, ","))
		} else if it.Reason != "loopback" {
			left = append(left, it.Name+": "+it.Reason)
		}
	}
	if len(used) == 0 {
		return []Result{warn("lan", check, "no interface for discovery: "+strings.Join(left, "; "),
			"devices then need the server's address typed in: connect the machine to the shop's network, or fix discovery.interfaces (storeedge discovery shows why each interface is left out)")}
	}
	detail := "announcing on " + strings.Join(used, "; ")
	if len(left) > 0 {
		detail += " (not on " + strings.Join(left, "; ") + ")"
	}
	return []Result{pass("lan", check, detail)}
}
