package server

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Go's HTTP server answers a few requests itself, before any handler runs: a header block over
// MaxHeaderBytes (431), a request it cannot parse (400), a transfer coding it does not know (501).
// It writes those answers straight to the connection, as text/plain. problemListener rewrites
// them into problem documents, so that every error a device gets is one (docs/openapi.yaml,
// "Errors").
//
// Such an answer is recognised by its fixed form: an error status line followed at once by
// goErrorHeaders. An answer written through a handler never starts that way: its header block
// is sorted (Connection before Content-Type) and always holds Date and X-Request-Id.
const goErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// problemListener hands out connections whose writes go through problemConn.
type problemListener struct {
	net.Listener
	maxHeaderBytes int // for the 431's detail
}

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &problemConn{Conn: c, maxHeaderBytes: l.maxHeaderBytes}, nil
}

type problemConn struct {
	net.Conn
	maxHeaderBytes int
}

func (c *problemConn) Write(p []byte) (int, error) {
	answer := rewriteGoError(p, c.maxHeaderBytes)
	if answer == nil {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(answer); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite and ReadFrom keep what net/http looks for on a TCP connection: a half close before
// it drops a connection after an error, and sendfile for bodies read from files.
func (c *problemConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *problemConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

// rewriteGoError returns the problem-document answer that replaces p when p is one of net/http's
// own error answers, else nil.
func rewriteGoError(p []byte, maxHeaderBytes int) []byte {
	const proto = "HTTP/1.1 "
	if len(p) < len(proto)+4 || p[len(proto)] < '4' || !bytes.HasPrefix(p, []byte(proto)) {
		return nil // the usual case: a 1xx, 2xx or 3xx answer, or not an answer's start
	}
	end := bytes.Index(p, []byte("\r\n"))
	if end < 0 || !bytes.HasPrefix(p[end:], []byte(goErrorHeaders)) {
		return nil
	}
	code, err := strconv.Atoi(string(p[len(proto) : len(proto)+3]))
	if err != nil {
		return nil
	}
	// The text repeats the status ("400 Bad Request: missing required Host header"), or is all
	// of it.
	text := strings.TrimPrefix(string(p[end+len(goErrorHeaders):]), strconv.Itoa(code)+" "+http.StatusText(code))
	if text = strings.TrimPrefix(text, ": "); text == "" {
		text = "malformed request line or header"
	}
	pt, detail := probMalformedRequest, "the request is not valid HTTP/1.1 and was not read: "+strings.ToLower(text[:1])+text[1:]
	pt.status = code
	if code == http.StatusRequestHeaderFieldsTooLarge {
		pt, detail = probHeadersTooLarge, fmt.Sprintf("the request's header block is larger than %d bytes (lan.max_header_bytes); send fewer or shorter headers", maxHeaderBytes)
	}
	body := problemBody(pt, detail, "")
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: %d\r\nContent-Type: application/problem+json\r\nX-Content-Type-Options: nosniff\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
}
