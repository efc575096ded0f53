//go:build unix

package server

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A device that stops reading its stream does not hold it for ever: once a write has waited
// lan.write_timeout, the server ends the stream and closes the connection (openapi.yaml).
func TestStalledEventReaderIsDisconnected(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.WriteTimeout = 300 * time.Millisecond })
	closed := make(chan struct{})
	var once sync.Once
	ts := httptest.NewUnstartedServer(f.h)
	ts.Config.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew: // a small send buffer, so that a few orders fill it
			c.(*net.TCPConn).SetWriteBuffer(4096)
		case http.StateClosed:
			once.Do(func() { close(closed) })
		}
	}
	ts.Start()
	defer ts.Close()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", f.device(t, "pos").Token)
	note := strings.Repeat("n", 400)
	for i := range 300 { // about 300 KB of events, never read
		f.order(t, "pos", fmt.Sprint("k", i), `{"lines":[{"product_id":"P0002","quantity":1}],"note":"`+note+`"}`)
		select {
		case <-closed:
			return
		default:
		}
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream of a device that reads nothing is still open 10 s after its last event")
	}
}
