package testenv

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// NetNS is one end of a pair of network namespaces that NetNSPair makes: a namespace holding
// its own loopback and one end of a veth pair.
type NetNS struct {
	Name  string       // the namespace, for `ip netns exec`
	Iface string       // its end of the veth pair
	Addr  netip.Prefix // the IPv4 address of Iface, e.g. 10.237.3.1/24
}

var netnsSeq atomic.Int32

// RequireRoot skips the test locally, or fails it under CI=true, unless it runs as root (network
// namespaces, privileged ports).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("testenv: this test needs root (network namespaces); CI runs as root")
	}
	t.Skip("testenv: this test needs root (network namespaces); it runs in CI")
}

// NetNSPair makes two network namespaces joined by a veth pair, each end up with an address in
// a /24 of its own (.1 in the first, .2 in the second), loopback up, and broadcast and multicast
// on: a small shop LAN with nothing else on it. Nothing in them reaches the machine's real
// interfaces. The namespaces (and the veth pair with them) are deleted when the test ends,
// whether it passed or not. Needs root and ip(8).
func NetNSPair(t testing.TB) (NetNS, NetNS) {
	t.Helper()
	RequireRoot(t)
	ip := Require(t, "ip")
	n := netnsSeq.Add(1)
	pid := os.Getpid() % 100000
	prefix := fmt.Sprintf("sedisc-%d-%d", pid, n)
	subnet := fmt.Sprintf("10.237.%d", (pid+int(n))%250)
	a := NetNS{Name: prefix + "-a", Iface: fmt.Sprintf("sd%da%d", pid, n), Addr: netip.MustParsePrefix(subnet + ".1/24")}
	b := NetNS{Name: prefix + "-b", Iface: fmt.Sprintf("sd%db%d", pid, n), Addr: netip.MustParsePrefix(subnet + ".2/24")}

	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("testenv: ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []NetNS{a, b} {
		run("netns", "add", ns.Name)
		name := ns.Name
		t.Cleanup(func() {
			if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
				t.Errorf("testenv: ip netns del %s: %v\n%s", name, err, out)
			}
		})
	}
	run("link", "add", a.Iface, "type", "veth", "peer", "name", b.Iface)
	for _, ns := range []NetNS{a, b} {
		run("link", "set", ns.Iface, "netns", ns.Name)
		run("-n", ns.Name, "addr", "add", ns.Addr.String(), "brd", "+", "dev", ns.Iface)
		run("-n", ns.Name, "link", "set", ns.Iface, "up", "multicast", "on")
		run("-n", ns.Name, "link", "set", "lo", "up")
	}
	return a, b
}

// Command runs name inside the namespace.
func (n NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}
