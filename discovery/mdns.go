package discovery

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"
)

// ServiceType is the DNS-SD service type of the server; the domain is "local.".
const ServiceType = "_storeedge._tcp"

// TXTVersion is the value of the "txtvers" TXT key; it changes only if a key changes meaning.
const TXTVersion = "1"

// MDNSOptions configure an MDNS responder.
type MDNSOptions struct {
	// Instance is the service instance name: the server id.
	Instance string
	// Interfaces limits mDNS to these interface names; empty means every suitable one.
	Interfaces []string
	// PollInterval is how often interfaces and the TXT facts are checked for changes.
	PollInterval time.Duration
	Info         ServerInfo // URL is not used: the SRV and A records carry the address
	Scheme       string     // "http" when ""
	HTTPPort     int        // the SRV port: the front door
	// Host is the only address the A records give, when the front door listens on it alone
	// (lan.bind); invalid (the zero Addr): each interface's own addresses.
	Host        netip.Addr
	PairingOpen func() bool
	Logger      *slog.Logger

	mdnsPort int // the mDNS port, 5353 when 0; tests change it
}

// MDNS registers the server's DNS-SD service on the interfaces in use and keeps it current:
// registered again when the interfaces or the facts in the TXT records change, withdrawn (a
// goodbye with TTL 0) when Run ends.
type MDNS struct {
	o   MDNSOptions
	log *slog.Logger

	mu     sync.Mutex // protects the fields below
	status MDNSStatus
}

// MDNSStatus is the state of the mDNS responder, for the status page.
type MDNSStatus struct {
	Service      string    `json:"service"`
	Instance     string    `json:"instance"`
	State        string    `json:"state"` // starting, registered, no_interface, error
	Interfaces   []string  `json:"interfaces"`
	RegisteredAt time.Time `json:"registered_at,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
}

// The values of MDNSStatus.State.
const (
	MDNSStarting    = "starting"
	MDNSRegistered  = "registered"
	MDNSNoInterface = "no_interface"
	MDNSError       = "error"
)

// NewMDNS checks the options; it registers nothing until Run.
func NewMDNS(o MDNSOptions) (*MDNS, error) {
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Scheme == "" {
		o.Scheme = "http"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Instance == "" || len(o.Instance) > 63 || strings.Contains(o.Instance, ".") {
		return nil, fmt.Errorf("discovery: mDNS instance name %q: want 1 to 63 bytes without a dot (see InstanceName)", o.Instance)
	}
	if o.HTTPPort < 1 || o.HTTPPort > 65535 {
		return nil, fmt.Errorf("discovery: mDNS port %d out of range", o.HTTPPort)
	}
	m := &MDNS{o: o, log: o.Logger}
	m.status = MDNSStatus{Service: ServiceType, Instance: o.Instance, State: MDNSStarting, Interfaces: []string{}}
	return m, nil
}

// TXT returns the TXT record strings for info: the same facts as a UDP answer, except the URL,
// which a browser builds from the A record and the SRV port.
func TXT(info ServerInfo, scheme string) []string {
	txt := []string{
		"txtvers=" + TXTVersion,
		"id=" + info.ServerID,
		"shop=" + info.ShopID,
		"name=" + TruncateText(info.Name, 255-len("name=")),
		"version=" + info.Version,
		"scheme=" + scheme,
	}
	var ports []string
	for _, p := range info.Ports {
		ports = append(ports, p.Service+"="+strconv.Itoa(p.Port))
	}
	txt = append(txt, "ports="+strings.Join(ports, ","))
	if info.PairingOpen {
		txt = append(txt, "pairing=open")
	} else {
		txt = append(txt, "pairing=closed")
	}
	if len(info.TLSFingerprint) > 0 {
		txt = append(txt, "tlsfp="+hex.EncodeToString(info.TLSFingerprint))
	}
	return txt
}

func (m *MDNS) txt() []string {
	info := m.o.Info
	if m.o.PairingOpen != nil {
		info.PairingOpen = m.o.PairingOpen()
	}
	return escapeTXT(TXT(info, m.o.Scheme))
}

// escapeTXT and unescapeTXT convert between TXT strings as they travel (any bytes) and the
// presentation form the DNS library holds them in, where '\' starts an escape ("\\", "\"",
// "\DDD" for a byte in decimal) and non-ASCII bytes come back as \DDD.
func escapeTXT(txt []string) []string {
	out := make([]string, len(txt))
	for i, t := range txt {
		out[i] = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(t)
	}
	return out
}

func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if n, _ := strconv.Atoi(s[i+1 : i+4]); n <= 255 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Status reports the responder's state.
func (m *MDNS) Status() MDNSStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.status
	st.Interfaces = slices.Clone(st.Interfaces)
	return st
}

func (m *MDNS) setStatus(f func(*MDNSStatus)) {
	m.mu.Lock()
	f(&m.status)
	m.mu.Unlock()
}

// Run registers the service and keeps it current until ctx ends, then withdraws it and returns
// nil. A registration that fails is retried at the next poll.
func (m *MDNS) Run(ctx context.Context) error {
	var (
		zs           *responder
		registeredAt time.Time
		curSig       = "\x00" // no signature: register at the first look
		curTXT       []string
		lastErr      string
	)
	withdraw := func() {
		if zs == nil {
			return
		}
		zs.Shutdown()
		zs = nil
	}
	defer withdraw()

	tick := time.NewTicker(m.o.PollInterval)
	defer tick.Stop()
	for {
		ifs, err := Interfaces(m.o.Interfaces)
		if err != nil {
			m.log.Warn("discovery: mDNS: cannot list interfaces", slog.Any(keyError, err))
		}
		sig := signature(ifs, true)
		txt := m.txt()
		switch {
		case err != nil:
		case sig != curSig || zs != nil && !slices.Equal(txt, curTXT):
			// Registered again: the goodbye makes caches forget the old records at once.
			withdraw()
			curSig = sig
			var use []Interface
			var names []string
			for _, it := range ifs {
				if it.MDNS {
					use = append(use, it)
					names = append(names, it.Name)
				}
			}
			if len(use) == 0 {
				m.setStatus(func(s *MDNSStatus) { s.State, s.Interfaces = MDNSNoInterface, []string{} })
				break
			}
			zs, err = newResponder(responderOptions{Instance: m.o.Instance, Port: m.o.HTTPPort, Host: m.o.Host, TXT: txt, Ifaces: use, Logger: m.log, MDNSPort: m.o.mdnsPort})
			if err != nil {
				curSig = "\x00" // retry at the next poll
				if msg := err.Error(); msg != lastErr {
					lastErr = msg
					m.log.Warn("discovery: mDNS registration failed; retrying", slog.Any("interfaces", names), slog.Any(keyError, err))
				}
				m.setStatus(func(s *MDNSStatus) { s.State, s.LastError = MDNSError, err.Error() })
				break
			}
			lastErr = ""
			registeredAt, curTXT = time.Now(), txt
			// The interfaces it could join the group on; the others are said, and tried again
			// when the interfaces change.
			names = names[:0]
			for _, it := range use {
				if _, ok := zs.ifaces[it.iface.Index]; ok {
					names = append(names, it.Name)
				}
			}
			joinErr := ""
			if zs.joinErr != nil {
				joinErr = zs.joinErr.Error()
				m.log.Warn("discovery: mDNS: the service is not registered on every interface", slog.Any(keyError, zs.joinErr))
			}
			m.log.Info("discovery: mDNS service registered", slog.String("service", ServiceType),
				slog.String("instance", m.o.Instance), slog.Any("interfaces", names))
			m.setStatus(func(s *MDNSStatus) {
				s.State, s.Interfaces, s.RegisteredAt, s.LastError = MDNSRegistered, names, registeredAt, joinErr
			})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// BrowseOptions configure Browse.
type BrowseOptions struct {
	// Interfaces limits browsing to these interface names; empty means every multicast one.
	Interfaces []string
	// First makes Browse return at the first server found; otherwise it browses until ctx ends.
	First bool
}

// InstanceName is the mDNS instance name of a server id: its dots made hyphens (the DNS library
// under zeroconf would read each dot as the end of a label, and browsers would not find the
// instance of storeedge-shop12.example.com), cut to 63 bytes, the longest DNS label.
func InstanceName(serverID string) string {
	return TruncateText(strings.ReplaceAll(serverID, ".", "-"), 63)
}

// Browse looks for servers over mDNS and returns what their records say, one entry per
// instance. It ends when ctx does (or at the first server with First), and returns ErrNoServer
// if none was found.
func Browse(ctx context.Context, o BrowseOptions) ([]Found, error) {
	opts := []zeroconf.ClientOption{zeroconf.SelectIPTraffic(zeroconf.IPv4)}
	if len(o.Interfaces) > 0 {
		var use []net.Interface
		for _, name := range o.Interfaces {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return nil, fmt.Errorf("discovery: browse: %w", err)
			}
			use = append(use, *ifc)
		}
		opts = append(opts, zeroconf.SelectIfaces(use))
	}
	r, err := zeroconf.NewResolver(opts...)
	if err != nil {
		return nil, fmt.Errorf("discovery: browse: %w", err)
	}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry)
	start := time.Now()
	if err := r.Browse(bctx, ServiceType, "local.", entries); err != nil {
		return nil, fmt.Errorf("discovery: browse: %w", err)
	}
	var found []Found
	// Read until zeroconf closes the channel (when bctx ends), or its goroutine would block.
	for e := range entries {
		f, err := FromMDNS(e.Text, e.AddrIPv4, e.Port)
		if err != nil {
			continue
		}
		f.After = time.Since(start)
		found = append(found, f)
		if o.First {
			cancel()
		}
	}
	if len(found) == 0 {
		return nil, ErrNoServer
	}
	return found, nil
}

// FromMDNS reads a server's TXT strings (in the DNS library's presentation form, as zeroconf
// gives them), addresses and SRV port back into what a UDP answer would say.
func FromMDNS(txt []string, addrs []net.IP, port int) (Found, error) {
	kv := map[string]string{}
	for _, t := range txt {
		k, v, _ := strings.Cut(unescapeTXT(t), "=")
		kv[strings.ToLower(k)] = v
	}
	if kv["txtvers"] != TXTVersion {
		return Found{}, fmt.Errorf("discovery: mDNS: txtvers %q, want %q", kv["txtvers"], TXTVersion)
	}
	var ip netip.Addr
	for _, a := range addrs {
		if x, ok := netip.AddrFromSlice(a); ok && x.Unmap().Is4() {
			ip = x.Unmap()
			break
		}
	}
	if !ip.IsValid() || port < 1 || port > 65535 {
		return Found{}, errors.New("discovery: mDNS: no IPv4 address or port")
	}
	scheme := kv["scheme"]
	switch scheme {
	case "":
		scheme = "http"
	case "http", "https":
	default:
		return Found{}, fmt.Errorf("%w: mDNS: scheme %q, want http or https", ErrMalformed, TruncateText(scheme, 16))
	}
	// The same limits as a UDP answer's fields (discovery.md): anyone on the LAN may announce.
	for _, t := range []struct {
		key      string
		max      int
		required bool
	}{{"id", MaxIDLen, true}, {"shop", MaxShopIDLen, false}, {"name", MaxNameLen, true}, {"version", MaxVersionLen, false}} {
		if err := checkText(kv[t.key], t.max, t.required); err != nil {
			return Found{}, fmt.Errorf("%w: mDNS: %s: %v", ErrMalformed, t.key, err)
		}
	}
	info := ServerInfo{
		ServerID:    kv["id"],
		ShopID:      kv["shop"],
		Name:        kv["name"],
		Version:     kv["version"],
		URL:         scheme + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(port)),
		PairingOpen: kv["pairing"] == "open",
	}
	if len(info.URL) > MaxURLLen {
		return Found{}, fmt.Errorf("%w: mDNS: URL of %d bytes, at most %d", ErrMalformed, len(info.URL), MaxURLLen)
	}
	for _, p := range strings.Split(kv["ports"], ",") {
		name, num, ok := strings.Cut(p, "=")
		n, err := strconv.Atoi(num)
		// Only the services a device knows count (discovery.md), each once, as in an answer.
		if ok && err == nil && n > 0 && n <= 65535 && serviceCode(name) != 0 && !slices.ContainsFunc(info.Ports, func(x Port) bool { return x.Service == name }) {
			info.Ports = append(info.Ports, Port{Service: name, Port: n})
		}
	}
	if fp, err := hex.DecodeString(kv["tlsfp"]); err == nil && len(fp) == TLSHashSize {
		info.TLSFingerprint = fp
	}
	return Found{ServerInfo: info, From: netip.AddrPortFrom(ip, uint16(port))}, nil
}
