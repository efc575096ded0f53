package firewall

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Formats that Write knows.
var Formats = []string{"table", "nftables", "iptables", "ufw", "netsh", "powershell"}

// Options shape the rules written.
type Options struct {
	// AdminPorts are TCP ports kept open inbound for administration (SSH: 22) by the formats
	// that set a whole inbound policy (nftables, iptables).
	AdminPorts []int
	// OutboundDrop makes nftables and iptables drop outbound traffic that the rules do not name
	// (NTP and the loopback stay open); the default lets it out.
	OutboundDrop bool
}

// Write writes rules in format.
func Write(w io.Writer, format string, rules []Rule, o Options) error {
	switch format {
	case "table":
		return writeTable(w, rules)
	case "nftables":
		return writeNFT(w, rules, o)
	case "iptables":
		return writeIPTables(w, rules, o)
	case "ufw":
		return writeUFW(w, rules)
	case "netsh":
		return writeNetsh(w, rules)
	case "powershell":
		return writePowerShell(w, rules)
	}
	return fmt.Errorf("firewall: unknown format %q; want one of %s", format, strings.Join(Formats, ", "))
}

func writeTable(w io.Writer, rules []Rule) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DIRECTION\tPROTOCOL\tPORT\tREMOTE\tHOSTS\tPURPOSE\tKEY")
	for _, r := range rules {
		port := fmt.Sprint(r.Port)
		if r.Local {
			port = "from " + port
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Dir, r.Proto, port, r.Remote, dash(strings.Join(r.Hosts, ", ")), r.Purpose, dash(r.Key))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// toRemote tells whether the rule's address is the packets' destination: outbound, or a
// multicast group (mDNS queries are sent to the group); else it is their source.
func toRemote(r Rule) bool {
	ip := net.ParseIP(r.Remote)
	return r.Dir == Out || ip != nil && ip.IsMulticast()
}

// portMatch is which port of the packets the rule's port is: the destination's, or the
// source's for an outbound rule on the server's own port.
func portMatch(r Rule) string {
	if r.Local && r.Dir == Out {
		return "sport"
	}
	return "dport"
}

// nftMatch is the rule's match in nftables syntax.
func nftMatch(r Rule) string {
	m := fmt.Sprintf("%s %s %d", r.Proto, portMatch(r), r.Port)
	if isIP(r.Remote) {
		family := "ip"
		if isIPv6(r.Remote) {
			family = "ip6"
		}
		addr := "saddr"
		if toRemote(r) {
			addr = "daddr"
		}
		m = fmt.Sprintf("%s %s %s %s", family, addr, r.Remote, m)
	}
	return m
}

func writeNFT(w io.Writer, rules []Rule, o Options) error {
	out := "accept"
	if o.OutboundDrop {
		out = "drop"
	}
	var b strings.Builder
	b.WriteString("#!/usr/sbin/nft -f\n# storeedge: the firewall this configuration needs. Apply with: nft -f FILE\n")
	b.WriteString("# It replaces only its own table (inet storeedge); inbound, what it does not name is dropped.\n")
	b.WriteString("table inet storeedge\ndelete table inet storeedge\ntable inet storeedge {\n")
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n")
	b.WriteString("\t\tct state established,related accept\n\t\tct state invalid drop\n\t\tiif \"lo\" accept\n")
	b.WriteString("\t\tmeta l4proto { icmp, ipv6-icmp } accept\n")
	for _, p := range o.AdminPorts {
		fmt.Fprintf(&b, "\t\ttcp dport %d accept comment \"administration (--admin-port)\"\n", p)
	}
	for _, r := range rules {
		if r.Dir == In {
			fmt.Fprintf(&b, "\t\t%s accept comment %q\n", nftMatch(r), truncate(comment(r), nftComment))
		}
	}
	fmt.Fprintf(&b, "\t}\n\tchain output {\n\t\ttype filter hook output priority filter; policy %s;\n", out)
	b.WriteString("\t\tct state established,related accept\n\t\toif \"lo\" accept\n\t\tmeta l4proto { icmp, ipv6-icmp } accept\n")
	b.WriteString("\t\tudp dport 123 accept comment \"NTP: the clock (storeedge doctor checks it)\"\n")
	for _, r := range rules {
		if r.Dir == Out {
			fmt.Fprintf(&b, "\t\t%s accept comment %q\n", nftMatch(r), truncate(comment(r), nftComment))
		}
	}
	b.WriteString("\t}\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// nftComment is the longest comment nftables takes.
const nftComment = 128

func iptMatch(r Rule) string {
	m := fmt.Sprintf("-p %s --%s %d", r.Proto, portMatch(r), r.Port)
	if isIP(r.Remote) {
		flag := "-s"
		if toRemote(r) {
			flag = "-d"
		}
		m = fmt.Sprintf("%s %s %s", flag, r.Remote, m)
	}
	return m
}

func writeIPTables(w io.Writer, rules []Rule, o Options) error {
	var b strings.Builder
	b.WriteString("# storeedge: the firewall this configuration needs, for IPv4. The rules for IPv6 addresses are\n")
	b.WriteString("# listed at the end as comments, for ip6tables (which also needs ICMPv6: neighbour discovery).\n")
	b.WriteString("iptables -N STOREEDGE-IN 2>/dev/null || iptables -F STOREEDGE-IN\n")
	b.WriteString("iptables -N STOREEDGE-OUT 2>/dev/null || iptables -F STOREEDGE-OUT\n")
	for _, p := range o.AdminPorts {
		fmt.Fprintf(&b, "iptables -A STOREEDGE-IN -p tcp --dport %d -j ACCEPT -m comment --comment \"administration\"\n", p)
	}
	b.WriteString("iptables -A STOREEDGE-IN -p icmp -j ACCEPT -m comment --comment \"ICMP: ping, and the errors connections need\"\n")
	var v6 []Rule
	for _, r := range rules {
		if isIPv6(r.Remote) {
			v6 = append(v6, r)
			continue
		}
		chain := "STOREEDGE-IN"
		if r.Dir == Out {
			chain = "STOREEDGE-OUT"
		}
		fmt.Fprintf(&b, "iptables -A %s %s -j ACCEPT -m comment --comment %q\n", chain, iptMatch(r), truncate(comment(r), 250))
	}
	b.WriteString("iptables -C INPUT -j STOREEDGE-IN 2>/dev/null || iptables -A INPUT -j STOREEDGE-IN\n")
	b.WriteString("iptables -C OUTPUT -j STOREEDGE-OUT 2>/dev/null || iptables -A OUTPUT -j STOREEDGE-OUT\n")
	b.WriteString("iptables -C INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT 2>/dev/null || iptables -I INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n")
	b.WriteString("iptables -C INPUT -i lo -j ACCEPT 2>/dev/null || iptables -I INPUT -i lo -j ACCEPT\n")
	b.WriteString("iptables -P INPUT DROP\n")
	if o.OutboundDrop {
		b.WriteString("iptables -C OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT 2>/dev/null || iptables -I OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n")
		b.WriteString("iptables -C OUTPUT -o lo -j ACCEPT 2>/dev/null || iptables -I OUTPUT -o lo -j ACCEPT\n")
		b.WriteString("iptables -A STOREEDGE-OUT -p icmp -j ACCEPT\n")
		b.WriteString("iptables -A STOREEDGE-OUT -p udp --dport 123 -j ACCEPT\niptables -P OUTPUT DROP\n")
	}
	for _, r := range v6 {
		chain := "STOREEDGE-IN"
		if r.Dir == Out {
			chain = "STOREEDGE-OUT"
		}
		fmt.Fprintf(&b, "# ip6tables -A %s %s -j ACCEPT -m comment --comment %q\n", chain, iptMatch(r), truncate(comment(r), 250))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeUFW(w io.Writer, rules []Rule) error {
	var b strings.Builder
	b.WriteString("# storeedge: the firewall this configuration needs. ufw denies what it does not allow inbound.\n")
	for _, r := range rules {
		dir := "in"
		if r.Dir == Out {
			dir = "out"
		}
		target := ""
		if r.Local && r.Dir == Out {
			fmt.Fprintf(&b, "ufw allow out proto %s from any port %d comment %q\n", r.Proto, r.Port, truncate(comment(r), 200))
			continue
		}
		if isIP(r.Remote) {
			if !toRemote(r) {
				target = " from " + r.Remote
			} else {
				target = " to " + r.Remote
			}
			fmt.Fprintf(&b, "ufw allow %s proto %s%s port %d comment %q\n", dir, r.Proto, target, r.Port, truncate(comment(r), 200))
			continue
		}
		fmt.Fprintf(&b, "ufw allow %s %d/%s comment %q\n", dir, r.Port, r.Proto, truncate(comment(r), 200))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// winRule is a rule as Windows's firewall takes it: a name of its own (a rule deleted by name
// takes every rule of that name with it), and the port on the server's side or the remote's.
type winRule struct {
	Rule
	name, legacy string // legacy: the name earlier versions gave it, deleted too
	local        bool   // the port is the server's
	remote       string // a remote address to filter on, "" for any
	skip         bool   // the same rule to Windows as an earlier one: not added
}

// winRules names rules for Windows and marks to skip those that Windows would take as the same
// as an earlier one (two rules that differ only by a multicast group, which Windows does not
// filter by; a webhook on the proxy's address and port).
func winRules(rules []Rule) []winRule {
	var out []winRule
	seen := map[string]bool{}
	names := map[string]int{}
	for _, r := range rules {
		w := winRule{Rule: r, local: r.Dir == In || r.Local}
		if isIP(r.Remote) && !net.ParseIP(r.Remote).IsMulticast() {
			w.remote = r.Remote
		}
		w.legacy = fmt.Sprintf("storeedge %s %s %d", r.Dir, r.Proto, r.Port)
		w.name = w.legacy
		if w.local && r.Dir == Out {
			w.name = fmt.Sprintf("storeedge %s %s from %d", r.Dir, r.Proto, r.Port)
		}
		if r.Key != "" {
			w.name += " (" + r.Key + ")"
		}
		same := fmt.Sprint(r.Dir, r.Proto, r.Port, w.local, w.remote)
		if seen[same] {
			w.skip = true // its name is deleted still: an earlier run may have made it
			out = append(out, w)
			continue
		}
		seen[same] = true
		if names[w.name]++; names[w.name] > 1 {
			w.name += fmt.Sprintf(" #%d", names[w.name])
		}
		out = append(out, w)
	}
	return out
}

// wanKeys are the keys an outbound WAN rule may be named after; a port's rule may have had
// another of them before (its first host's key, the proxy's variable).
var wanKeys = []string{"cloud.url", "servicebus.connection_string", "media.container_url", "media.connection_string",
	"logs.ship.url", "support.servicebus.connection_string", "wan.proxy", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"}

// winDeletes are the names a Windows script deletes before it adds its rules, each once: every
// rule's, the name earlier versions gave it, and an outbound rule's names under the other keys
// its port may have been named after.
func winDeletes(ws []winRule) []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range ws {
		candidates := []string{r.legacy, r.name}
		if r.Dir == Out && slices.Contains(wanKeys, r.Key) {
			for _, k := range wanKeys {
				candidates = append(candidates, r.legacy+" ("+k+")")
			}
		}
		for _, name := range candidates {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	return names
}

func writeNetsh(w io.Writer, rules []Rule) error {
	var b strings.Builder
	b.WriteString("REM storeedge: the firewall this configuration needs. Run in an administrator's command prompt.\n")
	ws := winRules(rules)
	for _, name := range winDeletes(ws) {
		fmt.Fprintf(&b, "netsh advfirewall firewall delete rule name=%q >nul 2>&1\n", name)
	}
	for _, r := range ws {
		if r.skip {
			continue
		}
		remote := ""
		if r.remote != "" {
			remote = " remoteip=" + r.remote
		}
		side := "remote"
		if r.local {
			side = "local"
		}
		// ProgramW6432 is C:\Program Files in a 32-bit shell too, where ProgramFiles is the
		// (x86) folder, which holds no storeedge (built for 64-bit Windows only).
		prog := ` program="%ProgramW6432%\storeedge\storeedge.exe"`
		fmt.Fprintf(&b, "netsh advfirewall firewall add rule name=%q dir=%s action=allow protocol=%s %sport=%d%s%s profile=any description=%q\n",
			r.name, r.Dir, strings.ToUpper(r.Proto), side, r.Port, remote, prog, truncate(comment(r.Rule), 250))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writePowerShell(w io.Writer, rules []Rule) error {
	var b strings.Builder
	b.WriteString("# storeedge: the firewall this configuration needs. Run in an administrator's PowerShell.\n")
	b.WriteString("$program = \"$env:ProgramW6432\\storeedge\\storeedge.exe\"\n")
	// Every rule storeedge made before, whatever the configuration then (a port no longer used
	// included), then those of this one: the rules left are exactly these. Its names begin
	// "storeedge in " or "storeedge out ", not an admin's own "storeedge RDP", say.
	b.WriteString("Get-NetFirewallRule -DisplayName 'storeedge in *', 'storeedge out *' -ErrorAction SilentlyContinue | Remove-NetFirewallRule\n")
	ws := winRules(rules)
	for _, name := range winDeletes(ws) {
		fmt.Fprintf(&b, "Remove-NetFirewallRule -DisplayName '%s' -ErrorAction SilentlyContinue\n", psQuote(name))
	}
	for _, r := range ws {
		if r.skip {
			continue
		}
		dir := map[string]string{In: "Inbound", Out: "Outbound"}[r.Dir]
		portArg := "-RemotePort"
		if r.local {
			portArg = "-LocalPort"
		}
		remote := ""
		if r.remote != "" {
			remote = " -RemoteAddress " + r.remote
		}
		fmt.Fprintf(&b, "New-NetFirewallRule -DisplayName '%s' -Direction %s -Action Allow -Protocol %s %s %d%s -Program $program -Profile Any -Description '%s' | Out-Null\n",
			psQuote(r.name), dir, strings.ToUpper(r.Proto), portArg, r.Port, remote, psQuote(truncate(comment(r.Rule), 250)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// psQuote makes s safe inside a single-quoted PowerShell string.
func psQuote(s string) string { return strings.ReplaceAll(s, "'", "''") }

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for len(s) > 0 && !utf8.RuneStart(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s[:len(s)-1] + "..."
}
