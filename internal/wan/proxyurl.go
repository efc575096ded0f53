package wan

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/proxy"
)

// routeKind says how a route reaches its target.
type routeKind int

const (
	kindHTTPConnect routeKind = iota + 1
	kindSOCKS5
)

// route is one parsed, validated proxy. A nil *route means "direct".
type route struct {
	kind   routeKind
	scheme string // as configured: http, socks5 or socks5h
	addr   string // proxy host:port
	user   string
	pass   string
	auth   bool   // the URL carried a user (and maybe a password)
	noPass bool   // the URL carried a user and no password: the user is then usually a token
	source string // where the URL came from, for Describe: "" or an env var name

	socks proxy.ContextDialer // for kindSOCKS5, built once by New
}

// display names the proxy in errors: scheme://host:port, no credentials.
func (r *route) display() string { return r.scheme + "://" + r.addr }

// shownUser is the user as logs, errors and the status name it: hidden when the URL has no
// password, since such a user name is usually a token (configuration.md, Secrets).
func (r *route) shownUser() string {
	if r.noPass {
		return "xxxxx"
	}
	return r.user
}

// describe is the human form used by Dialer.Describe.
func (r *route) describe() string {
	var b strings.Builder
	switch r.kind {
	case kindHTTPConnect:
		b.WriteString("http-connect via ")
	case kindSOCKS5:
		b.WriteString("socks5 via ")
	}
	b.WriteString(r.addr)
	if r.auth {
		fmt.Fprintf(&b, " (user %s)", r.shownUser())
	}
	if r.source != "" {
		fmt.Fprintf(&b, " (from %s)", r.source)
	}
	return b.String()
}

// Default proxy ports when the URL has none, as net/http and curl's socks
// handling assume.
const (
	defaultHTTPProxyPort  = "80"
	defaultSOCKSProxyPort = "1080"
)

// parseProxyURL validates raw and returns its route. Its errors never contain
// the password: anything that came from url.Parse is computed on the redacted
// URL, and a failure that only the password causes is reported as such.
func parseProxyURL(raw string) (*route, error) {
	if !strings.Contains(raw, "://") {
		return nil, errors.New("missing scheme: write http://host:port or socks5://host:port")
	}
	if _, err := url.Parse(Redact(raw)); err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("not a valid URL: %v", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("the password is not valid in a URL: percent-encode its special characters")
	}
	r := &route{scheme: strings.ToLower(u.Scheme)}
	switch r.scheme {
	case "http":
		r.kind = kindHTTPConnect
	case "socks5", "socks5h":
		r.kind = kindSOCKS5
	case "https":
		return nil, errors.New("https:// proxies (TLS to the proxy) are not supported: use http://, CONNECT still carries TLS end to end")
	default:
		return nil, fmt.Errorf("unsupported proxy scheme %q: want http, socks5 or socks5h", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("missing proxy host")
	}
	port := u.Port()
	if port == "" {
		port = defaultHTTPProxyPort
		if r.kind == kindSOCKS5 {
			port = defaultSOCKSProxyPort
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("proxy port %q out of range 1-65535", port)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("a proxy URL has only scheme, user, password, host and port: remove the path, query or fragment")
	}
	r.addr = net.JoinHostPort(host, port)
	if u.User != nil {
		r.user = u.User.Username()
		var hasPass bool
		r.pass, hasPass = u.User.Password()
		r.auth, r.noPass = true, !hasPass
		switch {
		case r.user == "" && hasPass:
			return nil, errors.New("the proxy URL has a password but no user")
		case r.user == "":
			return nil, errors.New("the proxy URL has an @ but no user before it: remove the @, or put the user")
		}
		if r.kind == kindSOCKS5 && (len(r.user) > 255 || len(r.pass) > 255) {
			return nil, errors.New("SOCKS5 user and password are limited to 255 bytes each")
		}
	}
	return r, nil
}

// Redact returns rawURL with the password, if any, replaced by "xxxxx", and a user name
// given without a password replaced whole, since it is then usually a token. It
// works on the text rather than on a parsed URL so that it also hides
// passwords in URLs that do not parse (unescaped '@' or '/' in the password,
// a scheme-less "user:pass@host:port" as found in proxy variables). When in
// doubt it hides more: everything from the first ':' to the last '@' of the
// part after the scheme.
func Redact(rawURL string) string {
	prefix, rest := "", rawURL
	if i := strings.Index(rawURL, "://"); i >= 0 {
		prefix, rest = rawURL[:i+3], rawURL[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return rawURL
	}
	userinfo := rest[:at]
	colon := strings.Index(userinfo, ":")
	if colon < 0 {
		return prefix + "xxxxx" + rest[at:] // a user and no password
	}
	return prefix + userinfo[:colon+1] + "xxxxx" + rest[at:]
}
