package main

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/tools/testenv"
)

// The address discovery gives devices is lan.bind's when it names one: in the UDP answer's URL,
// and alone in mDNS's A records when it is IPv4 (discovery.md).
func TestBoundHost(t *testing.T) {
	for _, c := range []struct {
		bind, host, v4 string
	}{
		{"", "", ""},
		{"0.0.0.0", "", ""},
		{"::", "", ""},
		{"192.168.1.10", "192.168.1.10", "192.168.1.10"},
		{"::ffff:192.168.1.10", "192.168.1.10", "192.168.1.10"}, // IPv4 written as IPv6: given to devices as IPv4
		{"fd00::10", "fd00::10", ""},
		{"::ffff:0.0.0.0", "", ""},
	} {
		host, v4 := boundHost(c.bind)
		want := netip.Addr{}
		if c.v4 != "" {
			want = netip.MustParseAddr(c.v4)
		}
		if host != c.host || v4 != want {
			t.Errorf("lan.bind %q: host %q, A record %v; want %q, %v", c.bind, host, v4, c.host, want)
		}
	}
}

// With lan.bind an IPv6 address the daemon registers no mDNS service, and says so at start
// (discovery.md).
func TestNoMDNSWhenBoundToIPv6(t *testing.T) {
	cfg := config.Default()
	cfg.LAN.Bind, cfg.ServerID = "fd00::10", "srv-test"
	cfg.Discovery.UDP.Enabled = false // the mDNS part alone, without binding the discovery port
	var logs testenv.Buffer
	d, err := newDiscovery(cfg, map[string]string{"front_door": "[fd00::10]:80"}, func() bool { return false }, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if d == nil || d.mdns != nil || !strings.Contains(logs.String(), `msg="discovery: mDNS off"`) {
		t.Errorf("mDNS with an IPv6 lan.bind: registered %v, log:\n%s", d != nil && d.mdns != nil, logs.String())
	}
}

// A name in discovery.interfaces that the machine does not have (misspelt) is said at start.
func TestMissingInterfaceWarned(t *testing.T) {
	cfg := config.Default()
	cfg.LAN.Bind, cfg.ServerID = "fd00::10", "srv-test"
	cfg.Discovery.UDP.Enabled = false // no socket: mDNS alone, off with this bind
	cfg.Discovery.Interfaces = []string{"lo", "eht0-missing"}
	var logs testenv.Buffer
	if _, err := newDiscovery(cfg, map[string]string{"front_door": "[fd00::10]:80"}, func() bool { return false }, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="discovery: discovery.interfaces names interfaces this machine does not have; discovery uses them once they appear" missing=[eht0-missing]`) {
		t.Errorf("log:\n%s", logs.String())
	}
	logs = testenv.Buffer{}
	cfg.Discovery.Interfaces = []string{"lo"}
	if _, err := newDiscovery(cfg, map[string]string{"front_door": "[fd00::10]:80"}, func() bool { return false }, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "does not have") {
		t.Errorf("a name the machine has was warned of:\n%s", logs.String())
	}
}

// storeedge discovery's table says yes under ANNOUNCE and MDNS only where that part of
// discovery runs: an interface able to carry mDNS shows no when discovery.mdns.enabled is false.
func TestDiscoveryTableFollowsTheConfiguration(t *testing.T) {
	eth0 := discovery.Interface{Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.1.10/24")},
		Broadcast: []netip.Addr{netip.MustParseAddr("192.168.1.255")}, Announce: true, MDNS: true}
	for _, c := range []struct {
		name          string
		udp, mdns     bool
		bind          string
		announce, reg string
	}{
		{"both_on", true, true, "", "yes", "yes"},
		{"mdns_off", true, false, "", "yes", "no"},
		{"udp_off", false, true, "", "no", "yes"},
		{"loopback_bind", true, true, "127.0.0.1", "no", "no"}, // discovery does not run
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Discovery.UDP.Enabled, cfg.Discovery.MDNS.Enabled, cfg.LAN.Bind = c.udp, c.mdns, c.bind
			var out strings.Builder
			announce, mdnsIfs := printInterfaces(&out, cfg, []discovery.Interface{eth0})
			row := strings.Fields(strings.Split(out.String(), "\n")[1])
			if len(row) < 5 || row[3] != c.announce || row[4] != c.reg {
				t.Errorf("table:\n%s\nwant ANNOUNCE %s, MDNS %s", out.String(), c.announce, c.reg)
			}
			if (len(announce) == 1) != (c.announce == "yes") || (len(mdnsIfs) == 1) != (c.reg == "yes") {
				t.Errorf("announce on %v, mDNS on %v", announce, mdnsIfs)
			}
			// The first line says each part on or off as the table does.
			want := map[string]string{"yes": "on", "no": "off"}
			head := discoveryHeader(cfg)
			if !strings.Contains(head, "UDP port 57854 ("+want[c.announce]+")") || !strings.Contains(head, "._tcp ("+want[c.reg]+")") {
				t.Errorf("header %q, want UDP %s, mDNS %s", head, want[c.announce], want[c.reg])
			}
		})
	}
}
