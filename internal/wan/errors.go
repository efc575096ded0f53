package wan

import (
	"errors"
	"fmt"
)

// Kinds of proxy failure. A *ProxyError matches exactly one of them, or none
// when the proxy did not answer in time (then it matches
// context.DeadlineExceeded or context.Canceled instead).
var (
	// ErrProxyUnreachable: no TCP connection to the proxy itself (wrong host or
	// port, proxy down, firewall). Nothing reached the target.
	ErrProxyUnreachable = errors.New("proxy unreachable")
	// ErrProxyAuth: the proxy wants credentials and did not get valid ones
	// (HTTP 407, SOCKS5 authentication refused or no acceptable method).
	ErrProxyAuth = errors.New("proxy authentication failed")
	// ErrProxyRefused: the proxy authenticated us (or needs no credentials) but
	// its policy forbids this target (HTTP 403 and other 4xx, SOCKS5 "not
	// allowed by ruleset", unsupported command or address type).
	ErrProxyRefused = errors.New("proxy refused the connection")
	// ErrTargetUnreachable: the proxy tried and could not reach the target
	// (HTTP 5xx, SOCKS5 host/network unreachable, connection refused, TTL).
	ErrTargetUnreachable = errors.New("proxy could not reach the target")
)

// ProxyError is a failure at or behind a proxy while opening a tunnel to
// Target. Status pages should branch on errors.Is with the Err* kinds above.
type ProxyError struct {
	Proxy  string // proxy as scheme://host:port, never with credentials
	Target string // host:port the tunnel was for
	Status int    // HTTP status of a refused CONNECT; 0 otherwise
	Err    error  // what happened, with details; never contains a password

	kind error // one of the Err* kinds, or nil
}

func (e *ProxyError) Error() string {
	return fmt.Sprintf("wan: via proxy %s to %s: %v", e.Proxy, e.Target, e.Err)
}

// Unwrap returns the underlying cause (a net error, a context error, or a
// description of the proxy's answer).
func (e *ProxyError) Unwrap() error { return e.Err }

// Is reports whether target is the kind of this failure.
func (e *ProxyError) Is(target error) bool { return e.kind != nil && target == e.kind }
