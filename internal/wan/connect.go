package wan

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// maxConnectResponse bounds what a proxy may send before the tunnel opens
// (status line and headers), so a broken or hostile proxy cannot make us
// buffer without limit.
const maxConnectResponse = 64 << 10

// dialConnect opens a tunnel to target through the HTTP proxy r with CONNECT.
// x/net/proxy has no HTTP CONNECT dialer, hence this one. ctx bounds both the
// TCP dial and the handshake.
func dialConnect(ctx context.Context, nd *net.Dialer, r *route, target string) (net.Conn, error) {
	conn, err := nd.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return nil, unreachable(r, target, err)
	}
	tunnel, err := connectHandshake(ctx, conn, r, target)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tunnel, nil
}

// connectHandshake sends CONNECT on conn and reads the proxy's answer. On
// success it returns conn, or a wrapper that first yields bytes the proxy sent
// right after its response and that are already in our buffer.
func connectHandshake(ctx context.Context, conn net.Conn, r *route, target string) (_ net.Conn, err error) {
	// Cancellation and deadlines interrupt blocked I/O through the conn's
	// deadline; afterwards the conn's deadline is cleared for the caller.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && err == nil {
			// ctx ended as the handshake completed: the deadline may now be
			// in the past, so the conn is unusable. Report it as a timeout.
			err = &ProxyError{Proxy: r.display(), Target: target,
				Err: fmt.Errorf("no answer to CONNECT in time: %w", ctx.Err())}
		}
		if err == nil {
			conn.SetDeadline(time.Time{})
		}
	}()

	var req strings.Builder
	fmt.Fprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if r.auth {
		cred := base64.StdEncoding.EncodeToString([]byte(r.user + ":" + r.pass))
		fmt.Fprintf(&req, "Proxy-Authorization: Basic %s\r\n", cred)
	}
	req.WriteString("User-Agent: storeedge\r\n\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return nil, handshakeErr(ctx, r, target, "send CONNECT", err)
	}

	// The bufio.Reader reads through a limit; once the response is parsed,
	// later reads bypass both (see bufferedConn).
	br := bufio.NewReader(&io.LimitedReader{R: conn, N: maxConnectResponse})
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, handshakeErr(ctx, r, target, "read the answer to CONNECT (is this an HTTP proxy?)", err)
	}
	// A refused CONNECT may carry an HTML body. Nothing in it is needed and
	// the caller closes the conn, so the body is neither read nor drained.
	if resp.StatusCode/100 != 2 {
		return nil, statusErr(r, target, resp)
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, br: br}, nil
	}
	return conn, nil
}

// statusErr turns a non-2xx answer to CONNECT into a *ProxyError.
func statusErr(r *route, target string, resp *http.Response) error {
	pe := &ProxyError{Proxy: r.display(), Target: target, Status: resp.StatusCode}
	status := resp.Status // e.g. "403 Access violation"
	// 407 is the proxy's "authenticate"; before the tunnel exists a 401 can
	// only come from the proxy too, and tinyproxy 1.11 sends 401 (with
	// WWW-Authenticate) for wrong credentials and 407 for none.
	authStatus := resp.StatusCode == http.StatusProxyAuthRequired || resp.StatusCode == http.StatusUnauthorized
	switch {
	case authStatus && !r.auth:
		pe.kind = ErrProxyAuth
		pe.Err = fmt.Errorf("proxy authentication required and the proxy URL has no user: %s", status)
	case authStatus:
		pe.kind = ErrProxyAuth
		pe.Err = fmt.Errorf("proxy authentication failed for user %q: %s", r.shownUser(), status)
	case resp.StatusCode >= 500:
		pe.kind = ErrTargetUnreachable
		pe.Err = fmt.Errorf("proxy could not reach the target: %s", status)
	default:
		pe.kind = ErrProxyRefused
		pe.Err = fmt.Errorf("proxy refused CONNECT: %s", status)
	}
	return pe
}

// handshakeErr reports an I/O failure during the CONNECT exchange; when ctx
// ended, the deadline we set caused it and the context error is the cause.
func handshakeErr(ctx context.Context, r *route, target, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return &ProxyError{Proxy: r.display(), Target: target,
			Err: fmt.Errorf("no answer to CONNECT in time: %w", cerr)}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("proxy closed the connection: %w", err)
	}
	return &ProxyError{Proxy: r.display(), Target: target, Err: fmt.Errorf("%s: %w", op, err)}
}

// unreachable reports a failed TCP dial to the proxy itself.
func unreachable(r *route, target string, err error) error {
	return &ProxyError{Proxy: r.display(), Target: target, kind: ErrProxyUnreachable,
		Err: fmt.Errorf("cannot connect to the proxy: %w", err)}
}

// bufferedConn is a tunnel whose first bytes were read into br together with
// the proxy's response (a server that speaks first, such as SMTP, or a fast
// one). Reads drain br before going back to the socket.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

var _ net.Conn = (*bufferedConn)(nil)

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}
