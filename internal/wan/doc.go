// Package wan is the one way out of the shop: every connection storeedge makes to
// the WAN (cloud API, Service Bus over WebSockets, Blob storage, log intake,
// doctor checks) is dialled through a *Dialer, so a shop's proxy settings apply
// to all of them and a status page can explain any failure in one vocabulary
// (DESIGN.md, principle 3).
//
// A Dialer reaches a target directly, through an HTTP proxy using CONNECT
// (with Basic authentication when the proxy URL carries a user), or through a
// SOCKS5 proxy (optionally with user/password). Transport tunnels plain-HTTP
// targets through CONNECT as well, rather than sending absolute-URI requests
// to the proxy, so there is exactly one path to test and to diagnose.
//
// Failures that happen at or behind the proxy come back as *ProxyError, which
// matches one of ErrProxyUnreachable, ErrProxyAuth, ErrProxyRefused or
// ErrTargetUnreachable under errors.Is; a failure on a direct route is the
// plain net error. Passwords from proxy URLs never appear in an error, in
// Describe or in Redact's output.
package wan
