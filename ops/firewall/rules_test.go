package firewall

import (
	"slices"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
)

func TestRulesFollowTheConfiguration(t *testing.T) {
	c := config.Default()
	c.LAN.Services = config.Services{Catalog: 8000}
	c.Discovery.MDNS.Enabled = false
	c.ServiceBus.Enabled = true
	c.ServiceBus.ConnectionString = "Endpoint=sb://shop-ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v"
	var b strings.Builder
	if err := Write(&b, "table", Rules(c), Options{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "logmatic") || strings.Contains(b.String(), "vendor-support") {
		t.Errorf("log shipping and support off, the table names their hosts:\n%s", b.String())
	}
	c.Logs.Ship.Enabled = true
	c.Support.ServiceBus.Enabled = true
	c.Support.ServiceBus.ConnectionString = "Endpoint=sb://vendor-support.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v"
	b.Reset()
	if err := Write(&b, "table", Rules(c), Options{}); err != nil {
		t.Fatal(err)
	}
	table := b.String()
	for _, want := range []string{"api.logmatic.io", "in         tcp       80 ", "in         tcp       8000", "udp       57854", "tcp       8081", "api.server.commerce-hub.io, shop-ns.servicebus.windows.net", "vendor-support.servicebus.windows.net", "DNS"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, gone := range []string{"8001", "5353"} {
		if strings.Contains(table, gone) {
			t.Errorf("table opens %s, which the configuration turns off:\n%s", gone, table)
		}
	}
	// Behind a proxy, the only way out to the WAN is the proxy.
	c.WAN.Proxy = "http://user:secret@10.1.2.3:3128"
	b.Reset()
	Write(&b, "nftables", Rules(c), Options{})
	nft := b.String()
	if !strings.Contains(nft, "ip daddr 10.1.2.3 tcp dport 3128 accept") || strings.Contains(nft, "dport 443") || strings.Contains(nft, "secret") || strings.Contains(nft, "dport 53") {
		t.Errorf("rules behind a proxy:\n%s", nft)
	}
	// A proxy given by name needs DNS to be found.
	c.WAN.Proxy = "http://proxy.lan:3128"
	b.Reset()
	Write(&b, "nftables", Rules(c), Options{OutboundDrop: true})
	if nft := b.String(); !strings.Contains(nft, "tcp dport 3128") || !strings.Contains(nft, "udp dport 53") || strings.Contains(nft, "dport 443") {
		t.Errorf("rules behind a proxy given by name:\n%s", nft)
	}
	c.WAN.Proxy = "http://user:secret@10.1.2.3:3128"
	for _, f := range Formats {
		b.Reset()
		if err := Write(&b, f, Rules(c), Options{AdminPorts: []int{22}}); err != nil || b.Len() == 0 {
			t.Errorf("format %s: %v", f, err)
		}
	}
	if err := Write(&b, "pf", nil, Options{}); err == nil {
		t.Error("unknown format accepted")
	}
}

// The alerts' mail server is reached directly, also when the WAN goes through a proxy.
func TestRulesOpenTheMailServer(t *testing.T) {
	c := config.Default()
	c.WAN.Proxy = "http://10.1.2.3:3128"
	c.SMTP.Host, c.SMTP.Port = "192.168.1.5", 25
	var b strings.Builder
	Write(&b, "nftables", Rules(c), Options{})
	if nft := b.String(); !strings.Contains(nft, "ip daddr 192.168.1.5 tcp dport 25 accept") || strings.Contains(nft, "dport 53 ") {
		t.Errorf("a mail server by address:\n%s", nft)
	}

	c.SMTP.Host, c.SMTP.Port = "smtp.office365.com", 587
	b.Reset()
	Write(&b, "table", Rules(c), Options{})
	table := b.String()
	for _, want := range []string{"tcp       587", "smtp.office365.com", "alerts by e-mail", "DNS (the system's resolvers), for smtp.host"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	c.WAN.Proxy = ""
	b.Reset()
	Write(&b, "table", Rules(c), Options{})
	if n := strings.Count(b.String(), "udp       53     "); n != 1 {
		t.Errorf("DNS opened %d times without a proxy:\n%s", n, b.String())
	}
}

// The back office's webhook is called directly, also when the WAN goes through a proxy; one on
// this machine needs no rule.
func TestRulesOpenTheWebhook(t *testing.T) {
	c := config.Default()
	c.WAN.Proxy = "http://10.1.2.3:3128"
	c.BackOffice.Webhook.URL = "https://erp.shop.lan:8443/orders"
	var b strings.Builder
	Write(&b, "table", Rules(c), Options{})
	table := b.String()
	for _, want := range []string{"tcp       8443", "erp.shop.lan", "orders to the back office's webhook", "DNS (the system's resolvers), for backoffice.webhook.url"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	c.BackOffice.Webhook.URL = "http://127.0.0.1:9000/orders"
	b.Reset()
	Write(&b, "nftables", Rules(c), Options{})
	if nft := b.String(); strings.Contains(nft, "9000") || strings.Contains(nft, "dport 53 ") {
		t.Errorf("a webhook on this machine opened:\n%s", nft)
	}
}

// A WAN service on another port than 443 gets that port (install.md): a log intake URL that
// names one, and a Service Bus on amqp (5671), which cannot go through the proxy, so that the
// rules are then those without one.
func TestRulesOpenOtherWANPorts(t *testing.T) {
	c := config.Default()
	c.Logs.Ship.Enabled = true
	c.Logs.Ship.URL = "https://logs.example.com:8443/in"
	c.ServiceBus.Enabled = true
	c.ServiceBus.Transport = config.TransportAMQP
	c.ServiceBus.ConnectionString = "Endpoint=sb://shop-ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v"
	c.WAN.Proxy = "http://10.1.2.3:3128"
	var b strings.Builder
	if err := Write(&b, "table", Rules(c), Options{}); err != nil {
		t.Fatal(err)
	}
	table := b.String()
	fields := strings.Join(strings.Fields(table), " ") // the columns' widths aside
	for _, want := range []string{"tcp 8443 any logs.example.com", "tcp 5671 any shop-ns.servicebus.windows.net", "tcp 443 any api.server.commerce-hub.io"} {
		if !strings.Contains(fields, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "3128") {
		t.Errorf("with Service Bus on amqp, the rules still go through the proxy:\n%s", table)
	}
}

// A rule Windows takes as the same as another is not added twice, but its own name is deleted,
// as an earlier run may have made it (a webhook moved onto the mail server's address and port).
func TestWindowsRuleTakenAsAnotherIsNotAdded(t *testing.T) {
	c := config.Default()
	c.SMTP.Host, c.SMTP.Port = "10.0.0.7", 587
	c.BackOffice.Webhook.URL = "https://10.0.0.7:587/hook"
	var b strings.Builder
	if err := Write(&b, "netsh", Rules(c), Options{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, `delete rule name="storeedge out tcp 587 (backoffice.webhook.url)"`) ||
		strings.Contains(out, `add rule name="storeedge out tcp 587 (backoffice.webhook.url)"`) ||
		strings.Count(out, "add rule name=\"storeedge out tcp 587 (smtp.port)\"") != 1 {
		t.Errorf("a webhook on the mail server's address and port:\n%s", out)
	}
}

// Windows deletes every rule of a name before adding it again: no two rules may share one (a
// proxy and a webhook on the same port did, and the webhook's took the proxy's away).
func TestWindowsRuleNamesAreUnique(t *testing.T) {
	c := config.Default()
	c.WAN.Proxy = "http://10.0.0.5:3128"
	c.BackOffice.Webhook.URL = "https://10.0.0.9:3128/hook"
	for _, format := range []string{"netsh", "powershell"} {
		var b strings.Builder
		if err := Write(&b, format, Rules(c), Options{}); err != nil {
			t.Fatal(err)
		}
		added := map[string]bool{}
		for _, line := range strings.Split(b.String(), "\n") {
			name, isAdd, isDelete := ruleName(format, line)
			switch {
			case isAdd && added[name]:
				t.Errorf("%s: two rules named %q:\n%s", format, name, b.String())
			case isAdd:
				added[name] = true
			case isDelete && len(added) > 0:
				t.Errorf("%s: %q deleted after rules were added:\n%s", format, name, b.String())
			}
		}
		for _, want := range []string{"3128 (wan.proxy)", "3128 (backoffice.webhook.url)", "from 57854 (discovery.udp.port)"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s: no rule named after %q:\n%s", format, want, b.String())
			}
		}
		// One mDNS rule in, two out (to the group; from the server's port): the legacy name of
		// the two out rules is one, deleted once.
		n := 0
		for _, line := range strings.Split(b.String(), "\n") {
			if strings.Contains(line, " 5353") {
				n++
			}
		}
		if n != 3+5 {
			t.Errorf("%s: %d lines for 5353, want a delete of the old name, a delete and an add in, and the same out with one more delete and add:\n%s", format, n, b.String())
		}
	}
}

// ruleName reads the rule name of a netsh or PowerShell line, and whether it adds or deletes.
func ruleName(format, line string) (name string, add, del bool) {
	var prefix string
	switch {
	case format == "netsh" && strings.HasPrefix(line, "netsh advfirewall firewall add rule name="):
		prefix, add = "netsh advfirewall firewall add rule name=", true
	case format == "netsh" && strings.HasPrefix(line, "netsh advfirewall firewall delete rule name="):
		prefix, del = "netsh advfirewall firewall delete rule name=", true
	case format == "powershell" && strings.HasPrefix(line, "New-NetFirewallRule -DisplayName "):
		prefix, add = "New-NetFirewallRule -DisplayName ", true
	case format == "powershell" && strings.HasPrefix(line, "Remove-NetFirewallRule -DisplayName "):
		prefix, del = "Remove-NetFirewallRule -DisplayName ", true
	default:
		return "", false, false
	}
	rest := line[len(prefix):]
	quote := rest[:1]
	end := strings.Index(rest[1:], quote)
	return rest[1 : end+1], add, del
}

// Discovery's answers leave from the server's port to the device's; mDNS is on IPv4 only; the
// iptables rules (IPv4) let ICMP through as nftables's do.
func TestRulesForDiscoveryAndICMP(t *testing.T) {
	c := config.Default()
	var b strings.Builder
	Write(&b, "nftables", Rules(c), Options{OutboundDrop: true})
	nft := b.String()
	for _, want := range []string{"udp sport 57854 accept", "udp dport 57854 accept", "ip daddr 224.0.0.251 udp dport 5353 accept", "udp sport 5353 accept"} {
		if !strings.Contains(nft, want) {
			t.Errorf("nftables lacks %q:\n%s", want, nft)
		}
	}
	b.Reset()
	Write(&b, "iptables", Rules(c), Options{OutboundDrop: true})
	ipt := b.String()
	for _, want := range []string{"-A STOREEDGE-IN -p icmp -j ACCEPT", "-A STOREEDGE-OUT -p icmp -j ACCEPT", "-A STOREEDGE-OUT -p udp --sport 57854 -j ACCEPT"} {
		if !strings.Contains(ipt, want) {
			t.Errorf("iptables lacks %q:\n%s", want, ipt)
		}
	}
	if strings.Contains(nft+ipt, "ff02") {
		t.Errorf("a rule for mDNS over IPv6, which the server does not speak:\n%s\n%s", nft, ipt)
	}
	b.Reset()
	Write(&b, "ufw", Rules(c), Options{})
	if ufw := b.String(); !strings.Contains(ufw, "ufw allow out proto udp from any port 57854 ") {
		t.Errorf("ufw lacks the answers' rule:\n%s", ufw)
	}
}

// With wan.proxy empty and wan.use_environment on (the defaults), the server goes through the
// proxy its environment names: the WAN rules open the way to that proxy, not port 443 to any
// host, which --outbound-drop would leave as the proxy's port dropped and the WAN cut.
func TestRulesFollowTheProxyOfTheEnvironment(t *testing.T) {
	c := config.Default()
	proxyRule := func(rules []Rule) *Rule {
		for i, r := range rules {
			if r.Dir == Out && strings.HasPrefix(r.Purpose, "WAN") {
				return &rules[i]
			}
		}
		return nil
	}
	for _, tc := range []struct {
		name       string
		proxy      string
		env        Environment
		useEnv     bool
		remote     string
		port       int
		key        string
		wantDirect bool
	}{
		{name: "from the environment", env: Environment{Proxy: "http://10.0.0.9:3128", ProxySource: "HTTPS_PROXY"}, useEnv: true, remote: "10.0.0.9", port: 3128, key: "HTTPS_PROXY"},
		{name: "without a scheme nor a port", env: Environment{Proxy: "proxy.lan", ProxySource: "HTTP_PROXY"}, useEnv: true, remote: "proxy.lan", port: 80, key: "HTTP_PROXY"},
		{name: "a SOCKS5 proxy without a port", env: Environment{Proxy: "socks5h://10.0.0.9", ProxySource: "ALL_PROXY"}, useEnv: true, remote: "10.0.0.9", port: 1080, key: "ALL_PROXY"},
		{name: "wan.proxy comes first", proxy: "http://10.0.0.7:8080", env: Environment{Proxy: "http://10.0.0.9:3128", ProxySource: "HTTPS_PROXY"}, useEnv: true, remote: "10.0.0.7", port: 8080, key: "wan.proxy"},
		{name: "the environment not used", env: Environment{Proxy: "http://10.0.0.9:3128", ProxySource: "HTTPS_PROXY"}, useEnv: false, wantDirect: true},
		{name: "direct", proxy: "direct", env: Environment{Proxy: "http://10.0.0.9:3128", ProxySource: "HTTPS_PROXY"}, useEnv: true, wantDirect: true},
	} {
		c.WAN.Proxy = config.Proxy(tc.proxy)
		c.WAN.UseEnvironment = tc.useEnv
		r := proxyRule(RulesIn(c, tc.env))
		switch {
		case r == nil:
			t.Errorf("%s: no WAN rule", tc.name)
		case tc.wantDirect:
			if r.Remote != RemoteAny || r.Port != 443 {
				t.Errorf("%s: the WAN rule is %+v, want 443 to any host", tc.name, *r)
			}
		case r.Remote != tc.remote || r.Port != tc.port || r.Key != tc.key:
			t.Errorf("%s: the WAN rule is %+v, want %s port %d (%s)", tc.name, *r, tc.remote, tc.port, tc.key)
		}
	}
	// NO_PROXY sends some targets past the proxy (Blob storage, say): their direct way stays
	// open beside the proxy's, or --outbound-drop would cut them; a NO_PROXY that names none of
	// the WAN's hosts (the usual localhost list, the shop's own domain) opens nothing more.
	c.WAN.Proxy, c.WAN.UseEnvironment = "", true
	for _, tc := range []struct {
		noProxy, media string
		direct         string // the host the direct rule names; "" for none
	}{
		{".blob.core.windows.net", "", "the Blob storage host"},
		{"blob.core.windows.net", "", "the Blob storage host"},
		{"*", "", "api.server.commerce-hub.io"},
		{"commerce-hub.io", "", "api.server.commerce-hub.io"},
		{"localhost,127.0.0.1,::1,.shop.lan,10.0.0.0/8", "", ""},
		{"media.shop.example", "https://media.shop.example/c?sig=x", "media.shop.example"},
		{"acme.blob.core.windows.net", "", "the Blob storage host"}, // the account the cloud may name
		{"acme.blob.core.windows.net:443", "", "the Blob storage host"},
		{"*.acme.blob.core.windows.net", "", ""}, // subdomains of the account: no host Azure gives
		{".blob.core.windows.net", "https://media.shop.example/c?sig=x", ""},
	} {
		c.Media.ContainerURL = config.Secret(tc.media)
		rules := RulesIn(c, Environment{Proxy: "http://10.0.0.9:3128", ProxySource: "HTTPS_PROXY", NoProxy: tc.noProxy})
		var toProxy, dns bool
		var direct []string
		for _, r := range rules {
			toProxy = toProxy || r.Remote == "10.0.0.9" && r.Port == 3128
			if r.Dir == Out && r.Remote == RemoteAny && r.Port == 443 && r.Key == "NO_PROXY" {
				direct = append(direct, r.Hosts...)
			}
			dns = dns || r.Dir == Out && r.Port == 53 && r.Proto == "udp"
		}
		switch {
		case !toProxy:
			t.Errorf("NO_PROXY=%s: no way to the proxy: %+v", tc.noProxy, rules)
		case tc.direct == "" && len(direct) > 0:
			t.Errorf("NO_PROXY=%s: direct to %v, which it sends through the proxy", tc.noProxy, direct)
		case tc.direct != "" && (len(direct) == 0 || !strings.HasPrefix(strings.Join(direct, "|"), tc.direct) || !dns):
			t.Errorf("NO_PROXY=%s: direct to %v (DNS %v), want %s and DNS", tc.noProxy, direct, dns, tc.direct)
		}
	}
	c.Media.ContainerURL = ""
	// The shop's own Blob endpoint on a port of its own is reached there, direct or not.
	c.Media.ConnectionString = "BlobEndpoint=http://azurite.lan:10000/devstoreaccount1; SharedAccessSignature=sv=1&sig=x"
	for _, env := range []Environment{{}, {Proxy: "http://10.0.0.9:3128", ProxySource: "HTTPS_PROXY", NoProxy: "azurite.lan"}} {
		found := false
		for _, r := range RulesIn(c, env) {
			found = found || r.Port == 10000 && slices.Contains(r.Hosts, "azurite.lan") && (r.Key == "media.connection_string" || env.NoProxy != "" && r.Key == "NO_PROXY")
		}
		if !found {
			t.Errorf("NO_PROXY %q: no rule to azurite.lan:10000 named after media.connection_string: %+v", env.NoProxy, RulesIn(c, env))
		}
	}
	// A Blob store on this machine needs no rule (nor a port open to any host); one on the
	// cloud's host is named once.
	c.Media.ConnectionString = ""
	c.Media.ContainerURL = "http://127.0.0.1:10000/devstoreaccount1/media?sig=x"
	for _, r := range RulesIn(c, Environment{}) {
		if r.Port == 10000 {
			t.Errorf("a rule for the Blob store on loopback: %+v", r)
		}
	}
	c.Media.ContainerURL = config.Secret(c.Cloud.URL + "/media?sig=x")
	for _, r := range RulesIn(c, Environment{}) {
		if r.Port == 443 && r.Dir == Out && len(r.Hosts) != 1 {
			t.Errorf("the cloud's host named twice: %+v", r.Hosts)
		}
	}
	c.Media.ContainerURL = ""
	rules := RulesIn(c, Environment{Proxy: "http://10.0.0.9:3128", ProxySource: "HTTPS_PROXY", NoProxy: ".blob.core.windows.net"})
	for _, format := range []string{"netsh", "powershell", "nftables"} {
		var b strings.Builder
		if err := Write(&b, format, rules, Options{}); err != nil {
			t.Errorf("%s: %v", format, err)
		}
	}
}

// A WAN port's rule once named after another key (the cloud's, before a Blob store of the shop's
// own took the port; the proxy's variable) is deleted by the netsh script; the PowerShell script
// removes every storeedge rule first, those of ports no longer used too.
func TestWindowsScriptsReplaceRulesOfEarlierConfigurations(t *testing.T) {
	c := config.Default()
	c.Media.ConnectionString = "BlobEndpoint=https://azurite.lan:10000/devstoreaccount1;SharedAccessSignature=sv=1&sig=x"
	var netsh, ps strings.Builder
	if err := Write(&netsh, "netsh", Rules(c), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Write(&ps, "powershell", Rules(c), Options{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`delete rule name="storeedge out tcp 10000 (cloud.url)"`, `add rule name="storeedge out tcp 10000 (media.connection_string)"`} {
		if !strings.Contains(netsh.String(), want) {
			t.Errorf("netsh lacks %s:\n%s", want, netsh.String())
		}
	}
	lines := strings.Split(ps.String(), "\n")
	first := -1
	for i, l := range lines {
		if l == "Get-NetFirewallRule -DisplayName 'storeedge in *', 'storeedge out *' -ErrorAction SilentlyContinue | Remove-NetFirewallRule" {
			first = i
		}
		if strings.HasPrefix(l, "New-NetFirewallRule") && (first < 0 || first > i) {
			t.Fatalf("a rule added before every storeedge rule was removed:\n%s", ps.String())
		}
	}
	if first < 0 {
		t.Errorf("PowerShell does not remove the storeedge rules of earlier configurations:\n%s", ps.String())
	}
}

// With lan.bind an IPv6 address mDNS does not run (config.MDNSOff), and with a loopback address
// no discovery at all (config.DiscoveryOff): no rule opens their ports.
// With a loopback lan.bind (the demo's) nothing on the LAN reaches the server: no LAN listener
// and no push to the LAN is opened, the WAN still is.
func TestNoLANRulesWhenBoundToLoopback(t *testing.T) {
	c := config.Default()
	for bind, want := range map[string]bool{"": true, "192.168.1.10": true, "127.0.0.1": false, "::1": false} {
		c.LAN.Bind = bind
		rules := Rules(c)
		front := slices.ContainsFunc(rules, func(r Rule) bool { return r.Dir == In && r.Port == c.LAN.FrontDoor })
		push := slices.ContainsFunc(rules, func(r Rule) bool { return r.Dir == Out && r.Port == c.Devices.PushPortDefault })
		wan := slices.ContainsFunc(rules, func(r Rule) bool { return r.Dir == Out && r.Port == 443 })
		if front != want || push != want || !wan {
			t.Errorf("lan.bind %q: front door opened %v, push %v, WAN %v; want %v, %v, true", bind, front, push, wan, want, want)
		}
	}
}

func TestNoMDNSRulesWhenBoundToIPv6(t *testing.T) {
	c := config.Default()
	for bind, want := range map[string]bool{"": true, "192.168.1.10": true, "fd00::10": false, "127.0.0.1": false} {
		c.LAN.Bind = bind
		opens := slices.ContainsFunc(Rules(c), func(r Rule) bool { return r.Port == mdnsPort })
		if opens != want {
			t.Errorf("lan.bind %q: rules open 5353: %v, want %v", bind, opens, want)
		}
		// UDP discovery runs but for a server devices cannot reach.
		udp := slices.ContainsFunc(Rules(c), func(r Rule) bool { return r.Port == c.Discovery.UDP.Port })
		if udp != (bind != "127.0.0.1") {
			t.Errorf("lan.bind %q: rules open the discovery port: %v", bind, udp)
		}
	}
}

// The Windows rules name the program where install.md puts it, C:\Program Files\storeedge, also
// when the script runs in a 32-bit shell, where %ProgramFiles% is C:\Program Files (x86).
func TestWindowsRulesNameTheProgramIn64BitProgramFiles(t *testing.T) {
	for format, want := range map[string]string{
		"netsh":      `program="%ProgramW6432%\storeedge\storeedge.exe"`,
		"powershell": `$program = "$env:ProgramW6432\storeedge\storeedge.exe"`,
	} {
		var b strings.Builder
		if err := Write(&b, format, Rules(config.Default()), Options{}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), want) || strings.Contains(b.String(), "ProgramFiles") {
			t.Errorf("%s: the rules do not name the program by %s:\n%s", format, want, b.String())
		}
	}
}
