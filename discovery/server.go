package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/logbudget"
)

// Defaults for zero Options that no configuration key sets; the others are the
// configuration's (config.DefaultDiscovery…). The UDP port of discovery (probes, answers,
// announcements and hellos) is config.DefaultDiscoveryUDPPort.
const (
	DefaultPollInterval    = 5 * time.Second
	defaultMaxSources      = 1024
	defaultGlobalPerSecond = 500
	defaultMaxSeen         = 256
	// seenTTL is how long a device that stopped saying hello stays in the seen list.
	seenTTL = 24 * time.Hour
)

// Log attribute keys.
const (
	keyAddr      = "addr"
	keyInterface = "interface"
	keyError     = "error"
	keyDevice    = "device_id"
)

// Options configure a Server.
type Options struct {
	// Addr is the UDP address to listen on; "" is config.DefaultDiscoveryUDPPort on every
	// address. The server must listen on every address (not one IP) to receive broadcast
	// probes.
	Addr string
	// Interfaces limits discovery to these interface names; empty means every suitable one.
	// Probes arriving on another interface are not answered (loopback is always answered, for
	// tools on the machine itself).
	Interfaces []string
	// AnnounceInterval is the period of announcements; they also go out at start and when the
	// interfaces change. PollInterval is how often interfaces are checked for changes.
	AnnounceInterval, PollInterval time.Duration
	// AnswerInterval and AnswerBurst rate-limit answers per source address: one per interval on
	// average, bursts of AnswerBurst.
	AnswerInterval time.Duration
	AnswerBurst    int
	// MaxPerSecond bounds the answers and hellos handled per second from all sources together,
	// against floods from many (spoofed) addresses; 0 is 500.
	MaxPerSecond int

	// Info is what answers and announcements say; its URL is filled in per interface from
	// Scheme, HTTPHost and HTTPPort.
	Info ServerInfo
	// Scheme is "http" ("https" once TLS is on); "" is "http".
	Scheme string
	// HTTPHost, when set (lan.bind), is the host of every URL; otherwise the URL carries the
	// address of the interface the probe came in on.
	HTTPHost string
	// HTTPPort is the port of the URL: the front door.
	HTTPPort int
	// PairingOpen tells whether pairing is open now; nil means closed.
	PairingOpen func() bool

	Logger *slog.Logger
	Now    func() time.Time
}

// Server answers probes, sends announcements and records hellos on UDP.
type Server struct {
	o   Options
	log *slog.Logger
	lim *limiter

	c  counters
	pc *ipv4.PacketConn
	ln *net.UDPConn

	mu        sync.Mutex // protects the fields below
	ifaces    []Interface
	byIndex   map[int]Interface
	seen      map[string]*SeenDevice
	announced time.Time
	running   bool
	seenLog   logbudget.Budget // "new device seen" lines: forged hellos cost a count, not a line each
}

// seenLogBudget is how many new devices seen are logged a minute; a roll-out of more is still
// listed whole (GET /api/v1/admin/discovery/seen), and the log says how many it left out.
const seenLogBudget = 60

type counters struct {
	received, answered, announcements, hellos            atomic.Uint64
	rateLimited, garbage, truncated, undersized          atomic.Uint64
	oversized, badVersion, badSource, wrongIface, ignore atomic.Uint64
	sendErrors                                           atomic.Uint64
}

// UDPStatus is the state of the UDP side, for the status page.
type UDPStatus struct {
	Addr string `json:"addr"`
	// Interfaces are the ones announcements go out on now.
	Interfaces   []string  `json:"interfaces"`
	LastAnnounce time.Time `json:"last_announce,omitzero"`
	Received     uint64    `json:"received"`
	Answered     uint64    `json:"answered"`
	Announced    uint64    `json:"announcements"`
	Hellos       uint64    `json:"hellos"`
	// Dropped datagrams by cause: none of them is answered.
	RateLimited    uint64 `json:"rate_limited"`
	Garbage        uint64 `json:"garbage"`
	Truncated      uint64 `json:"truncated"`
	Undersized     uint64 `json:"undersized"`
	Oversized      uint64 `json:"oversized"`
	BadVersion     uint64 `json:"bad_version"`
	BadSource      uint64 `json:"bad_source"`
	WrongInterface uint64 `json:"wrong_interface"`
	// Ignored counts well-formed datagrams that need no answer: other servers' announcements
	// (and this one's own), answers, probes for another shop.
	Ignored    uint64 `json:"ignored"`
	SendErrors uint64 `json:"send_errors"`
	SeenCount  int    `json:"seen_devices"`
}

// SeenDevice is a device that said hello on the LAN.
type SeenDevice struct {
	DeviceID  string    `json:"device_id"`
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	Addr      string    `json:"addr"` // the IP address the hello came from
	PushPort  int       `json:"push_port"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Hellos    int64     `json:"hellos"`
	// PairedAs is filled in by the LAN server, which knows the registry: the id of the paired
	// device at the same address and push port, or "" for a device not paired yet.
	PairedAs string `json:"paired_as,omitempty"`
}

// NewServer checks the options; it opens nothing.
func NewServer(o Options) (*Server, error) {
	if o.Addr == "" {
		o.Addr = ":" + strconv.Itoa(config.DefaultDiscoveryUDPPort)
	}
	if o.AnnounceInterval <= 0 {
		o.AnnounceInterval = config.DefaultDiscoveryAnnounceInterval
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.AnswerInterval <= 0 {
		o.AnswerInterval = config.DefaultDiscoveryUDPAnswerInterval
	}
	if o.AnswerBurst <= 0 {
		o.AnswerBurst = config.DefaultDiscoveryUDPAnswerBurst
	}
	if o.MaxPerSecond <= 0 {
		o.MaxPerSecond = defaultGlobalPerSecond
	}
	if o.Scheme == "" {
		o.Scheme = "http"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPPort < 1 || o.HTTPPort > 65535 {
		return nil, fmt.Errorf("discovery: HTTP port %d out of range", o.HTTPPort)
	}
	// Encode once to find a bad field now rather than at the first probe.
	probeInfo := o.Info
	probeInfo.URL = o.url(netip.MustParseAddr("255.255.255.255"))
	if _, err := EncodeAnnounce(probeInfo); err != nil {
		return nil, err
	}
	return &Server{
		o:       o,
		log:     o.Logger,
		lim:     newLimiter(o.AnswerInterval, o.AnswerBurst, defaultMaxSources, o.MaxPerSecond),
		byIndex: map[int]Interface{},
		seen:    map[string]*SeenDevice{},
		seenLog: logbudget.Budget{PerMinute: seenLogBudget},
	}, nil
}

// Listen opens the UDP port now, so that a port in use is reported before the daemon starts.
// It is a no-op the second time.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	addr, err := net.ResolveUDPAddr("udp4", s.o.Addr)
	if err != nil {
		return fmt.Errorf("discovery: listen %s: %w", s.o.Addr, err)
	}
	ln, err := net.ListenUDP("udp4", addr)
	if err != nil {
		return fmt.Errorf("discovery: listen on UDP %s (discovery.udp.port): %w; another program holds the port, or set discovery.udp.enabled: false", s.o.Addr, err)
	}
	pc := ipv4.NewPacketConn(ln)
	// Where the probe arrived (interface and destination address) picks the URL to answer with.
	// Not every system supports it (Windows does not); without it the route to the device does.
	_ = pc.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	s.ln, s.pc = ln, pc
	return nil
}

// Addr is the bound address; nil before Listen.
func (s *Server) Addr() *net.UDPAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.LocalAddr().(*net.UDPAddr)
}

// Run serves until ctx ends, then closes the socket and returns nil. It calls Listen if needed.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("discovery: server already running")
	}
	s.running = true
	s.mu.Unlock()

	readDone := make(chan error, 1)
	go func() { readDone <- s.read(ctx) }()

	sig := s.refresh()
	s.log.Info("discovery: answering probes on UDP", slog.String(keyAddr, s.ln.LocalAddr().String()),
		slog.Any("announce_on", s.announceNames()))
	warned := map[string]bool{}
	s.announce(warned)
	announce := time.NewTicker(s.o.AnnounceInterval)
	defer announce.Stop()
	poll := time.NewTicker(s.o.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			s.ln.Close()
			<-readDone
			return nil
		case err := <-readDone:
			return err
		case <-poll.C:
			if now := s.refresh(); now != sig {
				sig = now
				clear(warned)
				s.log.Info("discovery: interfaces changed; announcing", slog.Any("interfaces", s.announceNames()))
				s.announce(warned)
			}
		case <-announce.C:
			s.announce(warned)
		}
	}
}

// refresh reads the interfaces and returns their signature.
func (s *Server) refresh() string {
	ifs, err := Interfaces(s.o.Interfaces)
	if err != nil {
		s.log.Warn("discovery: cannot list interfaces", slog.Any(keyError, err))
		return ""
	}
	byIndex := make(map[int]Interface, len(ifs))
	for _, it := range ifs {
		byIndex[it.Index] = it
	}
	s.mu.Lock()
	s.ifaces, s.byIndex = ifs, byIndex
	s.mu.Unlock()
	return signature(ifs, false)
}

func (s *Server) announceNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, it := range s.ifaces {
		if it.Announce {
			names = append(names, it.Name)
		}
	}
	return names
}

// announce sends an announcement to the broadcast address of every interface in use. warned
// holds the interfaces whose failure was already logged as a warning.
func (s *Server) announce(warned map[string]bool) {
	s.mu.Lock()
	ifs := s.ifaces
	s.mu.Unlock()
	port := s.ln.LocalAddr().(*net.UDPAddr).Port
	sent := false
	for _, it := range ifs {
		if !it.Announce {
			continue
		}
		for _, p := range it.Addrs {
			// Each address to its own subnet: a /31 or /32 (a virtual address beside the
			// interface's subnet) has no broadcast of its own and is not announced.
			if p.Bits() >= 31 {
				continue
			}
			b, err := EncodeAnnounce(s.info(p.Addr()))
			if err != nil {
				s.log.Error("discovery: cannot encode the announcement", slog.Any(keyError, err))
				return
			}
			dst := &net.UDPAddr{IP: broadcastAddr(p.Addr(), p.Bits()).AsSlice(), Port: port}
			if _, err := s.pc.WriteTo(b, nil, dst); err != nil {
				s.c.sendErrors.Add(1)
				level := slog.LevelDebug
				if !warned[it.Name] { // once per interface until the interfaces change
					warned[it.Name], level = true, slog.LevelWarn
				}
				s.log.Log(context.Background(), level, "discovery: announcement not sent; will retry", slog.String(keyInterface, it.Name),
					slog.String(keyAddr, dst.String()), slog.Any(keyError, err))
				continue
			}
			s.c.announcements.Add(1)
			sent = true
		}
	}
	if sent {
		s.mu.Lock()
		s.announced = s.o.Now().UTC()
		s.mu.Unlock()
	}
}

func (s *Server) info(local netip.Addr) ServerInfo {
	info := s.o.Info
	info.URL = s.o.url(local)
	if s.o.PairingOpen != nil {
		info.PairingOpen = s.o.PairingOpen()
	}
	return info
}

func (o *Options) url(local netip.Addr) string {
	host := local.String()
	if o.HTTPHost != "" {
		host = o.HTTPHost
	}
	return o.Scheme + "://" + net.JoinHostPort(host, strconv.Itoa(o.HTTPPort))
}

func (s *Server) read(ctx context.Context) error {
	// One byte more than the largest datagram, so that a larger one shows as oversized rather
	// than being cut silently to a size that looks valid.
	buf := make([]byte, MaxDatagramSize+1)
	lastErr := ""
	for {
		n, cm, src, err := s.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if oversizedRead(err) { // Windows: a datagram too large fails the read, and only it
				s.c.received.Add(1)
				s.c.oversized.Add(1)
				continue
			}
			if msg := err.Error(); msg != lastErr { // logged once, not at every retry
				lastErr = msg
				s.log.Warn("discovery: read failed; retrying", slog.Any(keyError, err))
			}
			time.Sleep(10 * time.Millisecond) // a persistent error must not spin
			continue
		}
		lastErr = ""
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		s.handle(buf[:n], cm, ua.AddrPort())
	}
}

// handle deals with one datagram. It never answers anything but a valid probe of at least
// MinProbeSize from an allowed interface and a source within its rate.
func (s *Server) handle(b []byte, cm *ipv4.ControlMessage, src netip.AddrPort) {
	s.c.received.Add(1)
	if len(b) > MaxDatagramSize {
		s.c.oversized.Add(1)
		return
	}
	d, err := Decode(b)
	switch {
	case err == nil:
	case errors.Is(err, ErrTruncated):
		s.c.truncated.Add(1)
		return
	case errors.Is(err, ErrOversized):
		s.c.oversized.Add(1)
		return
	case errors.Is(err, ErrVersion):
		s.c.badVersion.Add(1)
		return
	default:
		s.c.garbage.Add(1)
		return
	}
	switch d.Type {
	case TypeProbe, TypeHello:
	default:
		s.c.ignore.Add(1) // announcements (our own included) and answers of other servers
		return
	}
	if d.Type == TypeProbe && len(b) < MinProbeSize {
		s.c.undersized.Add(1)
		return
	}
	// A privileged source port is a service, not a device: answering it is how reflection
	// attacks work (a spoofed probe "from" a router's DNS or NTP port).
	if src.Port() < 1024 {
		s.c.badSource.Add(1)
		return
	}
	srcIP := src.Addr().Unmap()
	// A source no device can have is forged, to make the answer go to many hosts at once: a
	// broadcast (an interface's subnet's, or 255.255.255.255), a multicast group, or 0.0.0.0.
	if s.notADevice(srcIP) {
		s.c.badSource.Add(1)
		return
	}
	// The rate first: finding the local address may cost system calls (a route lookup where
	// the system gives no control messages), which a flood must not get for free.
	if !s.lim.allow(srcIP, s.o.Now()) {
		s.c.rateLimited.Add(1)
		return
	}
	local, ok := s.localAddr(cm, srcIP)
	if !ok {
		s.c.wrongIface.Add(1)
		return
	}
	if d.Type == TypeHello {
		s.c.hellos.Add(1)
		s.sawHello(*d.Hello, srcIP)
		return
	}
	if d.Probe.ShopID != "" && d.Probe.ShopID != s.o.Info.ShopID {
		s.c.ignore.Add(1)
		return
	}
	out, err := EncodeAnswer(s.info(local), d.Probe.Nonce)
	if err != nil || len(out) > len(b) {
		// Not expected: NewServer checked the fields and MaxAnswerSize ≤ MinProbeSize.
		s.c.sendErrors.Add(1)
		return
	}
	if _, err := s.pc.WriteTo(out, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(srcIP, src.Port()))); err != nil {
		s.c.sendErrors.Add(1)
		s.log.Debug("discovery: answer not sent", slog.String(keyAddr, src.String()), slog.Any(keyError, err))
		return
	}
	s.c.answered.Add(1)
}

// notADevice tells a source address that cannot be one device's: not IPv4, unspecified,
// multicast, the limited broadcast, or the directed broadcast of a subnet of this machine's
// interfaces (127.255.255.255 included).
func (s *Server) notADevice(src netip.Addr) bool {
	if !src.Is4() || src.IsUnspecified() || src.IsMulticast() || src == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.ifaces {
		for _, p := range it.Addrs {
			if p.Bits() < 31 && p.Contains(src) && src == broadcastAddr(p.Addr(), p.Bits()) {
				return true
			}
		}
	}
	return false
}

// localAddr finds this server's address on the interface a datagram from src arrived on, and
// whether that interface is one discovery may use.
func (s *Server) localAddr(cm *ipv4.ControlMessage, src netip.Addr) (netip.Addr, bool) {
	if cm == nil || cm.IfIndex == 0 {
		return s.routeAddr(src)
	}
	s.mu.Lock()
	it, known := s.byIndex[cm.IfIndex]
	s.mu.Unlock()
	if !known {
		ifc, err := net.InterfaceByIndex(cm.IfIndex)
		if err != nil {
			return netip.Addr{}, false
		}
		it = classify(*ifc, s.o.Interfaces)
	}
	if !s.usable(it) {
		return netip.Addr{}, false
	}
	if dst, ok := netip.AddrFromSlice(cm.Dst); ok {
		dst = dst.Unmap()
		if dst.Is4() && !dst.IsMulticast() && dst != netip.AddrFrom4([4]byte{255, 255, 255, 255}) && !slices.Contains(it.Broadcast, dst) {
			return dst, true
		}
	}
	for _, p := range it.Addrs {
		if p.Contains(src) {
			return p.Addr(), true
		}
	}
	if len(it.Addrs) > 0 {
		return it.Addrs[0].Addr(), true
	}
	return netip.Addr{}, false
}

// usable tells whether probes arriving on it are answered.
func (s *Server) usable(it Interface) bool {
	if it.iface.Flags&net.FlagLoopback != 0 {
		return true
	}
	return len(s.o.Interfaces) == 0 || slices.Contains(s.o.Interfaces, it.Name)
}

// routeAddr is the local address the system would use to reach dst, for systems that do not
// say where a datagram arrived. Connecting a UDP socket sends nothing.
func (s *Server) routeAddr(dst netip.Addr) (netip.Addr, bool) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, config.DefaultDiscoveryUDPPort)))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	local := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.ifaces {
		for _, p := range it.Addrs {
			if p.Addr() == local {
				return local, s.usable(it)
			}
		}
	}
	return local, local.IsLoopback()
}

func (s *Server) sawHello(h Hello, from netip.Addr) {
	now := s.o.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.seen[h.DeviceID]
	if d == nil {
		s.pruneLocked(now)
		if len(s.seen) >= defaultMaxSeen {
			s.evictSeenLocked()
		}
		d = &SeenDevice{DeviceID: h.DeviceID, FirstSeen: now}
		s.seen[h.DeviceID] = d
		ok, dropped := s.seenLog.Allow(now)
		if dropped > 0 {
			s.log.Info("discovery: new devices seen and not logged in the last minute", slog.Int("count", dropped))
		}
		if ok {
			s.log.Info("discovery: new device seen", slog.String(keyDevice, h.DeviceID), slog.String("kind", h.Kind), slog.String(keyAddr, from.String()))
		}
	}
	d.Kind, d.Name, d.Version = h.Kind, h.Name, h.Version
	d.Addr, d.PushPort, d.LastSeen = from.String(), h.PushPort, now
	d.Hellos++
}

func (s *Server) pruneLocked(now time.Time) {
	for id, d := range s.seen {
		if now.Sub(d.LastSeen) > seenTTL {
			delete(s.seen, id)
		}
	}
}

func (s *Server) evictSeenLocked() {
	var oldest *SeenDevice
	for _, d := range s.seen {
		if oldest == nil || d.LastSeen.Before(oldest.LastSeen) {
			oldest = d
		}
	}
	delete(s.seen, oldest.DeviceID)
}

// Seen lists the devices that said hello in the last day, the most recent first.
func (s *Server) Seen() []SeenDevice {
	now := s.o.Now()
	s.mu.Lock()
	s.pruneLocked(now)
	out := make([]SeenDevice, 0, len(s.seen))
	for _, d := range s.seen {
		out = append(out, *d)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SeenDevice) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return cmp.Compare(a.DeviceID, b.DeviceID)
	})
	return out
}

// Status reports the counters and the interfaces in use.
func (s *Server) Status() UDPStatus {
	st := UDPStatus{
		Received:       s.c.received.Load(),
		Answered:       s.c.answered.Load(),
		Announced:      s.c.announcements.Load(),
		Hellos:         s.c.hellos.Load(),
		RateLimited:    s.c.rateLimited.Load(),
		Garbage:        s.c.garbage.Load(),
		Truncated:      s.c.truncated.Load(),
		Undersized:     s.c.undersized.Load(),
		Oversized:      s.c.oversized.Load(),
		BadVersion:     s.c.badVersion.Load(),
		BadSource:      s.c.badSource.Load(),
		WrongInterface: s.c.wrongIface.Load(),
		Ignored:        s.c.ignore.Load(),
		SendErrors:     s.c.sendErrors.Load(),
		Interfaces:     []string{},
	}
	if a := s.Addr(); a != nil {
		st.Addr = a.String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.ifaces {
		if it.Announce {
			st.Interfaces = append(st.Interfaces, it.Name)
		}
	}
	st.LastAnnounce = s.announced.UTC()
	st.SeenCount = len(s.seen)
	return st
}

// Status is the state of both discovery mechanisms; a nil part is switched off.
type Status struct {
	UDP  *UDPStatus  `json:"udp"`
	MDNS *MDNSStatus `json:"mdns"`
}
