package wan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/proxy"
)

// newSOCKS5 builds the x/net/proxy SOCKS5 dialer for r. Target host names are
// sent to the proxy unresolved, so socks5:// behaves as socks5h:// (remote
// DNS): behind a proxy the shop's own DNS often cannot resolve the WAN.
func newSOCKS5(nd *net.Dialer, r *route) (proxy.ContextDialer, error) {
	var auth *proxy.Auth
	if r.auth {
		auth = &proxy.Auth{User: r.user, Password: r.pass}
	}
	d, err := proxy.SOCKS5("tcp", r.addr, auth, markingDialer{nd})
	if err != nil {
		return nil, err
	}
	cd, ok := d.(proxy.ContextDialer)
	if !ok {
		// x/net/proxy's SOCKS5 dialer has implemented ContextDialer since
		// 2019; this guards against a future change silently dropping ctx.
		return nil, errors.New("x/net/proxy SOCKS5 dialer is not a ContextDialer")
	}
	return cd, nil
}

// dialSOCKS5 opens a connection to target through the SOCKS5 proxy r.
func dialSOCKS5(ctx context.Context, sd proxy.ContextDialer, r *route, target string) (net.Conn, error) {
	conn, err := sd.DialContext(ctx, "tcp", target)
	if err == nil {
		return conn, nil
	}
	var pd proxyDialError
	if errors.As(err, &pd) {
		return nil, unreachable(r, target, pd.err)
	}
	pe := &ProxyError{Proxy: r.display(), Target: target}
	// x/net reports the handshake as *net.OpError{Op: "socks connect", ...}
	// around a plain error; the inner error is the informative part.
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	if cerr := ctx.Err(); cerr != nil {
		pe.Err = fmt.Errorf("no answer to the SOCKS5 handshake in time: %w", cerr)
		return nil, pe
	}
	// x/net words a SOCKS5 reply as "unknown error <reply name>"; the reply
	// name is the informative part and is kept.
	err = errors.New(strings.TrimPrefix(err.Error(), "unknown error "))
	pe.kind = classifySOCKS(err.Error())
	switch pe.kind {
	case ErrProxyAuth:
		if r.auth {
			pe.Err = fmt.Errorf("proxy authentication failed for user %q: socks5: %w", r.shownUser(), err)
		} else {
			pe.Err = fmt.Errorf("proxy authentication required and the proxy URL has no user: socks5: %w", err)
		}
	case ErrProxyRefused:
		pe.Err = fmt.Errorf("proxy refused the connection: socks5: %w", err)
	case ErrTargetUnreachable:
		pe.Err = fmt.Errorf("proxy could not reach the target: socks5: %w", err)
	default:
		pe.Err = fmt.Errorf("socks5 handshake (is this a SOCKS5 proxy?): %w", err)
	}
	return nil, pe
}

// classifySOCKS maps x/net's SOCKS5 error texts to a failure kind. x/net does
// not export typed reply errors, so the texts (internal/socks: the RFC 1928
// reply names, and the RFC 1929 messages) are matched here, in one place, and
// pinned by tests against real proxies.
func classifySOCKS(msg string) error {
	switch {
	case strings.Contains(msg, "username/password"),
		strings.Contains(msg, "no acceptable authentication methods"):
		return ErrProxyAuth
	case strings.Contains(msg, "not allowed by ruleset"),
		strings.Contains(msg, "command not supported"),
		strings.Contains(msg, "address type not supported"):
		return ErrProxyRefused
	case strings.Contains(msg, "network unreachable"),
		strings.Contains(msg, "host unreachable"),
		strings.Contains(msg, "connection refused"),
		strings.Contains(msg, "TTL expired"),
		strings.Contains(msg, "general SOCKS server failure"):
		// microsocks answers "general failure" when it cannot resolve or
		// reach the target other than by a refusal (dante: host unreachable).
		return ErrTargetUnreachable
	}
	return nil
}

// markingDialer dials the SOCKS proxy itself and marks its errors, so that
// "cannot reach the proxy" is told apart from handshake failures, which x/net
// wraps the same way.
type markingDialer struct{ nd *net.Dialer }

var _ proxy.ContextDialer = markingDialer{}

func (m markingDialer) Dial(network, addr string) (net.Conn, error) {
	return m.DialContext(context.Background(), network, addr)
}

func (m markingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := m.nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, proxyDialError{err}
	}
	return c, nil
}

type proxyDialError struct{ err error }

func (e proxyDialError) Error() string { return e.err.Error() }
func (e proxyDialError) Unwrap() error { return e.err }
