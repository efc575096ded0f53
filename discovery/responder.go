package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// The responder below is the server's side of mDNS (RFC 6762) and DNS-SD (RFC 6763), on IPv4:
// it announces one service instance, answers the questions about it and says goodbye. It is
// written here rather than taken from a library because the server must not be an amplifier
// (docs/discovery.md): the library used before (grandcat/zeroconf, which has no maintained
// successor) answered every question of a query with a packet of its own, to any source
// address, so that a forged query of 1.6 KB from anywhere drew 20 KB towards its victim. The
// DNS messages are still read and written by github.com/miekg/dns. This one
//   - answers only a source on the local link: one in a network of the interface the query came
//     in on (RFC 6762 §11), so a query from beyond a router, or forged to look so, gets nothing;
//   - answers a query with one packet, whatever the number of its questions;
//   - multicasts the answer about a set of records at most once a second on an interface
//     (RFC 6762 §6), and answers each source by unicast within a rate limit;
//   - gives each interface the addresses it has, not those of the machine's other networks.
// Browsing (Browse) still uses the library's client.

// The mDNS port and group.
const mdnsPort = 5353

var mdnsGroup = netip.MustParseAddr("224.0.0.251")

// TTLs of the records, as RFC 6762 §10 recommends: 120 s for the records that name a host or its
// addresses (SRV, A), 75 minutes for the others (PTR, TXT); legacyTTL caps them in an answer to a
// legacy unicast query (§6.7).
const (
	hostTTL   = 120
	otherTTL  = 4500
	legacyTTL = 10
)

// maxMDNSPacket is the largest mDNS packet read (RFC 6762 §17); a longer one is cut and dropped.
const maxMDNSPacket = 9000

// Limits of the answers: one multicast answer about a set of records per second per interface;
// unicast answers on average one a second per source, in bursts of 5, at most 100 a second in
// all.
const (
	multicastEvery = time.Second
	unicastEvery   = time.Second
	unicastBurst   = 5
	unicastSources = 1024
	unicastPerSec  = 100
)

// maxLegacyQuestions bounds the questions of a legacy query answered, whose answer repeats them.
const maxLegacyQuestions = 4

// announceEvery is the wait between the announcements of a registration (RFC 6762 §8.3: at
// least two, one second apart).
const announceEvery = time.Second

// servicesName is the DNS-SD meta-query that lists the service types of a network.
const servicesName = "_services._dns-sd._udp.local."

// responderOptions configure a responder.
type responderOptions struct {
	Instance string      // the instance label: InstanceName of the server id
	Port     int         // the SRV port
	Host     netip.Addr  // the A records' one address; invalid: each interface's own
	TXT      []string    // the TXT strings in the DNS library's presentation form
	Ifaces   []Interface // the interfaces to serve, with their IPv4 networks
	Logger   *slog.Logger
	// MDNSPort is the UDP port of the responder and of the group, 5353; tests may change it.
	MDNSPort int
}

// responder serves one service instance until Shutdown.
type responder struct {
	log      *slog.Logger
	conn     *ipv4.PacketConn
	mport    int // the mDNS port: a query from another one is a legacy query
	group    *net.UDPAddr
	service  string     // _storeedge._tcp.local.
	instance string     // <instance>._storeedge._tcp.local.
	host     string     // <host>.local.
	hostAddr netip.Addr // the only address of the A records, when valid
	port     uint16
	txt      []string
	ifaces   map[int]Interface // by index: those it joined the group on
	unicast  *limiter
	// joinErr says on which of the interfaces asked for it could not join the group, and why.
	joinErr error

	mu   sync.Mutex // protects last
	last map[string]time.Time

	// sendMu orders the writes (answers, announcements, goodbyes); noCM tells that the system
	// gives no control messages (Windows): the interface of a query is then the one whose
	// network holds its source, and a write picks the interface with SetMulticastInterface.
	sendMu sync.Mutex
	noCM   bool
	closed bool // under sendMu: the goodbyes are sent, nothing more is

	stop chan struct{}
	wg   sync.WaitGroup
}

// newResponder joins the mDNS group on each interface, starts answering and announces the
// service (twice, a second apart).
func newResponder(o responderOptions) (*responder, error) {
	if o.MDNSPort == 0 {
		o.MDNSPort = mdnsPort
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &responder{
		log:      o.Logger,
		mport:    o.MDNSPort,
		group:    &net.UDPAddr{IP: mdnsGroup.AsSlice(), Port: o.MDNSPort},
		service:  ServiceType + ".local.",
		instance: escapeLabel(o.Instance) + "." + ServiceType + ".local.",
		host:     escapeLabel(o.Instance) + ".local.",
		hostAddr: o.Host,
		port:     uint16(o.Port),
		txt:      o.TXT,
		ifaces:   map[int]Interface{},
		unicast:  newLimiter(unicastEvery, unicastBurst, unicastSources, unicastPerSec),
		last:     map[string]time.Time{},
		stop:     make(chan struct{}),
	}
	pc, err := listenMDNS(o.MDNSPort)
	if err != nil {
		return nil, fmt.Errorf("mDNS: listen on UDP %d: %w", o.MDNSPort, err)
	}
	c := ipv4.NewPacketConn(pc)
	fail := func(err error) (*responder, error) {
		c.Close()
		return nil, err
	}
	r.noCM = c.SetControlMessage(ipv4.FlagInterface, true) != nil
	// RFC 6762 §11: every mDNS packet goes out with TTL 255, so a receiver can tell it did not
	// cross a router. Looped back, so that tools on this machine find the service too.
	c.SetMulticastTTL(255)
	c.SetTTL(255)
	c.SetMulticastLoopback(true)
	var joinErrs []error
	for _, it := range o.Ifaces {
		if err := c.JoinGroup(&it.iface, &net.UDPAddr{IP: mdnsGroup.AsSlice()}); err != nil {
			joinErrs = append(joinErrs, fmt.Errorf("%s: %w", it.Name, err))
			continue
		}
		r.ifaces[it.iface.Index] = it
	}
	if len(r.ifaces) == 0 {
		return fail(fmt.Errorf("mDNS: joined the group on no interface: %w", errors.Join(joinErrs...)))
	}
	if len(joinErrs) > 0 {
		r.joinErr = fmt.Errorf("mDNS: cannot join the group on %w", errors.Join(joinErrs...))
	}
	r.conn = c
	r.wg.Add(2)
	go r.serve()
	go r.announce()
	return r, nil
}

// Shutdown says goodbye (the records with TTL 0) on every interface and stops.
func (r *responder) Shutdown() {
	r.sendMu.Lock()
	for idx := range r.ifaces {
		r.sendLocked(r.records(idx, 0), idx, nil)
	}
	r.closed = true // no answer or announcement after the goodbye
	r.sendMu.Unlock()
	close(r.stop)
	r.conn.Close()
	r.wg.Wait()
}

// announce sends the records on every interface, twice, a second apart, unless stopped.
func (r *responder) announce() {
	defer r.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for range 2 {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		for idx := range r.ifaces {
			r.send(r.records(idx, 1), idx, nil)
		}
		t.Reset(announceEvery)
	}
}

// serve reads queries until the socket closes.
func (r *responder) serve() {
	defer r.wg.Done()
	buf := make([]byte, maxMDNSPacket+1)
	for {
		n, cm, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-r.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n > maxMDNSPacket {
			continue
		}
		ifIndex := 0 // unknown: the interface whose network holds the source
		if cm != nil {
			ifIndex = cm.IfIndex
		}
		src, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		addr, ok := netip.AddrFromSlice(src.IP)
		if !ok {
			continue
		}
		reply, idx, unicast := r.handle(buf[:n], ifIndex, netip.AddrPortFrom(addr.Unmap(), uint16(src.Port)), time.Now())
		if reply == nil {
			continue
		}
		if unicast {
			r.send(reply, idx, src)
		} else {
			r.send(reply, idx, nil)
		}
	}
}

// handle reads one packet that came in on the interface ifIndex (0: unknown) from src, and
// returns the answer to send on the interface idx, to src when unicast, else to the group; nil
// when there is none to send.
func (r *responder) handle(packet []byte, ifIndex int, src netip.AddrPort, now time.Time) (reply *dns.Msg, idx int, unicast bool) {
	if ifIndex == 0 {
		for i, it := range r.ifaces {
			if onLink(it, src.Addr()) {
				ifIndex = i
				break
			}
		}
	}
	it, ok := r.ifaces[ifIndex]
	if !ok || !onLink(it, src.Addr()) {
		return nil, 0, false // another interface's, or from beyond the local link (RFC 6762 §11)
	}
	var q dns.Msg
	if q.Unpack(packet) != nil || q.Response || q.Opcode != dns.OpcodeQuery || q.Rcode != 0 || len(q.Question) == 0 {
		return nil, 0, false
	}
	// A legacy query, from a port other than 5353 (RFC 6762 §6.7), is a plain DNS client: it is
	// answered by unicast, with its id and questions, and short TTLs.
	legacy := int(src.Port()) != r.mport
	if legacy && len(q.Question) > maxLegacyQuestions {
		return nil, 0, false // its answer repeats the questions: a plain DNS client asks one
	}
	qu := legacy
	var answers, extra []dns.RR
	for _, qs := range q.Question {
		if qs.Qclass&0x8000 != 0 {
			qu = true // the QU bit: the querier asks for a unicast answer
		}
		if qs.Qclass&0x7fff != dns.ClassINET && qs.Qclass&0x7fff != dns.ClassANY {
			continue
		}
		a, x := r.answer(qs, ifIndex)
		answers, extra = appendNew(answers, a...), appendNew(extra, x...)
	}
	answers = knownAnswers(answers, q.Answer)
	if len(answers) == 0 {
		return nil, 0, false
	}
	if legacy {
		// A plain DNS client asked: no NSEC, which it would take for a record of the wrong
		// type; an AAAA question of its gets no answer.
		answers = slices.DeleteFunc(answers, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeNSEC })
		if len(answers) == 0 {
			return nil, 0, false
		}
	} else if hasA(answers) || hasA(extra) {
		extra = appendNew(extra, r.nsec()) // with the addresses, that there is no IPv6 one (§6.2)
	}
	extra = without(extra, answers)
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Answer: answers, Extra: extra}
	if legacy {
		m.Id, m.Question = q.Id, q.Question
		for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
			h := rr.Header()
			h.Class &^= 0x8000 // no cache-flush bit to a plain DNS client
			h.Ttl = min(h.Ttl, legacyTTL)
		}
	}
	if qu {
		if !r.unicast.allow(src.Addr(), now) {
			return nil, 0, false
		}
		return m, ifIndex, true
	}
	// A record is multicast on an interface once a second at most (RFC 6762 §6): those sent
	// less than a second ago are left out, and an answer left with none is not sent. The keys
	// are the server's own records on its interfaces, so the map stays small.
	r.mu.Lock()
	defer r.mu.Unlock()
	fresh := m.Answer[:0]
	for _, a := range m.Answer {
		key := recordKey(ifIndex, a)
		if t, ok := r.last[key]; ok && now.Sub(t) < multicastEvery {
			continue
		}
		r.last[key] = now
		fresh = append(fresh, a)
	}
	if len(fresh) == 0 {
		return nil, 0, false
	}
	m.Answer = fresh
	return m, ifIndex, false
}

// answer returns the records that answer one question asked on the interface ifIndex, and
// those that help the asker (the SRV, TXT and addresses behind a PTR).
func (r *responder) answer(q dns.Question, ifIndex int) (answers, extra []dns.RR) {
	name := strings.ToLower(q.Name)
	want := func(t uint16) bool { return q.Qtype == t || q.Qtype == dns.TypeANY }
	switch name {
	case servicesName:
		if want(dns.TypePTR) {
			answers = append(answers, r.servicesPTR(otherTTL))
		}
	case r.service:
		if want(dns.TypePTR) {
			answers = append(answers, r.ptr(otherTTL))
			extra = append(extra, r.srv(hostTTL), r.txtRR(otherTTL))
			extra = append(extra, r.addrs(ifIndex, hostTTL)...)
		}
	case strings.ToLower(r.instance):
		if want(dns.TypeSRV) {
			answers = append(answers, r.srv(hostTTL))
			extra = append(extra, r.addrs(ifIndex, hostTTL)...)
		}
		if want(dns.TypeTXT) {
			answers = append(answers, r.txtRR(otherTTL))
		}
	case strings.ToLower(r.host):
		if want(dns.TypeA) {
			answers = append(answers, r.addrs(ifIndex, hostTTL)...)
		}
		if q.Qtype == dns.TypeAAAA {
			// No IPv6 address: said at once (RFC 6762 §6.1), so that a resolver asking for both
			// does not wait for the AAAA question to time out.
			answers = append(answers, r.nsec())
		}
	}
	return answers, extra
}

// records are all the records of the service on an interface: scale 1 gives each its TTL, 0
// gives every one TTL 0 (a goodbye).
func (r *responder) records(ifIndex int, scale uint32) *dns.Msg {
	ttl := func(t uint32) uint32 { return t * scale }
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}}
	m.Answer = append(m.Answer, r.ptr(ttl(otherTTL)), r.servicesPTR(ttl(otherTTL)), r.srv(ttl(hostTTL)), r.txtRR(ttl(otherTTL)))
	m.Answer = append(m.Answer, r.addrs(ifIndex, ttl(hostTTL))...)
	return m
}

func (r *responder) ptr(ttl uint32) dns.RR {
	return &dns.PTR{Hdr: dns.RR_Header{Name: r.service, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl}, Ptr: r.instance}
}

func (r *responder) servicesPTR(ttl uint32) dns.RR {
	return &dns.PTR{Hdr: dns.RR_Header{Name: servicesName, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl}, Ptr: r.service}
}

// The records only this server holds carry the cache-flush bit (RFC 6762 §10.2).
func (r *responder) srv(ttl uint32) dns.RR {
	return &dns.SRV{Hdr: dns.RR_Header{Name: r.instance, Rrtype: dns.TypeSRV, Class: dns.ClassINET | 0x8000, Ttl: ttl}, Port: r.port, Target: r.host}
}

func (r *responder) txtRR(ttl uint32) dns.RR {
	return &dns.TXT{Hdr: dns.RR_Header{Name: r.instance, Rrtype: dns.TypeTXT, Class: dns.ClassINET | 0x8000, Ttl: ttl}, Txt: r.txt}
}

// nsec says that the host name has A records and no others (no AAAA).
func (r *responder) nsec() dns.RR {
	return &dns.NSEC{Hdr: dns.RR_Header{Name: r.host, Rrtype: dns.TypeNSEC, Class: dns.ClassINET | 0x8000, Ttl: hostTTL},
		NextDomain: r.host, TypeBitMap: []uint16{dns.TypeA}}
}

// addrs are the A records of the interface's own addresses: a device is given an address of
// the network it asked on; or, when the server listens on one address only, that address.
func (r *responder) addrs(ifIndex int, ttl uint32) []dns.RR {
	if r.hostAddr.IsValid() {
		return []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.host, Rrtype: dns.TypeA, Class: dns.ClassINET | 0x8000, Ttl: ttl}, A: r.hostAddr.AsSlice()}}
	}
	var out []dns.RR
	for _, p := range r.ifaces[ifIndex].Addrs {
		out = append(out, &dns.A{Hdr: dns.RR_Header{Name: r.host, Rrtype: dns.TypeA, Class: dns.ClassINET | 0x8000, Ttl: ttl}, A: p.Addr().AsSlice()})
	}
	return out
}

// send writes m on the interface ifIndex, to the group or to dst, unless the goodbyes went.
func (r *responder) send(m *dns.Msg, ifIndex int, dst *net.UDPAddr) {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	if !r.closed {
		r.sendLocked(m, ifIndex, dst)
	}
}

func (r *responder) sendLocked(m *dns.Msg, ifIndex int, dst *net.UDPAddr) {
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		r.log.Warn("discovery: mDNS: cannot pack an answer", slog.Any(keyError, err))
		return
	}
	to := dst
	if to == nil {
		to = r.group
	}
	if r.noCM {
		it := r.ifaces[ifIndex]
		r.conn.SetMulticastInterface(&it.iface)
		r.conn.WriteTo(b, nil, to)
		return
	}
	r.conn.WriteTo(b, &ipv4.ControlMessage{IfIndex: ifIndex}, to)
}

// onLink reports whether addr is a host's in one of the interface's networks: not the network's
// broadcast address, which a forged query would give to have every host of the link get the
// answer meant for one (as the UDP side refuses it, notADevice).
func onLink(it Interface, addr netip.Addr) bool {
	in := false
	for _, p := range it.Addrs {
		if p.Masked().Contains(addr) {
			if p.Bits() < 31 && addr == broadcastAddr(p.Addr(), p.Bits()) {
				return false
			}
			in = true
		}
	}
	return in
}

// knownAnswers drops the answers the querier listed as known with at least half their TTL left
// (RFC 6762 §7.1).
func knownAnswers(answers, known []dns.RR) []dns.RR {
	if len(known) == 0 {
		return answers
	}
	plain := make([]dns.RR, len(known))
	for i, k := range known {
		plain[i] = withoutFlush(k)
	}
	out := answers[:0]
	for _, a := range answers {
		pa := asReceived(a)
		if !slices.ContainsFunc(plain, func(k dns.RR) bool { return dns.IsDuplicate(pa, k) && k.Header().Ttl >= a.Header().Ttl/2 }) {
			out = append(out, a)
		}
	}
	return out
}

// withoutFlush is rr with the cache-flush bit of its class cleared, a copy when it was set: the
// server's own records carry it, and a querier's known answers must not (RFC 6762 §10.2), so
// records are told the same without it.
func withoutFlush(rr dns.RR) dns.RR {
	if rr.Header().Class&0x8000 == 0 {
		return rr
	}
	c := dns.Copy(rr)
	c.Header().Class &^= 0x8000
	return c
}

// asReceived is one of the server's records without the cache-flush bit, as a querier that
// received it reads it back: a TXT string of UTF-8 (the shop's name) reads back escaped, as
// the known answer comes.
func asReceived(rr dns.RR) dns.RR {
	c := withoutFlush(rr)
	b := make([]byte, dns.Len(c))
	n, err := dns.PackRR(c, b, 0, nil, false)
	if err != nil {
		return c
	}
	if u, _, err := dns.UnpackRR(b[:n], 0); err == nil {
		return u
	}
	return c
}

func hasA(rs []dns.RR) bool {
	return slices.ContainsFunc(rs, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeA })
}

// appendNew appends the records of add that rs does not hold yet.
func appendNew(rs []dns.RR, add ...dns.RR) []dns.RR {
	for _, a := range add {
		if !holds(rs, a) {
			rs = append(rs, a)
		}
	}
	return rs
}

// without returns the records of rs that are not in answers.
func without(rs, answers []dns.RR) []dns.RR {
	out := rs[:0]
	for _, x := range rs {
		if !holds(answers, x) {
			out = append(out, x)
		}
	}
	return out
}

func holds(rs []dns.RR, x dns.RR) bool {
	for _, r := range rs {
		if dns.IsDuplicate(r, x) {
			return true
		}
	}
	return false
}

// recordKey names one of the server's records on an interface, for the multicast limit.
func recordKey(ifIndex int, rr dns.RR) string {
	h := rr.Header()
	key := fmt.Sprintf("%d %s %d", ifIndex, strings.ToLower(h.Name), h.Rrtype)
	if a, ok := rr.(*dns.A); ok {
		key += " " + a.A.String()
	}
	return key
}

// escapeLabel writes a label in the DNS library's presentation form: the characters it reads
// as syntax escaped, bytes outside printable ASCII as \DDD.
func escapeLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == '@' || c == ' ':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x21 || c > 0x7e:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
