package discovery

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// listeningServer is a server on 127.0.0.1 limited to lo, its interfaces read, its socket open,
// not running: the test hands it datagrams itself.
func listeningServer(t *testing.T) *Server {
	t.Helper()
	s, err := NewServer(Options{Addr: "127.0.0.1:0", Interfaces: []string{"lo"}, Info: testInfo(), HTTPPort: 8080})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ln.Close() })
	s.refresh()
	return s
}

// A probe whose source is forged to a broadcast, multicast or unspecified address would have
// its answer go to every host of a subnet or group: it gets none, and is counted as bad_source.
// The same probe from an ordinary address is answered, so the victim below would have seen it.
func TestForgedBroadcastSourceIsNotAnswered(t *testing.T) {
	s := listeningServer(t)
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{}) // the wildcard: broadcasts reach it
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	port := uint16(victim.LocalAddr().(*net.UDPAddr).Port)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	cm := &ipv4.ControlMessage{IfIndex: lo.Index, Dst: net.IPv4(127, 0, 0, 1)}
	probe, _ := EncodeProbe(ProbeRequest{Nonce: [8]byte{9}})
	for _, src := range []string{"127.255.255.255", "255.255.255.255", "0.0.0.0", "224.0.0.251", "239.255.255.250"} {
		before := s.Status()
		s.handle(probe, cm, netip.AddrPortFrom(netip.MustParseAddr(src), port))
		after := s.Status()
		if after.Answered != before.Answered || after.BadSource != before.BadSource+1 {
			t.Errorf("probe from %s: answered %d → %d, bad_source %d → %d", src, before.Answered, after.Answered, before.BadSource, after.BadSource)
		}
	}
	if got := answers(victim, 300*time.Millisecond); len(got) != 0 {
		t.Errorf("forged sources: %d answers reached a host that sent nothing", len(got))
	}
	s.handle(probe, cm, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	if got := answers(victim, time.Second); len(got) != 1 || got[0].Type != TypeAnswer {
		t.Errorf("a probe from 127.0.0.1: %d answers, want 1", len(got))
	}
}

// An interface holding a /32 (a virtual address) before its /24 announces the /24's address on
// the /24's broadcast, and the /32 nowhere: each announcement names an address of the subnet it
// goes to.
func TestAnnounceEachAddressToItsOwnSubnet(t *testing.T) {
	s := listeningServer(t)
	port := s.ln.LocalAddr().(*net.UDPAddr).Port
	listener, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 255, 255, 255), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	s.mu.Lock()
	s.ifaces = []Interface{{Name: "eth0", Announce: true,
		Addrs:     []netip.Prefix{netip.MustParsePrefix("10.99.0.5/32"), netip.MustParsePrefix("127.0.0.1/8")},
		Broadcast: []netip.Addr{netip.MustParseAddr("127.255.255.255")}}}
	s.mu.Unlock()
	s.announce(map[string]bool{})
	got := answers(listener, 300*time.Millisecond)
	if len(got) != 1 || got[0].Type != TypeAnnounce || !strings.Contains(got[0].Announce.URL, "//127.0.0.1:") {
		t.Errorf("announcements on 127.255.255.255: %+v, want one naming 127.0.0.1", got)
	}
}
