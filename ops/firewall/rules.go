// Package firewall derives the firewall rules a storeedge server needs from its configuration,
// inbound and outbound, and writes them for nftables, iptables, ufw, Windows (netsh advfirewall
// and PowerShell) and as a table for a network team.
package firewall

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
)

// Directions and remotes of a rule.
const (
	In  = "in"
	Out = "out"

	RemoteLAN = "LAN" // the shop's devices
	RemoteAny = "any"
)

// Rule is one opening: a protocol and port, in or out, to or from whom, and why.
type Rule struct {
	Dir     string   `json:"direction"`
	Proto   string   `json:"protocol"` // tcp or udp
	Port    int      `json:"port"`
	Local   bool     `json:"local_port,omitempty"` // Port is the server's own (outbound: the source port), not the remote's
	Remote  string   `json:"remote"`               // RemoteLAN, RemoteAny, or a multicast address
	Hosts   []string `json:"hosts,omitempty"`      // WAN host names, for the network team
	Purpose string   `json:"purpose"`
	Key     string   `json:"key,omitempty"` // configuration key that sets the port
}

// mDNS is on UDP 5353, multicast group 224.0.0.251 (the server's responder is IPv4 only).
const (
	mdnsPort  = 5353
	mdnsGroup = "224.0.0.251"
)

// Environment is what of the server's environment changes the rules: the proxy it takes from
// HTTPS_PROXY, HTTP_PROXY or ALL_PROXY when wan.proxy is empty and wan.use_environment is on,
// and NO_PROXY, which sends some targets past that proxy (read and matched by internal/wan, as
// the dialer does).
type Environment = wan.ProxyEnvironment

// Rules is what cfg needs, inbound first, without a proxy from the environment.
func Rules(cfg config.Config) []Rule { return RulesIn(cfg, Environment{}) }

// RulesIn is what cfg needs in env, inbound first.
func RulesIn(cfg config.Config, env Environment) []Rule {
	var in, out []Rule
	// With a loopback lan.bind nothing on the LAN reaches the server, nor does it push to the
	// LAN (a device on this machine only): its LAN ports need no rule.
	lan := !isLoopback(cfg.LAN.Bind)
	for _, ln := range cfg.LAN.Listeners() {
		if !lan {
			break
		}
		purpose := "devices: the " + strings.ReplaceAll(ln.Name, "_", " ")
		if ln.Name != "front_door" {
			purpose += " service"
		}
		in = append(in, Rule{Dir: In, Proto: "tcp", Port: ln.Port, Remote: RemoteLAN, Purpose: purpose, Key: ln.Key})
	}
	if d := cfg.Discovery; d.UDP.Enabled && cfg.DiscoveryOff() == "" {
		in = append(in, Rule{Dir: In, Proto: "udp", Port: d.UDP.Port, Remote: RemoteLAN, Purpose: "discovery: devices' probes and hellos", Key: "discovery.udp.port"})
		out = append(out,
			Rule{Dir: Out, Proto: "udp", Port: d.UDP.Port, Remote: RemoteLAN, Purpose: "discovery: announcements (broadcast)", Key: "discovery.udp.port"},
			// A probe sent to a broadcast address leaves no connection that its answer, sent to the
			// device's own address and port, would belong to: the answer needs its own rule.
			Rule{Dir: Out, Proto: "udp", Port: d.UDP.Port, Local: true, Remote: RemoteLAN, Purpose: "discovery: answers, from this port to the device's", Key: "discovery.udp.port"})
	}
	if cfg.MDNSOff() == "" {
		// Queries come to the group, or to the server's own address (legacy DNS clients); answers
		// go to the group, or from the server's port to the querier's own address (a query
		// that asks for a unicast answer, a legacy one), which no connection tracking matches
		// with a query sent to the group.
		in = append(in, Rule{Dir: In, Proto: "udp", Port: mdnsPort, Remote: RemoteLAN, Purpose: "discovery: mDNS queries, to the group or to this server", Key: "discovery.mdns.enabled"})
		out = append(out,
			Rule{Dir: Out, Proto: "udp", Port: mdnsPort, Remote: mdnsGroup, Purpose: "discovery: mDNS answers to the group", Key: "discovery.mdns.enabled"},
			Rule{Dir: Out, Proto: "udp", Port: mdnsPort, Local: true, Remote: RemoteLAN, Purpose: "discovery: mDNS answers to a querier's own address", Key: "discovery.mdns.enabled"})
	}
	if lan {
		out = append(out, Rule{Dir: Out, Proto: "tcp", Port: cfg.Devices.PushPortDefault, Remote: RemoteLAN, Purpose: "push of orders and commands to devices (a device may name another port when it pairs or in a heartbeat)", Key: "devices.push_port_default"})
	}
	wanOut := wanRules(cfg, env)
	out = append(out, wanOut...)
	if c := cfg.SMTP; c.Enabled() {
		out = directRules(out, c.Host, c.Port, "alerts by e-mail to the mail server", "smtp.port", "smtp.host")
	}
	if h, p := hostPort(cfg.BackOffice.Webhook.URL); h != "" && !isLoopback(h) {
		out = directRules(out, h, p, "orders to the back office's webhook", "backoffice.webhook.url", "backoffice.webhook.url")
	}
	return append(in, out...)
}

// directRules add to out the way to a server reached directly, not through the proxy (the
// alerts' mail server, the back office's webhook), with DNS when its name must be resolved and
// out does not open DNS already. key sets the port, nameKey the host.
func directRules(out []Rule, host string, port int, purpose, key, nameKey string) []Rule {
	r := Rule{Dir: Out, Proto: "tcp", Port: port, Remote: RemoteAny, Hosts: []string{host}, Purpose: purpose, Key: key}
	if net.ParseIP(host) != nil {
		r.Remote, r.Hosts = host, nil
		return append(out, r)
	}
	for _, w := range out {
		if w.Port == 53 && w.Dir == Out {
			return append(out, r)
		}
	}
	return append(out, r,
		Rule{Dir: Out, Proto: "udp", Port: 53, Remote: RemoteAny, Purpose: "DNS (the system's resolvers), for " + nameKey, Key: nameKey},
		Rule{Dir: Out, Proto: "tcp", Port: 53, Remote: RemoteAny, Purpose: "DNS (the system's resolvers), for " + nameKey, Key: nameKey})
}

// isLoopback says whether host is this machine, which no host firewall rule is needed for.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// wanRules are the outbound connections to the WAN: to the proxy when there is one, else to
// each service's host, and DNS.
func wanRules(cfg config.Config, env Environment) []Rule {
	byPort := map[int][]string{}
	keyByPort := map[int]string{} // the key of the first host on the port, which names its rule
	var ports []int
	// Each target is matched against NO_PROXY by its host, but Blob storage named by the cloud
	// by the names it may have.
	var targets []wanTarget
	addAs := func(host string, probes []string, port int, key string) {
		if byPort[port] == nil {
			ports = append(ports, port)
			keyByPort[port] = key
		}
		if !slices.Contains(byPort[port], host) {
			byPort[port] = append(byPort[port], host)
		}
		targets = append(targets, wanTarget{host, probes, port})
	}
	add := func(host string, port int, key string) {
		if !isLoopback(host) { // this machine: no rule needed
			addAs(host, []string{host}, port, key)
		}
	}
	if h, p := hostPort(cfg.Cloud.URL); h != "" {
		add(h, p, "cloud.url")
	}
	viaProxy := true
	if cfg.ServiceBus.Enabled {
		if h, p := serviceBusHost(cfg.ServiceBus); h != "" {
			add(h, p, "servicebus.connection_string")
			viaProxy = cfg.ServiceBus.Transport == config.TransportWebSockets
		}
	}
	if h, p, key := blobHost(cfg.Media); key != "" {
		if h != "" {
			add(h, p, key)
		}
	} else {
		addAs("the Blob storage host the cloud names (media.container_url, *.blob.core.windows.net)", blobProbes(env.NoProxy), 443, "cloud.url")
	}
	if cfg.Logs.Ship.Enabled {
		if h, p := hostPort(cfg.Logs.Ship.URL); h != "" {
			add(h, p, "logs.ship.url")
		}
	}
	if s := cfg.Support.ServiceBus; s.Enabled {
		if h, p := serviceBusHost(config.ServiceBus{ConnectionString: s.ConnectionString, Transport: s.Transport}); h != "" {
			add(h, p, "support.servicebus.connection_string")
			viaProxy = viaProxy && s.Transport == config.TransportWebSockets
		}
	}
	proxy, key := cfg.WAN.Proxy.Reveal(), "wan.proxy"
	var direct map[int][]string // the targets NO_PROXY sends past the proxy, by port
	var directPorts []int
	if proxy == "" && cfg.WAN.UseEnvironment && env.Proxy != "" {
		proxy, key = env.Proxy, env.ProxySource
		if strings.TrimSpace(env.NoProxy) != "" {
			for _, t := range targets {
				if !t.direct(env) {
					continue
				}
				if direct == nil {
					direct = map[int][]string{}
				}
				if direct[t.port] == nil {
					directPorts = append(directPorts, t.port)
				}
				direct[t.port] = append(direct[t.port], t.host)
			}
		}
	}
	if ph, pp := wan.ProxyAddress(proxy); ph != "" && viaProxy {
		var hosts []string
		for _, p := range ports {
			hosts = append(hosts, byPort[p]...)
		}
		rules := []Rule{{Dir: Out, Proto: "tcp", Port: pp, Remote: ph, Hosts: hosts, Purpose: "WAN through the proxy " + ph, Key: key}}
		if direct != nil {
			for _, p := range directPorts {
				rules = append(rules, Rule{Dir: Out, Proto: "tcp", Port: p, Remote: RemoteAny, Hosts: direct[p], Purpose: "WAN: HTTPS to the cloud services NO_PROXY sends past the proxy", Key: "NO_PROXY"})
			}
			return append(rules,
				Rule{Dir: Out, Proto: "udp", Port: 53, Remote: RemoteAny, Purpose: "DNS (the system's resolvers)", Key: "NO_PROXY"},
				Rule{Dir: Out, Proto: "tcp", Port: 53, Remote: RemoteAny, Purpose: "DNS (the system's resolvers)", Key: "NO_PROXY"})
		}
		if !isIP(ph) {
			// The proxy's name is resolved before every connection to it.
			rules = append(rules,
				Rule{Dir: Out, Proto: "udp", Port: 53, Remote: RemoteAny, Purpose: "DNS (the system's resolvers), for the proxy's name", Key: key},
				Rule{Dir: Out, Proto: "tcp", Port: 53, Remote: RemoteAny, Purpose: "DNS (the system's resolvers), for the proxy's name", Key: key})
		}
		return rules
	}
	var out []Rule
	for _, p := range ports {
		out = append(out, Rule{Dir: Out, Proto: "tcp", Port: p, Remote: RemoteAny, Hosts: byPort[p], Purpose: "WAN: HTTPS to the vendor's cloud services", Key: keyByPort[p]})
	}
	return append(out,
		Rule{Dir: Out, Proto: "udp", Port: 53, Remote: RemoteAny, Purpose: "DNS (the system's resolvers)"},
		Rule{Dir: Out, Proto: "tcp", Port: 53, Remote: RemoteAny, Purpose: "DNS (the system's resolvers)"})
}

// blobHost is the host and port of the shop's own Blob container when the configuration names
// it, with the key that does, as sync/media chooses (media.container_url first, else
// media.connection_string); key "" when the cloud names the container.
func blobHost(m config.Media) (host string, port int, key string) {
	if u := strings.TrimSpace(m.ContainerURL.Reveal()); u != "" {
		h, p := hostPort(u)
		return h, p, "media.container_url"
	}
	cs := m.ConnectionString.Reveal()
	if strings.TrimSpace(cs) == "" {
		return "", 0, ""
	}
	const key2 = "media.connection_string"
	part := func(name string) string { return strings.TrimSpace(config.ConnectionStringPart(cs, name)) }
	if ep := part("BlobEndpoint"); ep != "" {
		h, p := hostPort(ep)
		return h, p, key2
	}
	if a := part("AccountName"); a != "" {
		suffix, scheme := part("EndpointSuffix"), part("DefaultEndpointsProtocol")
		if suffix == "" {
			suffix = "core.windows.net"
		}
		if scheme == "" {
			scheme = "https"
		}
		h, p := hostPort(scheme + "://" + a + ".blob." + suffix)
		return h, p, key2
	}
	return "", 0, key2
}

// blobProbes are the names Blob storage named by the cloud is matched against NO_PROXY by: one
// of Azure's, and each account of Azure's that NO_PROXY names (the cloud may name that one).
func blobProbes(noProxy string) []string {
	probes := []string{"storeedge.blob.core.windows.net"}
	for entry := range strings.SplitSeq(noProxy, ",") {
		entry = strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(entry)), "*"), ".")
		if h, _, err := net.SplitHostPort(entry); err == nil {
			entry = h
		}
		if strings.HasSuffix(entry, ".blob.core.windows.net") {
			probes = append(probes, entry)
		}
	}
	return probes
}

// wanTarget is a WAN service's host as the rules name it, the names NO_PROXY is matched
// against, and its port.
type wanTarget struct {
	host   string
	probes []string
	port   int
}

// direct says whether the dialer sends any of t's names past env's proxy.
func (t wanTarget) direct(env Environment) bool {
	for _, p := range t.probes {
		if env.Direct(net.JoinHostPort(p, strconv.Itoa(t.port))) {
			return true
		}
	}
	return false
}

func hostPort(raw string) (string, int) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return "", 0
	}
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		port = p
	}
	return u.Hostname(), port
}

func serviceBusHost(sb config.ServiceBus) (string, int) {
	for _, part := range strings.Split(sb.ConnectionString.Reveal(), ";") {
		if name, value, ok := strings.Cut(part, "="); ok && strings.EqualFold(name, "Endpoint") {
			h, _ := hostPort(strings.Replace(value, "sb://", "https://", 1))
			if sb.Transport == config.TransportWebSockets {
				return h, 443
			}
			return h, 5671
		}
	}
	return "", 0
}

// isIP tells an address that a host firewall can filter on from a name it cannot.
func isIP(s string) bool { return net.ParseIP(s) != nil }

// isIPv6 tells an IPv6 address.
func isIPv6(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.To4() == nil
}

func comment(r Rule) string {
	c := r.Purpose
	if len(r.Hosts) > 0 {
		c += ": " + strings.Join(r.Hosts, ", ")
	}
	if r.Key != "" {
		c += fmt.Sprintf(" (%s)", r.Key)
	}
	return c
}
