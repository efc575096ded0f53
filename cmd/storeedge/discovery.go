package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/server"
)

// discoveryServices are the UDP server and the mDNS responder, either of which may be off.
type discoveryServices struct {
	udp  *discovery.Server
	mdns *discovery.MDNS
}

var _ server.Discovery = (*discoveryServices)(nil)

func (d *discoveryServices) Status() discovery.Status {
	var st discovery.Status
	if d.udp != nil {
		u := d.udp.Status()
		st.UDP = &u
	}
	if d.mdns != nil {
		m := d.mdns.Status()
		st.MDNS = &m
	}
	return st
}

func (d *discoveryServices) Seen() []discovery.SeenDevice {
	if d.udp == nil {
		return nil
	}
	return d.udp.Seen()
}

// discoveryOff says why discovery does not run with cfg, or "" when it does (config.DiscoveryOff).
func discoveryOff(cfg config.Config) string { return cfg.DiscoveryOff() }

// boundHost is the address lan.bind names, when it names one (not "" nor an unspecified
// address): as the UDP answer's URL gives it (host), and as mDNS's A records give it (v4, invalid
// when it is an IPv6 address: A records hold IPv4 ones only).
func boundHost(bind string) (host string, v4 netip.Addr) {
	ip, err := netip.ParseAddr(bind)
	// An IPv4 address written as IPv6 (::ffff:192.168.1.10) is the IPv4 address: devices are
	// given it in its usual form (and ::ffff:0.0.0.0 is every address, as 0.0.0.0).
	ip = ip.Unmap()
	if err != nil || ip.IsUnspecified() {
		return "", netip.Addr{}
	}
	if ip.Is4() {
		v4 = ip
	}
	return ip.String(), v4
}

// newDiscovery builds discovery from the configuration and the LAN ports actually open (addrs, as
// server.Addrs gives them), and binds the UDP port so that a port in use stops the start. It
// returns nil when discovery is off.
func newDiscovery(cfg config.Config, addrs map[string]string, pairingOpen func() bool, log *slog.Logger) (*discoveryServices, error) {
	if why := discoveryOff(cfg); why != "" {
		log.Info("discovery: off", slog.String("reason", why))
		return nil, nil
	}
	info, httpPort := discoveryInfo(cfg, addrs)
	warnMissingInterfaces(cfg.Discovery.Interfaces, log)
	host, hostAddr := boundHost(cfg.LAN.Bind)
	d := &discoveryServices{}
	if cfg.Discovery.UDP.Enabled {
		udp, err := discovery.NewServer(discovery.Options{
			Addr:             ":" + strconv.Itoa(cfg.Discovery.UDP.Port),
			Interfaces:       cfg.Discovery.Interfaces,
			AnnounceInterval: cfg.Discovery.AnnounceInterval,
			AnswerInterval:   cfg.Discovery.UDP.AnswerInterval,
			AnswerBurst:      cfg.Discovery.UDP.AnswerBurst,
			Info:             info,
			HTTPHost:         host,
			HTTPPort:         httpPort,
			PairingOpen:      pairingOpen,
			Logger:           log,
		})
		if err != nil {
			return nil, err
		}
		if err := udp.Listen(); err != nil {
			return nil, err
		}
		d.udp = udp
	}
	if why := cfg.MDNSOff(); why != "" && cfg.Discovery.MDNS.Enabled {
		log.Warn("discovery: mDNS off", slog.String("reason", why))
	} else if why == "" {
		m, err := discovery.NewMDNS(discovery.MDNSOptions{
			Instance:    discovery.InstanceName(cfg.ServerID),
			Interfaces:  cfg.Discovery.Interfaces,
			Info:        info,
			HTTPPort:    httpPort,
			Host:        hostAddr,
			PairingOpen: pairingOpen,
			Logger:      log,
		})
		if err != nil {
			return nil, err
		}
		d.mdns = m
	}
	return d, nil
}

// warnMissingInterfaces says at WARN which names of discovery.interfaces this machine does not
// have: a misspelt name leaves discovery on no interface, with nothing else in the log to say
// why devices do not find the server. An interface may yet appear (a USB adapter, a VPN), and
// discovery then uses it: a warning, not an error.
func warnMissingInterfaces(allowed []string, log *slog.Logger) {
	if len(allowed) == 0 {
		return
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return // discovery logs it when it reads them
	}
	have := make([]string, len(ifs))
	for i, ifc := range ifs {
		have[i] = ifc.Name
	}
	var missing []string
	for _, name := range allowed {
		if !slices.Contains(have, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		log.Warn("discovery: discovery.interfaces names interfaces this machine does not have; discovery uses them once they appear",
			slog.Any("missing", missing), slog.Any("interfaces", have))
	}
}

// Run runs what is on until ctx ends.
func (d *discoveryServices) run(ctx context.Context, g interface{ Go(func() error) }) {
	if d.udp != nil {
		g.Go(func() error { return d.udp.Run(ctx) })
	}
	if d.mdns != nil {
		g.Go(func() error { return d.mdns.Run(ctx) })
	}
}

// discoveryInfo is what discovery says about this server, and the port of its front-door URL:
// the front door, or else the first service port open.
func discoveryInfo(cfg config.Config, addrs map[string]string) (discovery.ServerInfo, int) {
	info := discovery.ServerInfo{
		ServerID: cfg.ServerID,
		ShopID:   cfg.Shop.ID,
		Name:     cfg.Shop.Name,
		Version:  discovery.TruncateText(buildVersion(), discovery.MaxVersionLen),
	}
	httpPort := 0
	for _, ln := range cfg.LAN.Listeners() {
		a, ok := addrs[ln.Name]
		if !ok {
			continue // configured, but the service has no routes yet: not open
		}
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			continue
		}
		info.Ports = append(info.Ports, discovery.Port{Service: ln.Name, Port: int(ap.Port())})
		if httpPort == 0 {
			httpPort = int(ap.Port())
		}
	}
	return info, httpPort
}

const discoveryUsage = `Usage: storeedge discovery [--config PATH] [--set KEY=VALUE ...] [--timeout 2s]

Checks device discovery from the server side, for shop IT: which network interfaces the server
announces on and registers mDNS on (and why the others are left out), whether a storeedge server
answers on UDP discovery.udp.port (57854), and whether its mDNS service _storeedge._tcp can be
seen on the network. Run it on the server's machine while the service runs. Exits 1 if a check
fails.
`

// cmdDiscovery is "storeedge discovery".
func cmdDiscovery(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	var timeout time.Duration
	// The check talks to no cloud: the store key may be missing (kept in the service's environment).
	cfg, err := loadConfigWith("discovery", discoveryUsage, args, env, stderr, func(fs *flag.FlagSet) {
		fs.DurationVar(&timeout, "timeout", 2*time.Second, "how long to wait for the server's UDP answer and its mDNS records")
	}, "cloud.store_key")
	if err != nil {
		return err
	}
	if timeout <= 0 || timeout > time.Minute {
		return usageError{fmt.Errorf("discovery: --timeout %s: want more than 0s and at most 1m", timeout)}
	}
	ifs, err := discovery.Interfaces(cfg.Discovery.Interfaces)
	if err != nil {
		return fmt.Errorf("discovery: list interfaces: %w", err)
	}
	fmt.Fprint(stdout, discoveryHeader(cfg))
	announce, mdnsIfs := printInterfaces(stdout, cfg, ifs)
	fmt.Fprintln(stdout)

	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	if why := discoveryOff(cfg); why != "" {
		fmt.Fprintf(tw, "discovery\toff\t%s\n", why)
		return nil
	}
	c := &checkTable{w: tw}
	checkDiscovery(ctx, c, cfg, announce, mdnsIfs, timeout)
	if c.failed {
		tw.Flush()
		return errors.New("discovery: a check failed (see above)")
	}
	return nil
}

// printInterfaces lists the machine's interfaces and what discovery does on each, and returns
// those it announces on and those it registers mDNS on: none for a part of discovery that is off,
// whatever the interface could carry.
func printInterfaces(stdout io.Writer, cfg config.Config, ifs []discovery.Interface) (announce, mdnsIfs []string) {
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "INTERFACE\tADDRESSES\tBROADCAST\tANNOUNCE\tMDNS\tNOTE")
	for _, it := range ifs {
		it.Announce = it.Announce && cfg.Discovery.UDP.Enabled && cfg.DiscoveryOff() == ""
		it.MDNS = it.MDNS && cfg.MDNSOff() == ""
		var addrs, bcast []string
		for _, a := range it.Addrs {
			addrs = append(addrs, a.String())
		}
		for _, b := range it.Broadcast {
			bcast = append(bcast, b.String())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Name, dash(strings.Join(addrs, ",")), dash(strings.Join(bcast, ",")),
			yesNo(it.Announce), yesNo(it.MDNS), it.Reason)
		if it.Announce {
			announce = append(announce, it.Name)
		}
		if it.MDNS {
			mdnsIfs = append(mdnsIfs, it.Name)
		}
	}
	return announce, mdnsIfs
}

// checkTable writes the lines of the checks and remembers whether one failed.
type checkTable struct {
	w      io.Writer
	failed bool
}

func (c *checkTable) check(name string, ok bool, detail string) {
	result := "ok"
	if !ok {
		result, c.failed = "FAIL", true
	}
	fmt.Fprintf(c.w, "%s\t%s\t%s\n", name, result, detail)
}

func (c *checkTable) off(name, why string) { fmt.Fprintf(c.w, "%s\toff\t%s\n", name, why) }

// checkDiscovery checks the interfaces, the UDP answer and the mDNS records of the server on this
// machine.
func checkDiscovery(ctx context.Context, c *checkTable, cfg config.Config, announce, mdnsIfs []string, timeout time.Duration) {
	udpName := "udp " + strconv.Itoa(cfg.Discovery.UDP.Port)
	switch {
	case !cfg.Discovery.UDP.Enabled:
		c.off("interfaces", "discovery.udp.enabled is false")
	case len(announce) == 0:
		c.check("interfaces", false, "no interface to announce on: none is up, broadcast-capable, with an IPv4 address and allowed by discovery.interfaces")
	default:
		c.check("interfaces", true, "announcing on "+strings.Join(announce, ", "))
	}
	if cfg.Discovery.UDP.Enabled {
		ok, detail := checkUDP(ctx, cfg, timeout)
		c.check(udpName, ok, detail)
	} else {
		c.off(udpName, "discovery.udp.enabled is false")
	}
	switch why := cfg.MDNSOff(); {
	case why != "":
		c.off("mdns", why)
	case len(mdnsIfs) == 0:
		c.check("mdns", false, "no interface to register on: none is up, multicast-capable, with an IPv4 address and allowed by discovery.interfaces")
	default:
		ok, detail := checkMDNS(ctx, cfg, mdnsIfs, timeout)
		c.check("mdns", ok, detail)
	}
}

// checkUDP probes the server on this machine, and if nothing answers, tells a free port from
// one another program holds.
func checkUDP(ctx context.Context, cfg config.Config, timeout time.Duration) (bool, string) {
	port := cfg.Discovery.UDP.Port
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	found, err := discovery.Probe(pctx, discovery.ProbeOptions{
		Targets: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}, First: true})
	if err == nil {
		f := found[0]
		if f.ServerID != cfg.ServerID {
			return false, fmt.Sprintf("bound by another storeedge server, %s %q (this configuration's server_id is %s)", f.ServerID, f.Name, cfg.ServerID)
		}
		return true, fmt.Sprintf("bound and answering: %s %q, %d ports, pairing %s", f.ServerID, f.Name, len(f.Ports), openClosed(f.PairingOpen))
	}
	c, lerr := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if lerr == nil {
		c.Close()
		return false, fmt.Sprintf("nothing answers and the port is free: the storeedge service is not running (start it), or runs with discovery.udp.enabled false")
	}
	return false, fmt.Sprintf("held by a program that does not answer discovery probes (%v); find it with `ss -ulpn 'sport = :%d'` (Linux) or `Get-NetUDPEndpoint -LocalPort %d` (Windows)", lerr, port, port)
}

// checkMDNS browses for the server's service on the interfaces it registers on.
func checkMDNS(ctx context.Context, cfg config.Config, ifs []string, timeout time.Duration) (bool, string) {
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	found, err := discovery.Browse(bctx, discovery.BrowseOptions{Interfaces: ifs})
	if err != nil && !errors.Is(err, discovery.ErrNoServer) {
		return false, err.Error()
	}
	var others []string
	for _, f := range found {
		if f.ServerID == cfg.ServerID {
			return true, fmt.Sprintf("%s instance %s seen at %s", discovery.ServiceType, f.ServerID, f.URL)
		}
		others = append(others, f.ServerID)
	}
	detail := fmt.Sprintf("%s instance %s not seen within %s on %s: is the service running, and UDP 5353 open?",
		discovery.ServiceType, cfg.ServerID, timeout, strings.Join(ifs, ", "))
	if len(others) > 0 {
		detail += " (seen: " + strings.Join(others, ", ") + ")"
	}
	return false, detail
}

// discoveryHeader is the first line of storeedge discovery: each part on or off as the server
// runs it (neither with a loopback lan.bind).
func discoveryHeader(cfg config.Config) string {
	return fmt.Sprintf("UDP port %d (%s), mDNS %s (%s), announcements every %s\n\n",
		cfg.Discovery.UDP.Port, onOff(cfg.Discovery.UDP.Enabled && cfg.DiscoveryOff() == ""), discovery.ServiceType,
		onOff(cfg.MDNSOff() == ""), cfg.Discovery.AnnounceInterval)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func openClosed(b bool) string {
	if b {
		return "open"
	}
	return "closed"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
