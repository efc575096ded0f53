package main

import (
	"net/netip"
	"testing"
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
