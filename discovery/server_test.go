package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

// These tests run on the loopback interface with unicast probes only: the server is limited to
// "lo", which has no broadcast, so it announces nowhere. Broadcast and mDNS run across network
// namespaces in netns_test.go.

func startServer(t *testing.T, change func(*Options)) (*Server, netip.AddrPort) {
	t.Helper()
	o := Options{
		Addr:       "127.0.0.1:0",
		Interfaces: []string{"lo"},
		Info:       testInfo(),
		HTTPPort:   8080,
	}
	if change != nil {
		change(&o)
	}
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return s, s.Addr().AddrPort()
}

func TestProbeGetsAnswer(t *testing.T) {
	open := true
	s, addr := startServer(t, func(o *Options) { o.PairingOpen = func() bool { return open } })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	found, err := Probe(ctx, ProbeOptions{Targets: []netip.AddrPort{addr}, First: true})
	if err != nil {
		t.Fatal(err)
	}
	want := testInfo()
	want.URL = "http://127.0.0.1:8080" // the address the probe arrived on, and the front door
	got := found[0]
	if got.ServerID != want.ServerID || got.URL != want.URL || got.Name != want.Name || got.ShopID != want.ShopID ||
		!got.PairingOpen || len(got.Ports) != len(want.Ports) || got.From != addr {
		t.Errorf("found %+v\nwant %+v from %s", got, want, addr)
	}
	// The answer is counted once sent, which may be a moment after the device has it; every
	// probe received (one, or more if Probe resent it) is answered.
	st := s.Status()
	for deadline := time.Now().Add(2 * time.Second); st.Answered < st.Received && time.Now().Before(deadline); st = s.Status() {
		time.Sleep(time.Millisecond)
	}
	if st.Answered == 0 || st.Answered != st.Received {
		t.Errorf("status %+v", st)
	}

	// lan.bind fixes the host of the URL; pairing state is read per answer.
	s2, addr2 := startServer(t, func(o *Options) { o.HTTPHost = "10.9.8.7"; o.PairingOpen = func() bool { return false } })
	found, err = Probe(ctx, ProbeOptions{Targets: []netip.AddrPort{addr2}, First: true})
	if err != nil {
		t.Fatal(err)
	}
	if found[0].URL != "http://10.9.8.7:8080" || found[0].PairingOpen {
		t.Errorf("with a bind address: %+v", found[0])
	}
	_ = s2
}

func TestProbeForAnotherShopIsIgnored(t *testing.T) {
	s, addr := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := Probe(ctx, ProbeOptions{Targets: []netip.AddrPort{addr}, ShopID: "OTHER"}); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Probe = %v, want ErrNoServer", err)
	}
	if st := s.Status(); st.Answered != 0 || st.Ignored == 0 {
		t.Errorf("status %+v", st)
	}
	if _, err := Probe(context.Background(), ProbeOptions{Targets: []netip.AddrPort{addr}, ShopID: "FR-0042", First: true}); err != nil {
		t.Errorf("probe for this shop: %v", err)
	}
}

func dial(t *testing.T, local string, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)), net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// handled is how many received datagrams have had their outcome counted.
func handled(st UDPStatus) uint64 {
	return st.Answered + st.Hellos + st.RateLimited + st.Garbage + st.Truncated + st.Undersized + st.Oversized +
		st.BadVersion + st.BadSource + st.WrongInterface + st.Ignored + st.SendErrors
}

// waitReceived waits until the server has received n datagrams and dealt with each.
func waitReceived(t *testing.T, s *Server, n uint64) UDPStatus {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		st := s.Status()
		if st.Received >= n && handled(st) == st.Received {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("server received %d datagrams, want %d", st.Received, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// endFlood sends garbage on c, again every 50 ms (the system may drop it as part of a flood),
// until the server has counted one and dealt with each datagram it received: the marker, sent
// last, marks the end of what came before it.
func endFlood(t *testing.T, s *Server, c *net.UDPConn) UDPStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for next := time.Now(); ; {
		if !time.Now().Before(next) {
			if _, err := c.Write([]byte("end of the flood")); err != nil {
				t.Fatal(err)
			}
			next = time.Now().Add(50 * time.Millisecond)
		}
		st := s.Status()
		if st.Garbage > 0 && handled(st) == st.Received {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("server counted no end of the flood: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// answers reads what the server sends back to c for a while.
func answers(c *net.UDPConn, wait time.Duration) []Datagram {
	var out []Datagram
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(wait))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return out
		}
		d, err := Decode(buf[:n])
		if err != nil {
			out = append(out, Datagram{})
			continue
		}
		out = append(out, d)
	}
}

// Garbage of every kind is dropped, counted by cause and never answered; the server keeps
// answering the valid probe that follows.
func TestBadDatagramsAreDroppedAndCounted(t *testing.T) {
	s, addr := startServer(t, nil)
	probe, _ := EncodeProbe(ProbeRequest{Nonce: [NonceSize]byte{7}})
	announce, _ := EncodeAnnounce(testInfo())
	hello, _ := EncodeHello(Hello{DeviceID: "d", PushPort: 8081})
	bad := map[string][][]byte{
		"garbage": {
			[]byte("hello"), []byte("GET / HTTP/1.1\r\n\r\n"), make([]byte, 1200),
			append([]byte("SEDP\x01\x09"), make([]byte, 1100)...),           // unknown type
			append([]byte("SEDP\x01\x01\x09\x02ab"), make([]byte, 1100)...), // bad nonce
			append(append([]byte(nil), probe[:len(probe)-1]...), 0xff),      // dirty padding
		},
		"truncated":  {[]byte("SEDP"), []byte("SED"), probe[:10], hello[:len(hello)-1]},
		"undersized": {probe[:MinProbeSize-1], probe[:64]},
		"oversized":  {append(append([]byte(nil), probe...), make([]byte, MaxDatagramSize)...), make([]byte, 9000)},
		"version":    {append([]byte("SEDP\x07\x01"), make([]byte, 1100)...)},
		"ignored":    {announce},
	}
	c := dial(t, "127.0.0.1:0", addr)
	var n uint64
	for _, list := range bad {
		for _, b := range list {
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	waitReceived(t, s, n)
	if got := answers(c, 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("server answered garbage: %d datagrams", len(got))
	}
	st := s.Status()
	for cause, got := range map[string]uint64{
		"garbage": st.Garbage, "truncated": st.Truncated, "undersized": st.Undersized,
		"oversized": st.Oversized, "version": st.BadVersion, "ignored": st.Ignored,
	} {
		if got != uint64(len(bad[cause])) {
			t.Errorf("%s counter = %d, want %d (status %+v)", cause, got, len(bad[cause]), st)
		}
	}
	if st.Answered != 0 {
		t.Errorf("answered %d", st.Answered)
	}

	if _, err := c.Write(probe); err != nil {
		t.Fatal(err)
	}
	got := answers(c, time.Second)
	if len(got) != 1 || got[0].Type != TypeAnswer || got[0].Answer.Nonce != [NonceSize]byte{7} {
		t.Fatalf("after the garbage, a valid probe got %+v", got)
	}
}

// discovery.md: a probe dropped for naming another shop has spent its source's budget, so the
// next valid probe from that source, over budget, is dropped as rate_limited.
func TestProbesForAnotherShopSpendTheBudget(t *testing.T) {
	const burst = 3
	s, addr := startServer(t, func(o *Options) { o.AnswerBurst, o.AnswerInterval = burst, time.Hour })
	other, _ := EncodeProbe(ProbeRequest{Nonce: [NonceSize]byte{1}, ShopID: "OTHER"})
	mine, _ := EncodeProbe(ProbeRequest{Nonce: [NonceSize]byte{2}})
	c := dial(t, "127.0.0.1:0", addr)
	for range burst {
		if _, err := c.Write(other); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(mine); err != nil {
		t.Fatal(err)
	}
	st := endFlood(t, s, c)
	if st.Ignored != burst || st.RateLimited != 1 || st.Answered != 0 {
		t.Errorf("ignored %d, rate_limited %d, answered %d; want %d, 1, 0", st.Ignored, st.RateLimited, st.Answered, burst)
	}
}

// A flood from one source gets at most the burst plus the rate, counted as rate_limited, while
// another source is still answered.
func TestFloodIsRateLimitedPerSource(t *testing.T) {
	const burst, interval = 5, 200 * time.Millisecond
	s, addr := startServer(t, func(o *Options) { o.AnswerBurst, o.AnswerInterval = burst, interval })
	probe, _ := EncodeProbe(ProbeRequest{Nonce: [NonceSize]byte{1}})
	flood := dial(t, "127.0.0.1:0", addr)
	const sent = 500
	start := time.Now()
	for range sent {
		if _, err := flood.Write(probe); err != nil {
			t.Fatal(err)
		}
	}
	// A garbage datagram queued after the flood tells when the server has read all of it. The
	// system may drop part of a flood before the server reads it; what matters is what the
	// server did with what it received.
	st := endFlood(t, s, flood)
	elapsed := time.Since(start)
	got := answers(flood, 300*time.Millisecond)
	allowed := burst + int(elapsed/interval) + 1
	if st.Received < sent/10 {
		t.Fatalf("server received only %d of %d probes", st.Received, sent)
	}
	if len(got) == 0 || len(got) > allowed {
		t.Errorf("flood of %d probes in %s got %d answers, want 1 to %d", st.Received-1, elapsed, len(got), allowed)
	}
	if st.RateLimited+st.Answered+st.Garbage != st.Received || st.Answered != uint64(len(got)) || st.RateLimited == 0 {
		t.Errorf("rate_limited %d + answered %d + the marker, want %d in all and %d answered", st.RateLimited, st.Answered, st.Received, len(got))
	}

	// Another device (another address) is not held back by the flood.
	other := dial(t, "127.0.0.2:0", addr)
	if _, err := other.Write(probe); err != nil {
		t.Fatal(err)
	}
	if got := answers(other, time.Second); len(got) != 1 {
		t.Errorf("another source got %d answers during the flood, want 1", len(got))
	}
}

// Probes from privileged ports (53, 123…) are not answered: that is how reflection attacks use
// a spoofed source.
func TestPrivilegedSourcePortIsNotAnswered(t *testing.T) {
	testenv.RequireRoot(t) // binding a port below 1024; fails under CI=true rather than skipping
	s, addr := startServer(t, nil)
	probe, _ := EncodeProbe(ProbeRequest{})
	var c *net.UDPConn
	for p := 1000; p > 900 && c == nil; p-- {
		if x, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}, net.UDPAddrFromAddrPort(addr)); err == nil {
			c = x
		}
	}
	if c == nil {
		t.Fatal("no free privileged port")
	}
	defer c.Close()
	c.Write(probe)
	waitReceived(t, s, 1)
	if got := answers(c, 300*time.Millisecond); len(got) != 0 || s.Status().BadSource != 1 {
		t.Errorf("answers %d, status %+v", len(got), s.Status())
	}
}

func TestHelloPutsDeviceInSeenList(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s, addr := startServer(t, func(o *Options) {
		o.AnswerBurst = 1000
		o.MaxPerSecond = 100000
		o.Now = func() time.Time { return now }
	})
	if err := SayHello(Hello{DeviceID: "tab-1", Kind: "tablet", Name: "Caisse 1", PushPort: 8081}, addr); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, s, 1)
	seen := s.Seen()
	if len(seen) != 1 || seen[0].DeviceID != "tab-1" || seen[0].PushPort != 8081 || seen[0].Addr != "127.0.0.1" ||
		seen[0].Kind != "tablet" || !seen[0].LastSeen.Equal(now) {
		t.Fatalf("seen %+v", seen)
	}

	// The list is bounded: the least recently seen go first.
	for i := range defaultMaxSeen + 20 {
		if err := SayHello(Hello{DeviceID: fmt.Sprintf("dev-%03d", i), PushPort: 8081}, addr); err != nil {
			t.Fatal(err)
		}
		if i%32 == 31 { // a pace the server keeps up with on a loaded machine
			waitReceived(t, s, uint64(i+2))
		}
	}
	st := waitReceived(t, s, defaultMaxSeen+21)
	seen = s.Seen()
	if len(seen) != defaultMaxSeen || st.Hellos != defaultMaxSeen+21 {
		t.Errorf("seen list of %d, hellos %d", len(seen), st.Hellos)
	}
	// Hellos are never answered.
	if st.Answered != 0 {
		t.Errorf("answered %d", st.Answered)
	}

	// After a day without hello a device leaves the list.
	now = now.Add(seenTTL + time.Minute)
	if seen := s.Seen(); len(seen) != 0 {
		t.Errorf("after a day: %d devices", len(seen))
	}
}

// Hellos forged by the thousand, each a new device from a new address, cost the log sixty lines
// a minute and one line counting the rest; the seen list keeps its bound.
func TestNewDevicesSeenLoggedWithinABudget(t *testing.T) {
	var logs bytes.Buffer
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s, err := NewServer(Options{Addr: "127.0.0.1:0", Interfaces: []string{"lo"}, Info: testInfo(), HTTPPort: 8080,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		s.sawHello(Hello{DeviceID: fmt.Sprintf("forged-%04d", i)}, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if n := strings.Count(logs.String(), "new device seen"); n != seenLogBudget {
		t.Errorf("%d lines for 2,000 new devices in a minute, want %d", n, seenLogBudget)
	}
	if len(s.Seen()) != defaultMaxSeen {
		t.Errorf("seen list of %d, want %d", len(s.Seen()), defaultMaxSeen)
	}
	now = now.Add(time.Minute)
	logs.Reset()
	s.sawHello(Hello{DeviceID: "tab-1"}, netip.MustParseAddr("10.0.9.1"))
	if !strings.Contains(logs.String(), "not logged in the last minute") || !strings.Contains(logs.String(), fmt.Sprintf("count=%d", 2000-seenLogBudget)) ||
		!strings.Contains(logs.String(), "device_id=tab-1") {
		t.Errorf("the minute after: %s", logs.String())
	}
}

func TestNewServerRefusesBadInfo(t *testing.T) {
	for name, o := range map[string]Options{
		"no port":   {Info: testInfo()},
		"no id":     {Info: ServerInfo{Name: "x"}, HTTPPort: 80},
		"bad ports": {Info: ServerInfo{ServerID: "x", Name: "x", Ports: []Port{{"nope", 1}}}, HTTPPort: 80},
	} {
		if _, err := NewServer(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestListenReportsPortInUse(t *testing.T) {
	_, addr := startServer(t, nil)
	s, err := NewServer(Options{Addr: addr.String(), Info: testInfo(), HTTPPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Listen()
	if err == nil || !strings.Contains(err.Error(), "discovery.udp") {
		t.Fatalf("Listen on a port in use = %v", err)
	}
}
