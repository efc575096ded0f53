package main

import (
	"net/netip"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
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
		{"::ffff:192.168.1.10", "::ffff:192.168.1.10", "192.168.1.10"},
		{"fd00::10", "fd00::10", ""},
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

// With lan.bind an IPv6 address, mDNS stays off: its A records would name IPv4 addresses the
// server does not listen on (discovery.md).
func TestMDNSOffWhenBoundToIPv6(t *testing.T) {
	for bind, off := range map[string]bool{"": false, "0.0.0.0": false, "::": false, "192.168.1.10": false,
		"::ffff:192.168.1.10": false, "fd00::10": true, "2001:db8::1": true} {
		cfg := config.Default()
		cfg.LAN.Bind = bind
		if why := mdnsOff(cfg); (why != "") != off {
			t.Errorf("lan.bind %q: mDNS off for %q, want off %v", bind, why, off)
		}
	}
	cfg := config.Default()
	cfg.Discovery.MDNS.Enabled = false
	if mdnsOff(cfg) == "" {
		t.Error("mDNS on with discovery.mdns.enabled false")
	}
}
