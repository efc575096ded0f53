package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/firewall"
)

const firewallUsage = `Usage: storeedge firewall [--config PATH] [--set KEY=VALUE ...] [--format FORMAT]
                          [--admin-port 22] [--outbound-drop]

Prints the firewall rules this configuration needs, inbound and outbound: the LAN ports
(lan.front_door, lan.services.*), UDP discovery (discovery.udp.port) and mDNS (UDP 5353), the
push port to devices (devices.push_port_default), and HTTPS to the vendor's cloud, Service Bus
and Blob storage (or only to the proxy, when wan.proxy is set), and DNS. Formats:
  table       for a network team: direction, protocol, port, remote, host names, purpose, key
  nftables    a complete "inet storeedge" table: nft -f FILE (inbound policy drop)
  iptables    commands for chains STOREEDGE-IN/-OUT (inbound policy drop)
  ufw         ufw allow commands
  netsh       Windows: netsh advfirewall commands (command prompt, as administrator)
  powershell  Windows: New-NetFirewallRule commands (PowerShell, as administrator)
A host firewall cannot filter by host name and the cloud's addresses change: the host rules open
the port, the table names the hosts for a firewall that can (a proxy or a perimeter firewall).
`

// cmdFirewall is "storeedge firewall".
func cmdFirewall(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	var format, admin string
	var outDrop bool
	// The rules need no store key.
	cfg, err := loadConfigWith("firewall", firewallUsage, args, env, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&format, "format", "table", "one of "+strings.Join(firewall.Formats, ", "))
		fs.StringVar(&admin, "admin-port", "22", "TCP ports kept open inbound for administration by nftables and iptables, comma-separated; \"\" for none")
		fs.BoolVar(&outDrop, "outbound-drop", false, "nftables and iptables: drop outbound traffic the rules do not name")
	}, "cloud.store_key")
	if err != nil {
		return err
	}
	o := firewall.Options{OutboundDrop: outDrop}
	for _, p := range strings.Split(admin, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return usageError{fmt.Errorf("firewall: --admin-port %q: want port numbers between 1 and 65535", admin)}
		}
		o.AdminPorts = append(o.AdminPorts, n)
	}
	if err := firewall.Write(stdout, format, firewall.RulesIn(cfg, firewallEnvironment(env)), o); err != nil {
		return usageError{err}
	}
	return nil
}

// firewallEnvironment is the proxy the server takes from env (its variables, as the service
// would have them when this command runs with the service's environment).
func firewallEnvironment(env []string) firewall.Environment {
	return wan.EnvironmentProxy(func(name string) string {
		for i := len(env) - 1; i >= 0; i-- { // the last definition wins, as in os.Getenv
			if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
				return v
			}
		}
		return ""
	})
}
