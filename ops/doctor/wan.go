package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// endpoint is one WAN service storeedge connects to.
type endpoint struct {
	name  string // cloud, servicebus, blob: the first word of its checks
	host  string
	port  int
	tls   bool // https / wss / amqps
	proxy bool // reached through the WAN dialer (false: the SDK dials it itself, amqp transport)
}

func (e endpoint) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }
func (e endpoint) check(step string) string {
	return e.name + " " + e.addr() + " " + step
}

// endpointFromURL is the endpoint of an http(s) URL.
func endpointFromURL(name, raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("%s: not a URL with a host", name)
	}
	e := endpoint{name: name, host: u.Hostname(), port: 443, tls: u.Scheme == "https", proxy: true}
	if !e.tls {
		e.port = 80
	}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		e.port = p
	}
	return e, nil
}

// wanCheck carries what the WAN checks share.
type wanCheck struct {
	o     Options
	dates *dateLog
	http  *http.Client
	out   []Result
}

func (w *wanCheck) add(r ...Result) { w.out = append(w.out, r...) }

func checkWAN(ctx context.Context, o Options) []Result {
	w := &wanCheck{o: o, dates: &dateLog{now: o.Now}}
	w.http = &http.Client{Transport: &dateRecorder{base: o.Dialer.Transport(), log: w.dates}, CheckRedirect: wan.NoRedirect}
	defer w.http.CloseIdleConnections()

	var rc cloudapi.RemoteConfig
	cloudOK := false
	if o.Config.Cloud.StoreKey.Reveal() == "" {
		// Said whether or not the cloud answers: it is the next thing to fix either way.
		w.add(noStoreKey())
	}
	if ep, err := endpointFromURL("cloud", o.Config.Cloud.URL); err == nil && w.reach(ctx, ep) {
		rc, cloudOK = w.cloudAuth(ctx)
	}
	if o.Config.ServiceBus.Enabled {
		w.serviceBus(ctx, rc, cloudOK)
	}
	if o.Config.Logs.Ship.Enabled {
		w.logIntake(ctx)
	}
	if o.Config.Support.ServiceBus.Enabled {
		w.support(ctx)
	}
	if loc, ok, err := mediaContainer(o.Config.Media, rc); err != nil {
		w.add(fail("wan", "blob container", err.Error(), "call the vendor's support with this line, or configure the shop's own container (media.container_url or media.connection_string)"))
	} else if !ok && o.Config.Media.Enabled && !cloudOK {
		w.add(warn("wan", "blob container", "not checked: the cloud's configuration, which names the container, could not be read", "fix the cloud's lines above first, then run doctor again"))
	} else if !ok && o.Config.Media.Enabled {
		w.add(warn("wan", "blob container", "the cloud's configuration names no media container: no media is fetched, and devices get 503 for media not cached", "call the vendor's support, or configure the shop's own container (media.container_url or media.connection_string)"))
	} else if ok {
		if ep, err := loc.Endpoint(); err != nil {
			w.add(fail("wan", "blob container", err.Error(), "correct media.container_url or media.connection_string"))
		} else if e, err := endpointFromURL("blob", ep); err == nil && w.reach(ctx, e) {
			w.add(checkBlob(w.ctx(ctx), w.http, loc))
		}
	}
	w.add(w.dates.result(cloudOK))
	return w.out
}

// ctx bounds one check.
func (w *wanCheck) ctx(ctx context.Context) context.Context {
	c, cancel := context.WithTimeout(ctx, w.o.Timeout)
	context.AfterFunc(c, cancel)
	return c
}

// reach checks DNS, TCP and TLS to ep and reports whether the service can be reached.
func (w *wanCheck) reach(ctx context.Context, ep endpoint) bool {
	if !w.dns(ctx, ep) {
		return false
	}
	conn, ok := w.tcp(ctx, ep)
	if !ok {
		return false
	}
	defer conn.Close()
	if !ep.tls {
		return true
	}
	return w.tlsHandshake(ctx, ep, conn)
}

// dns resolves the endpoint's host when reached directly, or the proxy's when not: through a
// proxy, the proxy resolves the endpoint's name.
func (w *wanCheck) dns(ctx context.Context, ep endpoint) bool {
	host, via := ep.host, ""
	if ep.proxy {
		if p := w.o.Dialer.ProxyAddr(ep.addr()); p != "" {
			host, _, _ = net.SplitHostPort(p)
			via = "the proxy "
		}
	}
	if net.ParseIP(host) != nil {
		return true // nothing to resolve
	}
	addrs, err := net.DefaultResolver.LookupHost(w.ctx(ctx), host)
	if err != nil {
		fix := "check this machine's DNS servers (network settings), or set wan.proxy if the shop reaches the internet only through a proxy"
		if via != "" {
			fix = "check the proxy's host name in wan.proxy (or HTTPS_PROXY) and this machine's DNS servers"
		}
		w.add(fail("wan", ep.check("dns"), fmt.Sprintf("%s%s does not resolve: %v", via, host, err), fix))
		return false
	}
	detail := fmt.Sprintf("%s%s resolves to %s", via, host, strings.Join(addrs, ", "))
	if via != "" {
		detail += "; the proxy resolves " + ep.host
	}
	w.add(pass("wan", ep.check("dns"), detail))
	return true
}

// tcp opens a connection to ep through the WAN dialer, as the server does.
func (w *wanCheck) tcp(ctx context.Context, ep endpoint) (net.Conn, bool) {
	start := time.Now()
	var conn net.Conn
	var err error
	route := "direct"
	if ep.proxy {
		route = w.o.Dialer.Describe(ep.addr())
		conn, err = w.o.Dialer.DialContext(w.ctx(ctx), "tcp", ep.addr())
	} else {
		var d net.Dialer
		conn, err = d.DialContext(w.ctx(ctx), "tcp", ep.addr())
	}
	if err != nil {
		w.add(fail("wan", ep.check("tcp"), fmt.Sprintf("no connection (%s): %v", route, err), tcpFix(ep, err)))
		return nil, false
	}
	w.add(pass("wan", ep.check("tcp"), fmt.Sprintf("connected %s in %s", route, time.Since(start).Round(time.Millisecond))))
	return conn, true
}

// tcpFix is the one-sentence fix for a failed connection.
func tcpFix(ep endpoint, err error) string {
	switch {
	case errors.Is(err, wan.ErrProxyAuth):
		return "the proxy refused the login: check the user and password in wan.proxy (or HTTPS_PROXY, where the proxy came from there; write / # % @ in them %-encoded)"
	case errors.Is(err, wan.ErrProxyRefused):
		return fmt.Sprintf("the proxy does not let storeedge through to %s: ask the network team to allow it (HTTP CONNECT or SOCKS to port %d)", ep.host, ep.port)
	case errors.Is(err, wan.ErrTargetUnreachable):
		return fmt.Sprintf("the proxy could not reach %s: ask the network team whether the proxy may reach it on port %d", ep.addr(), ep.port)
	case errors.Is(err, wan.ErrProxyUnreachable):
		return "the proxy does not answer: check the host and port in wan.proxy (or HTTPS_PROXY) and that the proxy runs"
	case errors.As(err, new(*wan.ProxyError)) && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)):
		return fmt.Sprintf("the proxy took the connection but did not answer in time: check that wan.proxy (or HTTPS_PROXY) names the proxy's port, with the right scheme (http:// or socks5://); if it does, the proxy may not reach %s: ask the network team whether a firewall drops its connections to TCP %d there", ep.host, ep.port)
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return fmt.Sprintf("no answer in time: a firewall is probably dropping the connection; open outbound TCP %d to %s (storeedge firewall prints the rules), or set wan.proxy", ep.port, ep.host)
	}
	return fmt.Sprintf("open outbound TCP %d to %s in the firewall (storeedge firewall prints the rules), or set wan.proxy if the shop goes out through a proxy", ep.port, ep.host)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tlsHandshake verifies the endpoint's certificate chain as the server does (system roots plus
// wan.extra_ca_file), and recognises a TLS-inspecting proxy when verification fails.
func (w *wanCheck) tlsHandshake(ctx context.Context, ep endpoint, conn net.Conn) bool {
	cfg := w.o.Dialer.TLSConfig()
	cfg.ServerName = ep.host
	tc := tls.Client(conn, cfg)
	err := tc.HandshakeContext(w.ctx(ctx))
	if err != nil {
		detail, fix := tlsProblem(ep, err)
		w.add(fail("wan", ep.check("tls"), detail, fix))
		return false
	}
	st := tc.ConnectionState()
	leaf := st.PeerCertificates[0]
	detail := fmt.Sprintf("%s, certificate issued by %q, valid until %s, chain verified", tls.VersionName(st.Version), issuerName(leaf), leaf.NotAfter.Format("2006-01-02"))
	if left := leaf.NotAfter.Sub(w.o.Now()); left < 14*24*time.Hour {
		w.add(warn("wan", ep.check("tls"), detail+fmt.Sprintf("; it expires in %d days", int(left.Hours()/24)),
			fmt.Sprintf("the certificate of %s is about to expire: if %q is your proxy's, tell the network team; if not, tell the vendor's support", ep.host, issuerName(leaf))))
		return true
	}
	w.add(pass("wan", ep.check("tls"), detail))
	return true
}

// tlsProblem explains a failed handshake and says what to do.
func tlsProblem(ep endpoint, err error) (detail, fix string) {
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) || len(cve.UnverifiedCertificates) == 0 {
		return fmt.Sprintf("TLS handshake failed: %v", err),
			fmt.Sprintf("something between this machine and %s does not speak TLS to it (a proxy or firewall): ask the network team to let TLS to %s through unchanged", ep.host, ep.host)
	}
	leaf := cve.UnverifiedCertificates[0]
	issuer := issuerName(cve.UnverifiedCertificates[len(cve.UnverifiedCertificates)-1])
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(cve.Err, &ua):
		return fmt.Sprintf("the certificate presented for %s is issued by %q, which this machine does not trust: a proxy or firewall is inspecting HTTPS", ep.host, issuer),
			fmt.Sprintf("get the certificate of %q from the network team and set wan.extra_ca_file to it (or have %s exempted from inspection)", issuer, ep.host)
	case errors.As(cve.Err, &he):
		return fmt.Sprintf("the certificate presented is for %s, not %s (issued by %q): something answers in its place", strings.Join(leaf.DNSNames, ", "), ep.host, issuer),
			fmt.Sprintf("a captive portal or proxy answers for %s: ask the network team to let it through, or check cloud.url", ep.host)
	case errors.As(cve.Err, &ci) && ci.Reason == x509.Expired:
		return fmt.Sprintf("the certificate presented for %s expired or is not valid yet (valid %s to %s, issued by %q)", ep.host, leaf.NotBefore.Format("2006-01-02"), leaf.NotAfter.Format("2006-01-02"), issuer),
			"check this machine's date and time first; if they are right, tell whoever runs the issuer (your network team for a proxy, else the vendor's support)"
	}
	return fmt.Sprintf("the certificate presented for %s (issued by %q) was refused: %v", ep.host, issuer, cve.Err),
		fmt.Sprintf("if %q is your proxy's, set wan.extra_ca_file to its certificate; if not, call the vendor's support", issuer)
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		if len(c.Issuer.Organization) > 0 {
			return c.Issuer.CommonName + ", " + c.Issuer.Organization[0]
		}
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// cloudAuth asks the cloud for the shop's remote configuration with the store key, as the
// server does: that is the store key accepted.
// noStoreKey is the result of the store key check when there is none.
func noStoreKey() Result {
	return fail("wan", "cloud store key", "cloud.store_key is not set", "set cloud.store_key in the configuration, or run doctor with the service's environment ("+config.EnvName("cloud.store_key")+")")
}

func (w *wanCheck) cloudAuth(ctx context.Context) (cloudapi.RemoteConfig, bool) {
	cfg := w.o.Config
	const check = "cloud store key"
	key := cfg.Cloud.StoreKey.Reveal()
	if key == "" {
		return cloudapi.RemoteConfig{}, false // said already (noStoreKey)
	}
	client, err := cloud.New(cfg.Cloud.URL, key, w.http, "storeedge/"+w.o.Version+" doctor")
	if err != nil {
		w.add(fail("wan", check, err.Error(), "check cloud.url"))
		return cloudapi.RemoteConfig{}, false
	}
	rc, err := client.Config(w.ctx(ctx))
	switch {
	case errors.Is(err, cloud.ErrUnauthorized):
		w.add(fail("wan", check, "the cloud refused the store key (401)", "check cloud.store_key (or "+config.EnvName("cloud.store_key")+" in the service's environment) against the key the vendor gave for this shop"))
		return rc, false
	case err != nil:
		w.add(fail("wan", check, fmt.Sprintf("the cloud did not give the shop's configuration: %v", err), "if a proxy answers in the cloud's place, ask the network team to let it through; otherwise call the vendor's support with this line"))
		return rc, false
	}
	w.add(pass("wan", check, fmt.Sprintf("accepted: store %q (%s)", cloudapi.Text(rc.StoreID, 128), cloudapi.Text(rc.Name, 200))))
	return rc, true
}

// serviceBus checks the namespace's endpoint and opens a link on the queue.
func (w *wanCheck) serviceBus(ctx context.Context, rc cloudapi.RemoteConfig, cloudOK bool) {
	cfg := w.o.Config.ServiceBus
	ep, err := serviceBusEndpoint(cfg)
	if err != nil {
		w.add(fail("wan", "servicebus", err.Error(), "check servicebus.connection_string"))
		return
	}
	if r, ok := sasExpiryCheck(cfg.ConnectionString.Reveal(), "servicebus", "servicebus.connection_string", w.o.Now()); ok {
		w.add(r)
		if r.Status == Fail {
			return
		}
	}
	if !w.reach(ctx, ep) {
		return
	}
	queue := cfg.Queue
	check := "servicebus link"
	if queue == "" {
		if queue, err = cloud.RemoteQueue(rc); err != nil {
			w.add(fail("wan", check, err.Error(), "set servicebus.queue to the shop's queue, and tell the vendor's support"))
			return
		}
	}
	if queue == "" {
		detail := "no queue: servicebus.queue is empty and the cloud's configuration names none"
		if !cloudOK {
			detail = "no queue: servicebus.queue is empty and the cloud could not be asked (see above)"
		}
		w.add(fail("wan", check, detail, "set servicebus.queue to the shop's queue"))
		return
	}
	check += " " + queue
	if w.o.ServiceBus == nil {
		return
	}
	if err := servicebus.Probe(w.ctx(ctx), w.o.ServiceBus(queue)); err != nil {
		w.add(fail("wan", check, err.Error(), serviceBusFix(err, queue, "servicebus.connection_string", "servicebus.queue")))
		return
	}
	w.add(pass("wan", check, "link opened on queue "+queue+" (peeked, nothing taken)"))
}

// serviceBusFix is the fix for a link that did not open on queue, which the keys connKey and
// queueKey configure.
func serviceBusFix(err error, queue, connKey, queueKey string) string {
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "unauthorized") || strings.Contains(msg, "401") || strings.Contains(msg, "token"):
		return "the namespace refused the credentials: copy the connection string of the queue's shared access policy again (" + connKey + "), and check this machine's clock"
	case strings.Contains(msg, "not found") || strings.Contains(msg, "404") || strings.Contains(msg, "not-found"):
		return fmt.Sprintf("the queue %q does not exist in the namespace: check %s, or ask the vendor which queue is the shop's", queue, queueKey)
	}
	return "check " + connKey + " and " + queueKey + "; if they are right, call the vendor's support with this line"
}

// serviceBusEndpoint is the namespace's host and port as the transport reaches it: 443 through
// the WAN dialer over WebSockets, else AMQPS on 5671 directly.
func serviceBusEndpoint(sb config.ServiceBus) (endpoint, error) {
	u, err := url.Parse(config.ConnectionStringPart(sb.ConnectionString.Reveal(), "Endpoint"))
	if err != nil || u.Hostname() == "" {
		return endpoint{}, errors.New("the connection string's Endpoint has no host")
	}
	ws := sb.Transport == config.TransportWebSockets
	emulator := strings.Contains(strings.ToLower(sb.ConnectionString.Reveal()), "usedevelopmentemulator=true")
	ep := endpoint{name: "servicebus", host: u.Hostname(), port: 5671, tls: ws || !emulator, proxy: ws}
	if ws {
		ep.port = 443
	}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		ep.port = p // a test namespace on a port of its own
	}
	return ep, nil
}

// sasWarnBefore is how long before a connection string's signature expires doctor warns.
const sasWarnBefore = 14 * 24 * time.Hour

// sasExpiryCheck reads the expiry (se=) of a connection string's SharedAccessSignature, which
// Service Bus refuses once past, so that shop IT hears of it before the orders stop: FAIL when
// expired, WARN within sasWarnBefore, PASS otherwise; false when the string has no signature
// (a key, which does not expire) or none can be read.
func sasExpiryCheck(cs, name, key string, now time.Time) (Result, bool) {
	sas := config.ConnectionStringPart(cs, "SharedAccessSignature")
	var expiry int64 = -1
	for _, f := range strings.Split(strings.TrimPrefix(sas, "SharedAccessSignature "), "&") {
		if v, ok := strings.CutPrefix(f, "se="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				expiry = n
			}
		}
	}
	if expiry < 0 {
		return Result{}, false
	}
	at := time.Unix(expiry, 0)
	check := name + " signature"
	switch left := at.Sub(now); {
	case left <= 0:
		return fail("wan", check, "the connection string's SharedAccessSignature expired on "+at.UTC().Format(time.RFC3339)+": Service Bus refuses it, and no order arrives",
			"ask the vendor for a new connection string and put it in "+key), true
	case left < sasWarnBefore:
		return warn("wan", check, fmt.Sprintf("the connection string's SharedAccessSignature expires on %s, in %d days", at.UTC().Format(time.RFC3339), int(left.Hours()/24)),
			"ask the vendor for a new connection string before then, and put it in "+key), true
	default:
		return pass("wan", check, "the connection string's SharedAccessSignature is valid until "+at.UTC().Format(time.RFC3339)), true
	}
}
