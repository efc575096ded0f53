package discovery

import (
	"net/netip"
	"testing"
)

func TestBroadcastAddr(t *testing.T) {
	for _, tc := range []struct {
		prefix, want string
	}{
		{"192.168.1.10/24", "192.168.1.255"},
		{"10.1.2.3/8", "10.255.255.255"},
		{"172.16.5.9/20", "172.16.15.255"},
		{"192.168.1.9/30", "192.168.1.11"},
	} {
		p := netip.MustParsePrefix(tc.prefix)
		if got := broadcastAddr(p.Addr(), p.Bits()); got.String() != tc.want {
			t.Errorf("broadcast of %s = %s, want %s", tc.prefix, got, tc.want)
		}
	}
}

// The machine's loopback is never used for announcements or mDNS, with a reason; a name not in
// the list is left out with that reason.
func TestInterfacesExplainExclusions(t *testing.T) {
	ifs, err := Interfaces([]string{"lo"})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range ifs {
		switch {
		case it.Name == "lo" && (it.Announce || it.MDNS || it.Reason != "loopback" || len(it.Broadcast) != 0):
			t.Errorf("lo: %+v", it)
		case it.Name != "lo" && (it.Announce || it.MDNS || it.Reason != "not in discovery.interfaces"):
			t.Errorf("%s: %+v", it.Name, it)
		}
	}
}
