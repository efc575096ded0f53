package wan

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpproxy"
)

// envSelector picks, per target, between the proxy named by the environment
// and a direct connection.
type envSelector struct {
	route *route                           // nil when no proxy variable is set
	match func(*url.URL) (*url.URL, error) // httpproxy's NO_PROXY and loopback rules
}

// newEnvSelector chooses the proxy from cfg (as httpproxy.FromEnvironment
// reads it: upper-case names first) and allProxy (ALL_PROXY, lower case first).
//
// Every WAN target is tunnelled the same way whatever its scheme, so one proxy
// serves them all: the first set of HTTPS_PROXY, HTTP_PROXY and ALL_PROXY. A
// shop that sets only HTTP_PROXY (common) thus still gets its proxy for the
// HTTPS-only WAN. A value without a scheme means http://, as in httpproxy.
func newEnvSelector(cfg *httpproxy.Config, allProxy string) (*envSelector, error) {
	raw, source := envProxy(cfg, allProxy)
	if raw == "" {
		return &envSelector{}, nil
	}
	r, err := parseProxyURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", source, Redact(raw), err)
	}
	r.source = source
	// httpproxy applies NO_PROXY and never proxies localhost or loopback
	// addresses. Only its HTTPS side is used: targets are asked as https://.
	sel := httpproxy.Config{HTTPSProxy: raw, NoProxy: cfg.NoProxy}
	return &envSelector{route: r, match: sel.ProxyFunc()}, nil
}

// envProxy is the proxy of the environment, the first set of HTTPS_PROXY, HTTP_PROXY and
// ALL_PROXY (a scheme-less value as http://), and the variable it came from; "" when none is set.
func envProxy(cfg *httpproxy.Config, allProxy string) (raw, source string) {
	raw, source = cfg.HTTPSProxy, "HTTPS_PROXY"
	if raw == "" {
		raw, source = cfg.HTTPProxy, "HTTP_PROXY"
	}
	if raw == "" {
		raw, source = allProxy, "ALL_PROXY"
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", ""
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	return raw, source
}

// ProxyEnvironment is what of an environment chooses the WAN's way, as New reads it when it has
// no ProxyURL and UseEnvironment is set.
type ProxyEnvironment struct {
	Proxy       string // the proxy URL (its password included: never show it); "" for none
	ProxySource string // the variable it came from
	NoProxy     string // NO_PROXY as given
}

// EnvironmentProxy reads the ProxyEnvironment of the environment getenv reads, the names as New
// reads them (httpproxy.FromEnvironment: upper case first; ALL_PROXY: lower case first).
func EnvironmentProxy(getenv func(string) string) ProxyEnvironment {
	either := func(a, b string) string {
		if v := getenv(a); v != "" {
			return v
		}
		return getenv(b)
	}
	cfg := &httpproxy.Config{HTTPSProxy: either("HTTPS_PROXY", "https_proxy"), HTTPProxy: either("HTTP_PROXY", "http_proxy")}
	raw, source := envProxy(cfg, either("all_proxy", "ALL_PROXY"))
	return ProxyEnvironment{Proxy: raw, ProxySource: source, NoProxy: either("NO_PROXY", "no_proxy")}
}

// Direct says whether the dialer sends target (host:port) past e's proxy, as NO_PROXY rules
// (the match choose makes); true when e names no proxy.
func (e ProxyEnvironment) Direct(target string) bool {
	if e.Proxy == "" {
		return true
	}
	p, err := (&httpproxy.Config{HTTPSProxy: e.Proxy, NoProxy: e.NoProxy}).ProxyFunc()(&url.URL{Scheme: "https", Host: target})
	return err == nil && p == nil
}

// ProxyAddress is the host and port the dialer connects to for the proxy URL raw (one without
// a scheme as http://, a port left out as its scheme's default); "" when raw names no proxy
// ("", "direct") or not one the dialer takes.
func ProxyAddress(raw string) (host string, port int) {
	raw = strings.TrimSpace(raw)
	if raw == "" || strings.EqualFold(raw, "direct") {
		return "", 0
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	r, err := parseProxyURL(raw)
	if err != nil {
		return "", 0
	}
	h, p, _ := net.SplitHostPort(r.addr)
	port, _ = strconv.Atoi(p)
	return h, port
}

// choose returns the route for target (host:port), or nil and the reason when
// the connection goes direct.
func (s *envSelector) choose(target string) (*route, string) {
	if s.route == nil {
		return nil, "no proxy in the environment"
	}
	p, err := s.match(&url.URL{Scheme: "https", Host: target})
	if err != nil {
		// Cannot happen with a validated proxy URL; if it did, going
		// direct would silently bypass the shop's proxy, so use it.
		return s.route, ""
	}
	if p != nil {
		return s.route, ""
	}
	host, _, _ := net.SplitHostPort(target)
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil, "loopback target"
	}
	return nil, "excluded by NO_PROXY"
}

// allProxyFromEnvironment reads ALL_PROXY, which httpproxy does not know.
func allProxyFromEnvironment() string {
	if v := os.Getenv("all_proxy"); v != "" {
		return v
	}
	return os.Getenv("ALL_PROXY")
}
