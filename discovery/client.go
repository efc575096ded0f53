package discovery

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/storeedge/storeedge/internal/config"
)

// This file is the device side: what a device (or cmd/devicesim, or a test) uses to find the
// server and to say hello.

// Found is a server found by a probe, an announcement or mDNS.
type Found struct {
	ServerInfo
	// From is the address the answer came from (for mDNS, the server's first IPv4 address and
	// the front door's port).
	From netip.AddrPort `json:"from"`
	// After is the time from the first probe (or the start of browsing) to this answer.
	After time.Duration `json:"after"`
}

// ProbeOptions configure Probe.
type ProbeOptions struct {
	// Targets are where probes go; empty means the broadcast address of every interface that
	// is up and broadcast-capable, on config.DefaultDiscoveryUDPPort.
	Targets []netip.AddrPort
	// ShopID, when set, asks only that shop's server to answer.
	ShopID string
	// First makes Probe return as soon as one server answers; otherwise it collects answers
	// until ctx ends.
	First bool
	// Resend is how often the probe is repeated while waiting, since a datagram may be lost;
	// 0 is 300 ms. Every repeat carries the same nonce.
	Resend time.Duration
}

// ErrNoServer is returned by Probe and Browse when no server answered before ctx ended.
var ErrNoServer = errors.New("discovery: no server answered")

// Probe broadcasts probes and returns the servers that answered, one entry per server id, in
// the order they answered. It ends when ctx does (or at the first answer with First) and
// returns ErrNoServer if nothing answered.
func Probe(ctx context.Context, o ProbeOptions) ([]Found, error) {
	targets, err := probeTargets(o.Targets)
	if err != nil {
		return nil, err
	}
	var p ProbeRequest
	if _, err := rand.Read(p.Nonce[:]); err != nil {
		return nil, err
	}
	p.ShopID = o.ShopID
	probe, err := EncodeProbe(p)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return nil, fmt.Errorf("discovery: probe: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	pr := &prober{c: c, probe: probe, targets: targets, nonce: p.Nonce, start: time.Now(), seen: map[string]bool{}}
	if err := pr.send(); err != nil {
		return nil, err
	}
	resend := o.Resend
	if resend <= 0 {
		resend = 300 * time.Millisecond
	}
	if err := pr.collect(ctx, resend, o.First); err != nil {
		return pr.found, err
	}
	if len(pr.found) == 0 {
		return nil, ErrNoServer
	}
	return pr.found, nil
}

// probeTargets are the addresses a probe goes to: those given, else the broadcast address of
// every interface that is up and broadcast-capable.
func probeTargets(given []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(given) > 0 {
		return given, nil
	}
	targets, err := broadcastTargets(config.DefaultDiscoveryUDPPort)
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, errors.New("discovery: probe: no interface is up and broadcast-capable")
	}
	return targets, nil
}

// prober is one probe: its socket, the datagram sent to every target, and the answers so far.
type prober struct {
	c       *net.UDPConn
	probe   []byte
	targets []netip.AddrPort
	nonce   [NonceSize]byte
	start   time.Time
	seen    map[string]bool // server ids answered
	found   []Found
}

// send sends the probe to every target; it fails only when no target could be sent to.
func (pr *prober) send() error {
	var sent int
	var last error
	for _, t := range pr.targets {
		if _, err := pr.c.WriteToUDPAddrPort(pr.probe, t); err != nil {
			last = err
			continue
		}
		sent++
	}
	if sent == 0 {
		return fmt.Errorf("discovery: probe: %w", last)
	}
	return nil
}

// collect reads answers to this probe until ctx ends (or the first one, with first), sending the
// probe again every resend while none comes.
func (pr *prober) collect(ctx context.Context, resend time.Duration, first bool) error {
	next := pr.start.Add(resend)
	buf := make([]byte, MaxDatagramSize+1)
	for ctx.Err() == nil {
		pr.c.SetReadDeadline(next)
		if ctx.Err() != nil {
			break
		}
		n, from, err := pr.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if ctx.Err() == nil {
					pr.send() // a failed resend is retried at the next one
					next = time.Now().Add(resend)
				}
				continue
			}
			if oversizedRead(err) {
				continue // a datagram too large (Windows fails its read): not an answer
			}
			return fmt.Errorf("discovery: probe: %w", err)
		}
		d, err := Decode(buf[:n])
		if err != nil || d.Type != TypeAnswer || d.Answer.Nonce != pr.nonce || pr.seen[d.Answer.ServerID] {
			continue
		}
		pr.seen[d.Answer.ServerID] = true
		pr.found = append(pr.found, Found{ServerInfo: d.Answer.ServerInfo, From: unmap(from), After: time.Since(pr.start)})
		if first {
			return nil
		}
	}
	return nil
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// broadcastTargets is the broadcast address of every up, broadcast-capable interface.
func broadcastTargets(port int) ([]netip.AddrPort, error) {
	ifs, err := Interfaces(nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: list interfaces: %w", err)
	}
	var out []netip.AddrPort
	for _, it := range ifs {
		if !it.Announce {
			continue
		}
		for _, b := range it.Broadcast {
			out = append(out, netip.AddrPortFrom(b, uint16(port)))
		}
	}
	return out, nil
}

// SayHello sends one hello datagram to each target (the server's address once found), or, with
// no target, to the broadcast address of every up, broadcast-capable interface on
// config.DefaultDiscoveryUDPPort. A device repeats it (every minute, say) until it is paired.
func SayHello(h Hello, targets ...netip.AddrPort) error {
	b, err := EncodeHello(h)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		if targets, err = broadcastTargets(config.DefaultDiscoveryUDPPort); err != nil {
			return err
		}
		if len(targets) == 0 {
			return errors.New("discovery: hello: no interface is up and broadcast-capable")
		}
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return fmt.Errorf("discovery: hello: %w", err)
	}
	defer c.Close()
	var errs []error
	for _, t := range targets {
		if _, err := c.WriteToUDPAddrPort(b, t); err != nil {
			errs = append(errs, fmt.Errorf("discovery: hello to %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

// ListenAnnouncements listens on addr (":57854" on a device) and calls fn with every valid
// announcement until ctx ends; it then returns nil. fn runs on the listening goroutine.
func ListenAnnouncements(ctx context.Context, addr string, fn func(Found)) error {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return fmt.Errorf("discovery: listen %s: %w", addr, err)
	}
	c, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return fmt.Errorf("discovery: listen %s: %w", addr, err)
	}
	return readAnnouncements(ctx, c, fn)
}

// readAnnouncements calls fn with each announcement c receives until ctx ends, and closes c.
func readAnnouncements(ctx context.Context, c *net.UDPConn, fn func(Found)) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	start := time.Now()
	buf := make([]byte, MaxDatagramSize+1)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if oversizedRead(err) {
				continue // a datagram too large (Windows fails its read): not an announcement
			}
			return fmt.Errorf("discovery: listen %s: %w", c.LocalAddr(), err)
		}
		d, err := Decode(buf[:n])
		if err != nil || d.Type != TypeAnnounce {
			continue
		}
		fn(Found{ServerInfo: *d.Announce, From: unmap(from), After: time.Since(start)})
	}
}
