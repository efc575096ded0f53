package wan

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/storeedge/storeedge/internal/config"
)

// DefaultTLSHandshakeTimeout is TLSHandshakeTimeout's default. ConnectTimeout's is the
// configuration's, config.DefaultWANConnectTimeout.
const DefaultTLSHandshakeTimeout = 10 * time.Second

// Options configure a Dialer. The zero value dials directly with default
// timeouts and the system's root certificates.
type Options struct {
	// ProxyURL is "" (use the environment if UseEnvironment, else direct),
	// "direct", http://[user:pass@]host:port (HTTP CONNECT, Basic auth) or
	// socks5://[user:pass@]host:port (socks5h:// too; names are always
	// resolved by the proxy). Special characters in user or password must be
	// percent-encoded.
	ProxyURL string
	// UseEnvironment honours HTTPS_PROXY, HTTP_PROXY, ALL_PROXY (first set
	// wins; upper-case names before lower-case ones, but all_proxy before
	// ALL_PROXY, see env.go) and NO_PROXY when ProxyURL is "".
	// Loopback targets are never proxied.
	UseEnvironment bool
	// ExtraCAFile is a PEM file whose certificates are trusted in addition to
	// the system roots (a test cloud, or a TLS-inspecting corporate proxy).
	ExtraCAFile string
	// ConnectTimeout bounds opening a connection to the target, proxy
	// handshake included. Default config.DefaultWANConnectTimeout.
	ConnectTimeout time.Duration
	// TLSHandshakeTimeout is used by Transport. Default
	// DefaultTLSHandshakeTimeout.
	TLSHandshakeTimeout time.Duration
}

// Dialer opens WAN connections according to its Options. It is immutable and
// safe for concurrent use.
type Dialer struct {
	fixed  *route        // the configured proxy; nil when direct or env
	env    *envSelector  // non-nil when the environment chooses per target
	nd     *net.Dialer   // TCP to the target or to the proxy
	tls    *tls.Config   // never handed out: TLSConfig returns clones
	tlsHST time.Duration // TLS handshake timeout for Transport
}

// New validates o and returns a Dialer. Its errors name the bad option and
// never contain a password.
func New(o Options) (*Dialer, error) {
	if o.ConnectTimeout < 0 {
		return nil, fmt.Errorf("wan: ConnectTimeout %v is negative", o.ConnectTimeout)
	}
	if o.TLSHandshakeTimeout < 0 {
		return nil, fmt.Errorf("wan: TLSHandshakeTimeout %v is negative", o.TLSHandshakeTimeout)
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = config.DefaultWANConnectTimeout
	}
	if o.TLSHandshakeTimeout == 0 {
		o.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	d := &Dialer{
		nd:     &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second},
		tlsHST: o.TLSHandshakeTimeout,
	}

	raw := strings.TrimSpace(o.ProxyURL)
	switch {
	case strings.EqualFold(raw, "direct"):
	case raw != "":
		r, err := parseProxyURL(raw)
		if err != nil {
			return nil, fmt.Errorf("wan: proxy URL %q: %w", Redact(raw), err)
		}
		d.fixed = r
	case o.UseEnvironment:
		sel, err := newEnvSelector(httpproxy.FromEnvironment(), allProxyFromEnvironment())
		if err != nil {
			return nil, fmt.Errorf("wan: proxy from the environment: %w", err)
		}
		d.env = sel
	}
	for _, r := range []*route{d.fixed, d.envRoute()} {
		if r == nil || r.kind != kindSOCKS5 {
			continue
		}
		sd, err := newSOCKS5(d.nd, r)
		if err != nil {
			return nil, fmt.Errorf("wan: %w", err)
		}
		r.socks = sd
	}

	d.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if o.ExtraCAFile != "" {
		pool, err := rootsWithExtraCA(o.ExtraCAFile)
		if err != nil {
			return nil, fmt.Errorf("wan: ExtraCAFile: %w", err)
		}
		d.tls.RootCAs = pool
	}
	return d, nil
}

func (d *Dialer) envRoute() *route {
	if d.env == nil {
		return nil
	}
	return d.env.route
}

// rootsWithExtraCA returns the system roots plus every certificate in file (config.ReadCAFile's
// rules, which storeedge config checks too).
func rootsWithExtraCA(file string) (*x509.CertPool, error) {
	certs, err := config.ReadCAFile(file)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return nil, err // it names the file and the reason
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("system roots: %w", err)
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// choose returns the route for target (nil = direct) and, when direct, why.
func (d *Dialer) choose(target string) (*route, string) {
	switch {
	case d.fixed != nil:
		return d.fixed, ""
	case d.env != nil:
		return d.env.choose(target)
	}
	return nil, ""
}

// DialContext connects to addr (host:port) directly or through the proxy
// chosen for it. Failures at or behind a proxy are *ProxyError; a failed
// direct dial is the net error, wrapped. The whole dial, proxy handshake
// included, is bounded by ctx and by Options.ConnectTimeout.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("wan: dial %q: %w", addr, err)
	}
	// addr goes into a CONNECT request line and header: no controls or
	// spaces, which could smuggle a header in.
	if i := strings.IndexFunc(addr, func(c rune) bool { return c <= ' ' || c == 0x7f }); i >= 0 {
		return nil, fmt.Errorf("wan: dial %q: control character or space in address", addr)
	}
	ctx, cancel := context.WithTimeout(ctx, d.nd.Timeout)
	defer cancel()

	r, _ := d.choose(addr)
	if r == nil {
		c, err := d.nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("wan: direct: %w", err)
		}
		return c, nil
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("wan: dial %s %s: only tcp goes through a proxy", network, addr)
	}
	switch r.kind {
	case kindHTTPConnect:
		return dialConnect(ctx, d.nd, r, addr)
	case kindSOCKS5:
		return dialSOCKS5(ctx, r.socks, r, addr)
	}
	return nil, errors.New("wan: unknown route kind") // unreachable: New validates
}

// TLSConfig returns a new TLS client configuration: system roots plus
// Options.ExtraCAFile, verification on, TLS 1.2 or later. Callers set
// ServerName (or let crypto/tls and net/http derive it).
func (d *Dialer) TLSConfig() *tls.Config { return d.tls.Clone() }

// Transport returns a new *http.Transport whose every connection, to http://
// and https:// URLs alike, is opened by d.DialContext (so through the proxy
// as a tunnel; the transport's own Proxy is nil). Each call returns a separate
// connection pool: create one per client and keep it.
func (d *Dialer) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       d.TLSConfig(),
		TLSHandshakeTimeout:   d.tlsHST,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		// No ResponseHeaderTimeout: long polls and streams are legitimate;
		// callers bound requests with contexts or HTTPClient's timeout.
	}
}

// NoRedirect is the CheckRedirect of every WAN client: a redirect is followed nowhere, since
// net/http would carry the store key, a SAS or a token to another port, scheme or subdomain of
// the host. The 3xx is the answer.
func NoRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// HTTPClient returns a client on a new Transport with the given overall
// request timeout (0: none; use request contexts then). It follows no redirect (NoRedirect).
func (d *Dialer) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Transport: d.Transport(), Timeout: timeout, CheckRedirect: NoRedirect}
}

// Describe says how addr would be reached, for logs, doctor and the status
// page: "direct", "direct (excluded by NO_PROXY)", "http-connect via
// 10.0.0.1:3128 (user shop)", "socks5 via proxy:1080 (from ALL_PROXY)". It
// never shows a password.
func (d *Dialer) Describe(addr string) string {
	r, why := d.choose(addr)
	switch {
	case r != nil:
		return r.describe()
	case why != "":
		return "direct (" + why + ")"
	}
	return "direct"
}

// ProxyAddr is the host:port of the proxy that addr would be reached through, or "" when it is
// reached directly. doctor uses it to check the proxy's name and port on their own.
func (d *Dialer) ProxyAddr(addr string) string {
	if r, _ := d.choose(addr); r != nil {
		return r.addr
	}
	return ""
}
