package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// servePort runs the fixture's server on a free port of 127.0.0.1 and returns the front door's
// address; the server stops when the test ends.
func servePort(t *testing.T, opts ...func(*Options)) (*fixture, string) {
	t.Helper()
	f := newFixture(t, append(opts, func(o *Options) { o.Bind, o.FrontDoor = "127.0.0.1", EphemeralPort })...)
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f, f.srv.Addrs()["front_door"]
}

// rawExchange sends request as it is on a new connection and reads the answer.
func rawExchange(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The server may answer and close before it has read the whole request.
	go io.WriteString(c, request)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	return resp, string(body)
}

// cookieRequest is a GET /healthz whose Cookie header carries n bytes.
func cookieRequest(n int) string {
	return "GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("a", n) + "\r\n\r\n"
}

// The requests net/http refuses before any handler runs are answered with problem documents too:
// a header block over lan.max_header_bytes, a request with no Host, an unknown transfer coding.
func TestRequestsRefusedBeforeRoutingGetProblems(t *testing.T) {
	f, addr := servePort(t, func(o *Options) { o.MaxHeaderBytes = 4096 })
	for _, c := range []struct {
		name, request string
		status        int
		slug, detail  string
	}{
		{"oversized header block", "GET /api/v1/catalog/products HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("a", 64<<10) + "\r\n\r\n",
			http.StatusRequestHeaderFieldsTooLarge, "headers-too-large", "larger than 4096 bytes (lan.max_header_bytes)"},
		{"header block just past Go's 4096 bytes of slack", cookieRequest(4096 + 4096 + 100),
			http.StatusRequestHeaderFieldsTooLarge, "headers-too-large", "larger than 4096 bytes (lan.max_header_bytes)"},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n",
			http.StatusBadRequest, "malformed-request", "missing required Host header"},
		{"unknown transfer coding", "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zip\r\n\r\n",
			http.StatusNotImplemented, "malformed-request", "unsupported transfer encoding"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr, c.request)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("answer %d %q: %s; want %d application/problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status)
			}
			if err := f.contract.checkProblem(resp.StatusCode, resp.Header, []byte(body)); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if !strings.Contains(body, `"type":"`+problemBase+c.slug+`"`) || !strings.Contains(body, c.detail) {
				t.Fatalf("problem %s; want type %s saying %q", body, c.slug, c.detail)
			}
		})
	}
	// configuration.md: Go's server allows 4096 bytes on top of lan.max_header_bytes, so a block
	// within that slack is served (one past it is the table's second case).
	if resp, body := rawExchange(t, addr, cookieRequest(4096+3000)); resp.StatusCode != http.StatusOK {
		t.Errorf("a header block within the 4096 bytes of slack: %d %s", resp.StatusCode, body)
	}
	// The connection wrapper leaves ordinary answers alone.
	if resp, body := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); resp.StatusCode != http.StatusOK || body != "{\"status\":\"ok\"}\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
}

// discardConn is a connection whose writes go nowhere, so that a benchmark measures the writer.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkConnWrite writes a typical answer, its header block then a body chunk, straight to a
// connection (bare, the baseline) and through the wrapper that rewrites net/http's own errors.
func BenchmarkConnWrite(b *testing.B) {
	head := []byte("HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nContent-Length: 4096\r\nContent-Type: application/json\r\nDate: Mon, 23 Nov 2026 10:00:00 GMT\r\nX-Request-Id: 5f1e2d3c4b5a-42\r\n\r\n")
	chunk := bytes.Repeat([]byte(`{"id":"P0002","rev":1,"seq":2,"doc":{"name":"Item 2"}},`), 80)
	for _, c := range []struct {
		name string
		conn net.Conn
	}{{"bare", discardConn{}}, {"problemConn", &problemConn{Conn: discardConn{}, maxHeaderBytes: 1 << 16}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.conn.Write(head)
				c.conn.Write(chunk)
			}
		})
	}
}
