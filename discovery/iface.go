package discovery

import (
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Interface is one network interface of the machine and whether discovery uses it.
type Interface struct {
	Name  string `json:"name"`
	Index int    `json:"-"`
	// Addrs are the interface's IPv4 addresses with their prefix, e.g. "192.168.1.10/24".
	Addrs []netip.Prefix `json:"addrs"`
	// Broadcast is the UDP announcement's destination for each of Addrs ("192.168.1.255").
	Broadcast []netip.Addr `json:"broadcast"`
	// Announce tells whether UDP announcements go out on it; MDNS whether the mDNS service is
	// registered on it. Reason says why not, for shop IT.
	Announce bool   `json:"announce"`
	MDNS     bool   `json:"mdns"`
	Reason   string `json:"reason,omitempty"`

	iface net.Interface
}

// Interfaces lists the machine's interfaces and, for each, whether discovery uses it: an
// interface is used when it is up, not loopback, has an IPv4 address, and is in allowed (an
// empty allowed means every interface). Announcements need a broadcast-capable interface and
// mDNS a multicast-capable one.
func Interfaces(allowed []string) ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]Interface, 0, len(ifs))
	for _, ifc := range ifs {
		out = append(out, classify(ifc, allowed))
	}
	return out, nil
}

func classify(ifc net.Interface, allowed []string) Interface {
	it := Interface{Name: ifc.Name, Index: ifc.Index, iface: ifc}
	if addrs, err := ifc.Addrs(); err == nil {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || !ip.Unmap().Is4() {
				continue
			}
			ip = ip.Unmap()
			ones, bits := ipn.Mask.Size()
			if bits != 32 {
				continue
			}
			it.Addrs = append(it.Addrs, netip.PrefixFrom(ip, ones))
			if ones < 31 && ifc.Flags&net.FlagBroadcast != 0 {
				it.Broadcast = append(it.Broadcast, broadcastAddr(ip, ones))
			}
		}
	}
	switch {
	case len(allowed) > 0 && !slices.Contains(allowed, ifc.Name):
		it.Reason = "not in discovery.interfaces"
	case ifc.Flags&net.FlagUp == 0:
		it.Reason = "down"
	case ifc.Flags&net.FlagLoopback != 0:
		it.Reason = "loopback"
	case len(it.Addrs) == 0:
		it.Reason = "no IPv4 address"
	default:
		it.Announce = ifc.Flags&net.FlagBroadcast != 0 && len(it.Broadcast) > 0
		it.MDNS = ifc.Flags&net.FlagMulticast != 0
		var why []string
		if !it.Announce {
			why = append(why, "no broadcast (no UDP announcements)")
		}
		if !it.MDNS {
			why = append(why, "no multicast (no mDNS)")
		}
		it.Reason = strings.Join(why, "; ")
	}
	return it
}

// broadcastAddr is the directed broadcast address of ip's subnet.
func broadcastAddr(ip netip.Addr, ones int) netip.Addr {
	a := ip.As4()
	for i := ones; i < 32; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(a)
}

// signature is a comparable summary of the interfaces in use, to notice when they change.
func signature(ifs []Interface, mdns bool) string {
	var b strings.Builder
	for _, it := range ifs {
		if (mdns && !it.MDNS) || (!mdns && !it.Announce) {
			continue
		}
		b.WriteString(it.Name)
		for _, a := range it.Addrs {
			b.WriteByte(' ')
			b.WriteString(a.String())
		}
		b.WriteByte(';')
	}
	return b.String()
}
