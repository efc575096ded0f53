package main

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

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
