package discovery

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testResponder is a responder without sockets, serving one interface (index 1) on
// 10.9.0.1/24, for handle.
func testResponder() *responder {
	it := Interface{Name: "lan0", Index: 1, Addrs: []netip.Prefix{netip.MustParsePrefix("10.9.0.1/24")}, MDNS: true,
		iface: net.Interface{Index: 1, Name: "lan0"}}
	return &responder{
		service: ServiceType + ".local.", instance: "srv-test." + ServiceType + ".local.", host: "srv-test.local.",
		mport: mdnsPort, port: 80, txt: escapeTXT(TXT(testInfo(), "http")), ifaces: map[int]Interface{1: it},
		unicast: newLimiter(unicastEvery, unicastBurst, unicastSources, unicastPerSec), last: map[string]time.Time{},
	}
}

func query(qu bool, names ...string) []byte {
	m := new(dns.Msg)
	for _, n := range names {
		q := dns.Question{Name: n, Qtype: dns.TypePTR, Qclass: dns.ClassINET}
		if qu {
			q.Qclass |= 0x8000
		}
		m.Question = append(m.Question, q)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

var (
	onLink5353  = netip.MustParseAddrPort("10.9.0.2:5353")
	offLink5353 = netip.MustParseAddrPort("192.0.2.5:5353")
)

// A query from beyond the local link, or on an interface not served, gets nothing; one from the
// link gets one answer, whatever the number of its questions, with the service's records.
func TestResponderAnswersTheLinkOnlyAndOnce(t *testing.T) {
	r := testResponder()
	now := time.Now()
	many := make([]string, 60)
	for i := range many {
		many[i] = ServiceType + ".local."
	}
	if m, _, _ := r.handle(query(true, many...), 1, offLink5353, now); m != nil {
		t.Errorf("a query from 192.0.2.5 (off the link) was answered: %v", m)
	}
	if m, _, _ := r.handle(query(true, many...), 1, netip.MustParseAddrPort("10.9.0.255:5353"), now); m != nil {
		t.Errorf("a query from the link's broadcast address (forged: its answer would go to every host) was answered: %v", m)
	}
	if m, _, _ := r.handle(query(true, many...), 2, onLink5353, now); m != nil {
		t.Errorf("a query on an interface not served was answered: %v", m)
	}
	m, idx, unicast := r.handle(query(true, append(many, servicesName)...), 1, onLink5353, now)
	if m == nil || idx != 1 || !unicast {
		t.Fatalf("the link's QU query: %v on %d, unicast %v", m, idx, unicast)
	}
	var ptr, services, srv, txt, a int
	for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
		switch x := rr.(type) {
		case *dns.PTR:
			if x.Hdr.Name == servicesName {
				services++
			} else if x.Ptr == r.instance {
				ptr++
			}
		case *dns.SRV:
			srv++
			if x.Port != 80 || x.Target != "srv-test.local." {
				t.Errorf("SRV %v", x)
			}
		case *dns.TXT:
			txt++
		case *dns.A:
			a++
			if !x.A.Equal(net.IPv4(10, 9, 0, 1)) {
				t.Errorf("A %v", x)
			}
		}
	}
	if ptr != 1 || services != 1 || srv != 1 || txt != 1 || a != 1 {
		t.Errorf("one answer holds PTR %d, services %d, SRV %d, TXT %d, A %d; want each once:\n%v", ptr, services, srv, txt, a, m)
	}
}

// With the front door listening on one address (lan.bind), the A records give that address only,
// not the interface's others, on which nothing answers (configuration.md, discovery.md).
func TestResponderGivesTheBoundAddressOnly(t *testing.T) {
	r := testResponder()
	it := r.ifaces[1]
	it.Addrs = append(it.Addrs, netip.MustParsePrefix("10.9.0.7/24"))
	r.ifaces[1] = it
	if got := r.addrs(1, hostTTL); len(got) != 2 {
		t.Fatalf("A records without a bound address: %v, want both of the interface's", got)
	}
	r.hostAddr = netip.MustParseAddr("10.9.0.7")
	got := r.addrs(1, hostTTL)
	if len(got) != 1 || !got[0].(*dns.A).A.Equal(net.IPv4(10, 9, 0, 7)) {
		t.Fatalf("A records with lan.bind 10.9.0.7: %v", got)
	}
}

// A record is multicast on an interface once a second at most, however the questions are
// asked; unicast answers to one source are rate-limited; a querier that lists the answer as known
// gets none.
func TestResponderLimits(t *testing.T) {
	r := testResponder()
	now := time.Now()
	q := query(false, ServiceType+".local.")
	if m, _, unicast := r.handle(q, 1, onLink5353, now); m == nil || unicast {
		t.Fatalf("first QM query: %v, unicast %v", m, unicast)
	}
	if m, _, _ := r.handle(q, 1, onLink5353, now.Add(500*time.Millisecond)); m != nil {
		t.Error("the same records were multicast twice within a second")
	}
	if m, _, _ := r.handle(query(false, servicesName, ServiceType+".local."), 1, onLink5353, now.Add(600*time.Millisecond)); m == nil ||
		len(m.Answer) != 1 || m.Answer[0].Header().Name != servicesName {
		t.Errorf("other questions with the PTR among them: %v, want the services PTR alone", m)
	}
	for i := range 100 { // other questions in turn: each record once
		any := new(dns.Msg)
		any.Question = []dns.Question{{Name: r.instance, Qtype: dns.TypeANY, Qclass: dns.ClassINET}}
		if i%2 == 1 {
			any.Question[0] = dns.Question{Name: r.host, Qtype: dns.TypeA, Qclass: dns.ClassINET}
		}
		b, _ := any.Pack()
		m, _, _ := r.handle(b, 1, onLink5353, now.Add(700*time.Millisecond))
		if (i < 2) != (m != nil) {
			t.Fatalf("query %d: %v", i, m)
		}
	}
	if m, _, _ := r.handle(q, 1, onLink5353, now.Add(1100*time.Millisecond)); m == nil {
		t.Error("not multicast again after a second")
	}
	answered := 0
	for range 50 {
		if m, _, _ := r.handle(query(true, ServiceType+".local."), 1, onLink5353, now); m != nil {
			answered++
		}
	}
	if answered != unicastBurst {
		t.Errorf("%d unicast answers to 50 queries from one source at once, want %d", answered, unicastBurst)
	}
	known := new(dns.Msg)
	known.Question = []dns.Question{{Name: ServiceType + ".local.", Qtype: dns.TypePTR, Qclass: dns.ClassINET}}
	known.Answer = []dns.RR{r.ptr(otherTTL)}
	b, _ := known.Pack()
	if m, _, _ := r.handle(b, 1, netip.MustParseAddrPort("10.9.0.3:5353"), now.Add(time.Hour)); m != nil {
		t.Errorf("an answer the querier knows was sent: %v", m)
	}
}

// The known-answer list holds records without the cache-flush bit (RFC 6762 §10.2), which the
// server's own records (SRV, TXT, A, NSEC) carry: a record the querier lists as known is left
// out all the same, and one it does not list is given. The TXT holds the shop's name in UTF-8,
// which a querier reads back escaped.
func TestResponderLeavesOutKnownRecordsOfItsOwn(t *testing.T) {
	r := testResponder()
	for i, c := range []struct {
		known      dns.RR
		left, kept uint16
	}{{r.srv(hostTTL), dns.TypeSRV, dns.TypeTXT}, {r.txtRR(otherTTL), dns.TypeTXT, dns.TypeSRV}} {
		q := new(dns.Msg)
		q.Question = []dns.Question{{Name: r.instance, Qtype: dns.TypeANY, Qclass: dns.ClassINET}}
		c.known.Header().Class = dns.ClassINET
		q.Answer = []dns.RR{c.known}
		b, _ := q.Pack()
		m, _, _ := r.handle(b, 1, onLink5353, time.Now().Add(time.Duration(i)*time.Hour))
		if m == nil {
			t.Fatalf("%s known: no answer at all", dns.TypeToString[c.left])
		}
		types := map[uint16]bool{}
		for _, a := range m.Answer {
			types[a.Header().Rrtype] = true
		}
		if types[c.left] || !types[c.kept] {
			t.Errorf("%s known: answered %v, want the %s alone of the two", dns.TypeToString[c.left], m.Answer, dns.TypeToString[c.kept])
		}
	}
}

// A legacy query (from a port other than 5353: a plain DNS client) is answered by unicast with
// its id and question, TTLs of at most 10 s and no cache-flush bit.
func TestResponderLegacyQuery(t *testing.T) {
	r := testResponder()
	q := new(dns.Msg)
	q.Id = 4242
	q.Question = []dns.Question{{Name: "SRV-TEST." + ServiceType + ".local.", Qtype: dns.TypeANY, Qclass: dns.ClassINET}}
	b, _ := q.Pack()
	m, _, unicast := r.handle(b, 1, netip.MustParseAddrPort("10.9.0.2:40000"), time.Now())
	if m == nil || !unicast || m.Id != 4242 || len(m.Question) != 1 {
		t.Fatalf("legacy query: %v, unicast %v", m, unicast)
	}
	if len(m.Answer) != 2 {
		t.Errorf("ANY for the instance (asked in capitals): %d answers, want SRV and TXT", len(m.Answer))
	}
	for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
		if h := rr.Header(); h.Ttl > legacyTTL || h.Class&0x8000 != 0 {
			t.Errorf("legacy answer record %v", rr)
		}
	}
	if r.srv(hostTTL).Header().Ttl != hostTTL {
		t.Error("the legacy answer changed the records of the next one")
	}
}

// A question for the host's IPv6 address is told at once that there is none.
func TestResponderSaysThereIsNoIPv6(t *testing.T) {
	r := testResponder()
	q := new(dns.Msg)
	q.Question = []dns.Question{{Name: "SRV-TEST.local.", Qtype: dns.TypeAAAA, Qclass: dns.ClassINET | 0x8000}}
	b, _ := q.Pack()
	m, _, _ := r.handle(b, 1, onLink5353, time.Now())
	if m == nil || len(m.Answer) != 1 {
		t.Fatalf("AAAA: %v", m)
	}
	if n, ok := m.Answer[0].(*dns.NSEC); !ok || len(n.TypeBitMap) != 1 || n.TypeBitMap[0] != dns.TypeA {
		t.Errorf("AAAA answered %v, want an NSEC naming A alone", m.Answer[0])
	}
	// The A records of a browse come with the NSEC, so that no AAAA question is needed.
	m, _, _ = r.handle(query(true, ServiceType+".local."), 1, onLink5353, time.Now())
	if m == nil || !slices.ContainsFunc(m.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeNSEC }) {
		t.Errorf("a browse's answer without the NSEC beside its A records: %v", m)
	}
	// A plain DNS client gets no NSEC: its AAAA question has no answer.
	if m, _, _ := r.handle(b, 1, netip.MustParseAddrPort("10.9.0.2:40000"), time.Now()); m != nil {
		t.Errorf("a legacy AAAA question was answered: %v", m)
	}
}

// An instance label is written so that the DNS library reads it back: spaces and the library's
// syntax escaped.
func TestResponderEscapesTheInstance(t *testing.T) {
	for _, id := range []string{"shop 12", "a$b", "caisse-(1)", "x;y@z", `back\slash`} {
		r := testResponder()
		r.instance = escapeLabel(id) + "." + ServiceType + ".local."
		q := new(dns.Msg)
		q.Question = []dns.Question{{Name: r.instance, Qtype: dns.TypeSRV, Qclass: dns.ClassINET | 0x8000}}
		b, err := q.Pack()
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		var back dns.Msg
		if err := back.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if m, _, _ := r.handle(b, 1, onLink5353, time.Now()); m == nil {
			t.Errorf("%q: no answer for its SRV (asked as %q)", id, back.Question[0].Name)
		}
	}
}

// Packets that are not queries, or not ours, get nothing.
func TestResponderIgnores(t *testing.T) {
	r := testResponder()
	resp := new(dns.Msg)
	resp.Response = true
	resp.Question = []dns.Question{{Name: ServiceType + ".local.", Qtype: dns.TypePTR, Qclass: dns.ClassINET}}
	rb, _ := resp.Pack()
	legacy5 := query(false, ServiceType+".local.", ServiceType+".local.", ServiceType+".local.", ServiceType+".local.", ServiceType+".local.")
	for name, p := range map[string][]byte{
		"garbage":       []byte("GET / HTTP/1.1\r\n\r\n"),
		"empty":         {},
		"a response":    rb,
		"another name":  query(true, "_printer._tcp.local."),
		"no question":   query(true),
		"cut":           query(true, ServiceType+".local.")[:20],
		"other service": query(true, "_http._tcp.local."),
	} {
		if m, _, _ := r.handle(p, 1, onLink5353, time.Now()); m != nil {
			t.Errorf("%s was answered: %v", name, m)
		}
	}
	// A legacy query repeats its questions in its answer: one of more than 4 is not answered.
	if m, _, _ := r.handle(legacy5, 1, netip.MustParseAddrPort("10.9.0.2:40000"), time.Now()); m != nil {
		t.Errorf("a legacy query of 5 questions was answered: %v", m)
	}
}

// FuzzResponderHandle feeds arbitrary packets, as anyone on the link may send them: never a
// panic, never an answer to a source off the link, never one that does not pack, and never an
// answer larger than a standard Ethernet frame.
func FuzzResponderHandle(f *testing.F) {
	f.Add(query(true, ServiceType+".local.", servicesName), []byte{10, 9, 0, 2}, uint16(5353))
	f.Add(query(false, "srv-test."+ServiceType+".local."), []byte{192, 0, 2, 5}, uint16(5353))
	f.Add([]byte("\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\xff\x00\x01"), []byte{10, 9, 0, 7}, uint16(40000))
	f.Fuzz(func(t *testing.T, packet, ip []byte, port uint16) {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		r := testResponder()
		m, _, _ := r.handle(packet, 1, netip.AddrPortFrom(addr, port), time.Now())
		if m == nil {
			return
		}
		if !netip.MustParsePrefix("10.9.0.0/24").Contains(addr.Unmap()) {
			t.Fatalf("answered %s, off the link", addr)
		}
		m.Compress = true
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v", err)
		}
		if len(b) > 1500 {
			t.Fatalf("answer of %d bytes", len(b))
		}
	})
}

// An address that is the broadcast address of any of an interface's networks is not on its link,
// whatever the order of the networks.
func TestOnLinkRefusesABroadcastAddressOfAnyNetwork(t *testing.T) {
	wide, narrow := netip.MustParsePrefix("10.9.0.1/16"), netip.MustParsePrefix("10.9.0.2/24")
	for _, addrs := range [][]netip.Prefix{{wide, narrow}, {narrow, wide}} {
		it := Interface{Addrs: addrs}
		if onLink(it, netip.MustParseAddr("10.9.0.255")) {
			t.Errorf("%v: 10.9.0.255, the /24's broadcast address, is on the link", addrs)
		}
		if !onLink(it, netip.MustParseAddr("10.9.1.255")) || !onLink(it, netip.MustParseAddr("10.9.0.7")) {
			t.Errorf("%v: a host's address is not on the link", addrs)
		}
	}
}
