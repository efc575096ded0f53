package discovery

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/tools/testenv"
)

// The tests here run the server and the device as separate processes, each inside one of two
// network namespaces joined by a veth pair (testenv.NetNSPair): real broadcast, real multicast,
// and nothing announced on the machine's own interfaces. Each process is this test binary run
// again under `ip netns exec` with helperEnv naming what it plays.

const (
	helperEnv   = "STOREEDGE_DISCOVERY_HELPER"
	announceEnv = "STOREEDGE_DISCOVERY_ANNOUNCE" // the server's announce interval, default 1s
	listenEnv   = "STOREEDGE_DISCOVERY_LISTEN"   // how long "listen" listens, default 2.5s
	// listenReadyEnv makes "listen" print "listening" once its socket is bound.
	listenReadyEnv = "STOREEDGE_DISCOVERY_LISTEN_READY"
	// The server says "registered again" once its mDNS service is registered anew.
	reregisteredEnv = "STOREEDGE_DISCOVERY_REREGISTERED"
	// "mdns-query" sends from the address mdnsFromEnv to mdnsToEnv.
	mdnsFromEnv = "STOREEDGE_DISCOVERY_MDNS_FROM"
	mdnsToEnv   = "STOREEDGE_DISCOVERY_MDNS_TO"
	// "mdns-listen" joins the mDNS group on the interface mdnsIfaceEnv names.
	mdnsIfaceEnv = "STOREEDGE_DISCOVERY_MDNS_IFACE"
)

// mdnsPacket is one answer "mdns-listen" heard on the group: when (since it began to listen),
// and each record as "TYPE name TTL" (an A record with its address after the name).
type mdnsPacket struct {
	After   time.Duration
	Records []string
}

// mdnsReplies is what "mdns-query" saw: the bytes of its query, and the answers that came back
// within 1.5 s.
type mdnsReplies struct {
	Sent, Replies, Bytes int
}

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helper(role))
	}
	os.Exit(m.Run())
}

// helper plays one role and prints what it saw as JSON lines on stdout.
func helper(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	enc := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	switch role {
	case "server":
		info := testInfo()
		info.ServerID = "srv.netns" // a dotted id, as a host name gives one: the mDNS instance is srv-netns
		every := time.Second
		if v := os.Getenv(announceEnv); v != "" {
			every, _ = time.ParseDuration(v)
		}
		udp, err := NewServer(Options{Info: info, HTTPPort: 8080, AnnounceInterval: every, PollInterval: 200 * time.Millisecond})
		if err != nil {
			return fail(err)
		}
		if err := udp.Listen(); err != nil {
			return fail(err)
		}
		m, err := NewMDNS(MDNSOptions{Instance: InstanceName(info.ServerID), Info: info, HTTPPort: 8080, PollInterval: 200 * time.Millisecond})
		if err != nil {
			return fail(err)
		}
		done := make(chan error, 2)
		go func() { done <- udp.Run(ctx) }()
		go func() { done <- m.Run(ctx) }()
		for m.Status().State == MDNSStarting {
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Println("ready")
		if os.Getenv(reregisteredEnv) != "" {
			go func() { // tell the test when the mDNS service has been registered again
				first := m.Status().RegisteredAt
				for m.Status().RegisteredAt.Equal(first) {
					if ctx.Err() != nil {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				fmt.Println("registered again")
			}()
		}
		go func() { // tell the test when the first hello has been recorded
			for udp.Status().Hellos == 0 {
				if ctx.Err() != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			fmt.Println("hello recorded")
		}()
		for range 2 {
			if err := <-done; err != nil {
				return fail(err)
			}
		}
		enc.Encode(struct {
			UDP  UDPStatus
			MDNS MDNSStatus
			Seen []SeenDevice
		}{udp.Status(), m.Status(), udp.Seen()})
		return 0
	case "probe", "browse":
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var found []Found
		var err error
		if role == "probe" {
			found, err = Probe(ctx, ProbeOptions{First: true})
		} else {
			found, err = Browse(ctx, BrowseOptions{First: true})
		}
		if err != nil {
			return fail(err)
		}
		enc.Encode(found[0])
		return 0
	case "listen":
		listen := 2500 * time.Millisecond
		if v := os.Getenv(listenEnv); v != "" {
			listen, _ = time.ParseDuration(v)
		}
		ctx, cancel := context.WithTimeout(ctx, listen)
		defer cancel()
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: config.DefaultDiscoveryUDPPort})
		if err != nil {
			return fail(err)
		}
		if os.Getenv(listenReadyEnv) != "" {
			fmt.Println("listening")
		}
		if err := readAnnouncements(ctx, c, func(f Found) { enc.Encode(f) }); err != nil {
			return fail(err)
		}
		return 0
	case "mdns-query":
		// One query of 60 questions asking for unicast answers (the QU bit), from port 5353.
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(os.Getenv(mdnsFromEnv)), Port: 5353})
		if err != nil {
			return fail(err)
		}
		defer c.Close()
		var q dns.Msg
		for range 60 {
			q.Question = append(q.Question, dns.Question{Name: ServiceType + ".local.", Qtype: dns.TypePTR, Qclass: dns.ClassINET | 0x8000})
		}
		b, err := q.Pack()
		if err != nil {
			return fail(err)
		}
		if _, err := c.WriteTo(b, &net.UDPAddr{IP: net.ParseIP(os.Getenv(mdnsToEnv)), Port: 5353}); err != nil {
			return fail(err)
		}
		seen := mdnsReplies{Sent: len(b)}
		buf := make([]byte, 9000)
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			var m dns.Msg
			if m.Unpack(buf[:n]) == nil && m.Response {
				seen.Replies++
				seen.Bytes += n
			}
		}
		enc.Encode(seen)
		return 0
	case "mdns-listen":
		// Every mDNS answer multicast on the link, until stopped.
		ifi, err := net.InterfaceByName(os.Getenv(mdnsIfaceEnv))
		if err != nil {
			return fail(err)
		}
		c, err := net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353})
		if err != nil {
			return fail(err)
		}
		go func() { <-ctx.Done(); c.Close() }()
		fmt.Println("listening")
		start := time.Now()
		buf := make([]byte, 9000)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return 0
			}
			var m dns.Msg
			if m.Unpack(buf[:n]) != nil || !m.Response {
				continue
			}
			p := mdnsPacket{After: time.Since(start)}
			for _, rr := range append(m.Answer, m.Extra...) {
				h := rr.Header()
				name := h.Name
				if a, ok := rr.(*dns.A); ok {
					name += " " + a.A.String()
				}
				p.Records = append(p.Records, fmt.Sprintf("%s %s %d", dns.TypeToString[h.Rrtype], name, h.Ttl))
			}
			enc.Encode(p)
		}
	case "hello":
		if err := SayHello(Hello{DeviceID: "tab-netns", Kind: "tablet", Name: "Caisse", PushPort: 8081}); err != nil {
			return fail(err)
		}
		return 0
	}
	return fail(fmt.Errorf("unknown role"))
}

// process is a helper running in a namespace.
type process struct {
	cmd    *exec.Cmd
	out    *bufio.Scanner
	stderr *testenv.Buffer
}

func startHelper(t *testing.T, ns testenv.NetNS, role string, env ...string) *process {
	t.Helper()
	cmd := ns.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+role), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, out: bufio.NewScanner(stdout), stderr: &testenv.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// line reads the helper's next line of output.
func (p *process) line(t *testing.T) string {
	t.Helper()
	got := make(chan bool, 1)
	go func() { got <- p.out.Scan() }()
	select {
	case ok := <-got:
		if !ok {
			t.Fatalf("helper %s ended: %v\n%s", p.cmd.Args, p.out.Err(), p.stderr)
		}
		return p.out.Text()
	case <-time.After(15 * time.Second):
		t.Fatalf("helper %s printed nothing for 15s\n%s", p.cmd.Args, p.stderr)
		return ""
	}
}

// runHelper runs a device role to the end and decodes each line it printed.
func runHelper[T any](t *testing.T, ns testenv.NetNS, role string, env ...string) []T {
	t.Helper()
	cmd := ns.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+role), env...)
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", role, ns.Name, err, stderr.String())
	}
	var all []T
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var v T
		if err := dec.Decode(&v); err == io.EOF {
			return all
		} else if err != nil {
			t.Fatalf("%s: %v in %q", role, err, out)
		}
		all = append(all, v)
	}
}

// A device in another namespace finds the server by UDP probe and by mDNS within 2 s, receives
// its periodic announcements, and its hello lands in the seen list; at stop the server withdraws
// cleanly.
func TestDeviceFindsServerAcrossNamespaces(t *testing.T) {
	srvNS, devNS := testenv.NetNSPair(t)
	srv := startHelper(t, srvNS, "server")
	if l := srv.line(t); l != "ready" {
		t.Fatalf("server: %q", l)
	}
	wantURL := "http://" + srvNS.Addr.Addr().String() + ":8080"

	byProbe := runHelper[Found](t, devNS, "probe")
	if len(byProbe) != 1 || byProbe[0].ServerID != "srv.netns" || byProbe[0].URL != wantURL ||
		byProbe[0].From.Addr() != srvNS.Addr.Addr() || byProbe[0].After > 2*time.Second {
		t.Errorf("by probe: %+v, want %s within 2s", byProbe, wantURL)
	}

	byMDNS := runHelper[Found](t, devNS, "browse")
	if len(byMDNS) != 1 || byMDNS[0].ServerID != "srv.netns" || byMDNS[0].URL != wantURL || byMDNS[0].ShopID != "FR-0042" ||
		byMDNS[0].Name != testInfo().Name || byMDNS[0].PairingOpen != testInfo().PairingOpen || len(byMDNS[0].Ports) != 7 ||
		byMDNS[0].After > 2*time.Second {
		t.Errorf("by mDNS: %+v, want %s within 2s", byMDNS, wantURL)
	}

	// Announcements every second: at least two in 2.5 s.
	heard := runHelper[Found](t, devNS, "listen")
	if len(heard) < 2 {
		t.Errorf("heard %d announcements in 2.5s, want at least 2", len(heard))
	}
	for _, f := range heard {
		if f.ServerID != "srv.netns" || f.URL != wantURL {
			t.Errorf("announcement %+v", f)
		}
	}

	runHelper[struct{}](t, devNS, "hello")
	if l := srv.line(t); l != "hello recorded" {
		t.Fatalf("server: %q", l)
	}

	srv.cmd.Process.Signal(syscall.SIGTERM)
	var final struct {
		UDP  UDPStatus
		MDNS MDNSStatus
		Seen []SeenDevice
	}
	if err := json.Unmarshal([]byte(srv.line(t)), &final); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("server exit: %v\n%s", err, srv.stderr)
	}
	if len(final.Seen) != 1 || final.Seen[0].DeviceID != "tab-netns" || final.Seen[0].Addr != devNS.Addr.Addr().String() || final.Seen[0].PushPort != 8081 {
		t.Errorf("seen %+v", final.Seen)
	}
	if final.UDP.Answered == 0 || final.UDP.Announced < 2 || final.UDP.Garbage != 0 ||
		len(final.UDP.Interfaces) != 1 || final.UDP.Interfaces[0] != srvNS.Iface {
		t.Errorf("UDP status %+v", final.UDP)
	}
	if final.MDNS.State != MDNSRegistered || len(final.MDNS.Interfaces) != 1 || final.MDNS.Interfaces[0] != srvNS.Iface {
		t.Errorf("mDNS status %+v", final.MDNS)
	}
}

// When an address is added to the server's interface, an announcement for it goes out at the
// next interface poll, without waiting for the (here hour-long) announce interval, and the mDNS
// service is registered again.
func TestAnnouncesWhenAddressesChange(t *testing.T) {
	srvNS, devNS := testenv.NetNSPair(t)
	srv := startHelper(t, srvNS, "server", announceEnv+"=1h", reregisteredEnv+"=1")
	if l := srv.line(t); l != "ready" {
		t.Fatalf("server: %q", l)
	}
	dev := startHelper(t, devNS, "listen", listenEnv+"=4s", listenReadyEnv+"=1")
	if l := dev.line(t); l != "listening" {
		t.Fatalf("device: %q", l)
	}
	added := netip.MustParsePrefix(strings.TrimSuffix(srvNS.Addr.String(), ".1/24") + ".10/24")
	changed := time.Now()
	if out, err := exec.Command("ip", "-n", srvNS.Name, "addr", "add", added.String(), "dev", srvNS.Iface).CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v\n%s", err, out)
	}
	var f Found
	if err := json.Unmarshal([]byte(dev.line(t)), &f); err != nil {
		t.Fatal(err)
	}
	if wait := time.Since(changed); wait > 2*time.Second || f.ServerID != "srv.netns" {
		t.Errorf("announcement %+v %s after the change", f, wait)
	}
	urls := map[string]bool{f.URL: true}
	if err := json.Unmarshal([]byte(dev.line(t)), &f); err == nil {
		urls[f.URL] = true
	}
	if !urls["http://"+added.Addr().String()+":8080"] {
		t.Errorf("announcements after the change carry %v, want one for %s", urls, added.Addr())
	}

	// The mDNS service is registered again after the change; its registration may end after
	// the UDP announcements went out.
	if l := srv.line(t); l != "registered again" {
		t.Fatalf("server: %q, want the mDNS service registered again", l)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	var final struct{ MDNS MDNSStatus }
	if err := json.Unmarshal([]byte(srv.line(t)), &final); err != nil {
		t.Fatal(err)
	}
	if !final.MDNS.RegisteredAt.After(changed) {
		t.Errorf("mDNS registered at %s, not again after the change at %s", final.MDNS.RegisteredAt, changed)
	}
}

// The mDNS service is announced twice, a second apart, with every record of the service and the
// server's address on the link; at stop a goodbye withdraws the same records (TTL 0), so that a
// device's cache forgets them at once (discovery.md).
func TestMDNSAnnouncesTwiceAndSaysGoodbye(t *testing.T) {
	srvNS, devNS := testenv.NetNSPair(t)
	dev := startHelper(t, devNS, "mdns-listen", mdnsIfaceEnv+"="+devNS.Iface)
	if l := dev.line(t); l != "listening" {
		t.Fatalf("device: %q", l)
	}
	srv := startHelper(t, srvNS, "server")
	if l := srv.line(t); l != "ready" {
		t.Fatalf("server: %q", l)
	}
	const host = "srv-netns.local."
	instance := "srv-netns." + ServiceType + ".local."
	// The records, with the TTL of the host's (SRV, A) and of the others.
	records := func(hostTTL, otherTTL string) []string {
		return []string{
			"PTR " + ServiceType + ".local. " + otherTTL,
			"PTR " + servicesName + " " + otherTTL,
			"SRV " + instance + " " + hostTTL,
			"TXT " + instance + " " + otherTTL,
			"A " + host + " " + srvNS.Addr.Addr().String() + " " + hostTTL,
		}
	}
	next := func() mdnsPacket {
		var p mdnsPacket
		if err := json.Unmarshal([]byte(dev.line(t)), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	announced := records("120", "4500")
	first, second := next(), next()
	for i, p := range []mdnsPacket{first, second} {
		if !slices.Equal(p.Records, announced) {
			t.Errorf("announcement %d: %q, want %q", i+1, p.Records, announced)
		}
	}
	if gap := second.After - first.After; gap < 900*time.Millisecond || gap > 3*time.Second {
		t.Errorf("the announcements came %v apart, want a second", gap)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if bye := next(); !slices.Equal(bye.Records, records("0", "0")) {
		t.Errorf("at stop: %q, want the goodbye %q", bye.Records, records("0", "0"))
	}
}

// The mDNS responder is no amplifier: a query of 60 questions from a source beyond the link (an
// address the server routes to, as a forged source would be) gets nothing, and the same query
// from the link gets one answer, smaller than the query.
func TestMDNSIsNoAmplifier(t *testing.T) {
	srvNS, devNS := testenv.NetNSPair(t)
	srv := startHelper(t, srvNS, "server")
	if l := srv.line(t); l != "ready" {
		t.Fatalf("server: %q", l)
	}
	const far = "192.0.2.5"
	for _, args := range [][]string{
		{"-n", devNS.Name, "addr", "add", far + "/32", "dev", devNS.Iface},
		{"-n", srvNS.Name, "route", "add", far + "/32", "dev", srvNS.Iface},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	to := mdnsToEnv + "=" + srvNS.Addr.Addr().String()
	off := runHelper[mdnsReplies](t, devNS, "mdns-query", mdnsFromEnv+"="+far, to)
	if len(off) != 1 || off[0].Replies != 0 {
		t.Errorf("a query from %s, off the link: %+v, want no answer", far, off)
	}
	on := runHelper[mdnsReplies](t, devNS, "mdns-query", mdnsFromEnv+"="+devNS.Addr.Addr().String(), to)
	if len(on) != 1 || on[0].Replies != 1 || on[0].Bytes > on[0].Sent {
		t.Errorf("a query of 60 questions from the link: %+v, want one answer no larger than the query", on)
	}
}

// A real, independent mDNS implementation (avahi, with its own daemon on a private D-Bus, in the
// device's namespace) sees the service and its TXT records.
func TestAvahiSeesService(t *testing.T) {
	srvNS, devNS := testenv.NetNSPair(t)
	dbus := testenv.Require(t, "dbus-daemon")
	avahi := testenv.Require(t, "avahi-daemon")
	browse := testenv.Require(t, "avahi-browse")

	srv := startHelper(t, srvNS, "server")
	if l := srv.line(t); l != "ready" {
		t.Fatalf("server: %q", l)
	}

	bus := startAvahi(t, devNS, dbus, avahi)
	var lines []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", devNS.Name, browse, "-rtp", ServiceType)
		cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+bus)
		out, _ := cmd.CombinedOutput() // what it printed is what counts
		cancel()
		lines = nil
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "=;") && strings.Contains(l, ";IPv4;") {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 || time.Now().After(deadline) {
			if len(lines) == 0 {
				t.Fatalf("avahi-browse found no resolved %s service:\n%s", ServiceType, out)
			}
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	// =;iface;IPv4;instance;type;domain;host;address;port;"txt" "txt"…
	f := strings.SplitN(lines[0], ";", 10)
	if len(f) < 10 {
		t.Fatalf("avahi-browse line %q", lines[0])
	}
	if f[3] != "srv-netns" || f[4] != ServiceType || f[7] != srvNS.Addr.Addr().String() || f[8] != "8080" {
		t.Errorf("avahi sees %q", lines[0])
	}
	for _, want := range []string{`"txtvers=1"`, `"id=srv.netns"`, `"shop=FR-0042"`, `"pairing=open"`, `"scheme=http"`,
		`"ports=front_door=80,catalog=8000,media=8001,orders=8002,devices=8003,events=8004,admin=8005"`, `"version=1.4.0"`} {
		if !strings.Contains(f[9], want) {
			t.Errorf("TXT records lack %s: %s", want, f[9])
		}
	}
}

// startAvahi runs a D-Bus system bus and avahi-daemon (browsing only, on the namespace's veth)
// in ns, and returns the bus address.
func startAvahi(t *testing.T, ns testenv.NetNS, dbus, avahi string) string {
	t.Helper()
	unshare := testenv.Require(t, "unshare")
	dir := t.TempDir()
	sock := filepath.Join(dir, "bus")
	busConf := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=` + sock + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
`
	avahiConf := "[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=" + ns.Iface + "\nenable-dbus=yes\n" +
		"[wide-area]\nenable-wide-area=no\n[publish]\ndisable-publishing=yes\n"
	for name, text := range map[string]string{"bus.conf": busConf, "avahi.conf": avahiConf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := func(name string, cmd *exec.Cmd) *testenv.Buffer {
		out := &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
		return out
	}
	start("dbus-daemon", ns.Command(dbus, "--config-file="+filepath.Join(dir, "bus.conf"), "--nofork", "--nopidfile"))
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 200 {
			t.Fatal("dbus-daemon did not create its socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	bus := "unix:path=" + sock
	// avahi-daemon keeps its pid file and socket in /run/avahi-daemon, one per machine: a
	// private mount namespace with a tmpfs there lets test runs (of several checkouts, say) run
	// their avahi side by side.
	cmd := ns.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mkdir -p /run/avahi-daemon && mount -t tmpfs tmpfs /run/avahi-daemon && exec "$0" "$@"`,
		avahi, "-f", filepath.Join(dir, "avahi.conf"), "--no-drop-root", "--no-chroot", "--no-rlimits", "--no-proc-title")
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+bus)
	log := start("avahi-daemon", cmd)
	if !log.WaitFor("Server startup complete", 5*time.Second, nil) {
		t.Fatalf("avahi-daemon did not start:\n%s", log)
	}
	return bus
}
