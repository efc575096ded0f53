package testenv_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/tools/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ownerTarget answers every request with the name of the process whose
// socket connected to it.
func ownerTarget(t *testing.T) (*httptest.Server, netip.AddrPort) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := testenv.SocketOwner(r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, p.Name)
	}))
	t.Cleanup(srv.Close)
	return srv, netip.MustParseAddrPort(srv.Listener.Addr().String())
}

// getOver sends a GET on an open tunnel and returns the body.
func getOver(t *testing.T, c net.Conn, br *bufio.Reader) string {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("target answered %s: %s", resp.Status, body)
	}
	return string(body)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// socks5Connect does a minimal RFC 1928/1929 handshake by hand, so that this
// package's tests do not depend on the code they exist to test.
func socks5Connect(t *testing.T, proxy string, target netip.AddrPort, user, pass string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dial(t, proxy)
	br := bufio.NewReader(c)
	method := byte(0)
	if user != "" {
		method = 2
	}
	c.Write([]byte{5, 1, method})
	reply := make([]byte, 2)
	if _, err := io.ReadFull(br, reply); err != nil || reply[1] != method {
		t.Fatalf("socks5 method reply %v, %v", reply, err)
	}
	if user != "" {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		c.Write(msg)
		if _, err := io.ReadFull(br, reply); err != nil || reply[1] != 0 {
			t.Fatalf("socks5 auth reply %v, %v", reply, err)
		}
	}
	req := append([]byte{5, 1, 0, 1}, target.Addr().AsSlice()...)
	req = binary.BigEndian.AppendUint16(req, target.Port())
	c.Write(req)
	resp := make([]byte, 10)
	if _, err := io.ReadFull(br, resp); err != nil || resp[1] != 0 {
		t.Fatalf("socks5 connect reply %v, %v", resp, err)
	}
	return c, br
}

func TestTinyproxyTunnelsAndLogs(t *testing.T) {
	srv, target := ownerTarget(t)
	logFile := t.TempDir() + "/tp.log"
	proxy := testenv.StartTinyproxy(t, testenv.TinyproxyOptions{LogFile: logFile})

	c := dial(t, proxy)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	if got := getOver(t, c, br); got != "tinyproxy" {
		t.Errorf("target saw the connection come from %q, want tinyproxy", got)
	}
	log, _ := os.ReadFile(logFile)
	if want := "CONNECT " + srv.Listener.Addr().String(); !strings.Contains(string(log), want) {
		t.Errorf("tinyproxy log lacks %q:\n%s", want, log)
	}
}

func TestTinyproxyOptionsAreApplied(t *testing.T) {
	_, target := ownerTarget(t)
	proxy := testenv.StartTinyproxy(t, testenv.TinyproxyOptions{
		BasicAuthUser: "shop", BasicAuthPass: "pw", ConnectPorts: []int{443},
	})
	status := func(header string) int {
		c := dial(t, proxy)
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, header)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if got := status(""); got != http.StatusProxyAuthRequired {
		t.Errorf("without credentials: %d, want 407", got)
	}
	// "shop:pw" in base64.
	if got := status("Proxy-Authorization: Basic c2hvcDpwdw==\r\n"); got != http.StatusForbidden {
		t.Errorf("with credentials to a port not in ConnectPorts: %d, want 403", got)
	}
}

func TestDanteTunnels(t *testing.T) {
	_, target := ownerTarget(t)
	proxy := testenv.StartDante(t)
	c, br := socks5Connect(t, proxy, target, "", "")
	if got := getOver(t, c, br); got != "danted" {
		t.Errorf("target saw the connection come from %q, want danted", got)
	}
}

func TestMicrosocksTunnels(t *testing.T) {
	_, target := ownerTarget(t)
	proxy := testenv.StartMicrosocks(t, "shop", "pw")
	c, br := socks5Connect(t, proxy, target, "shop", "pw")
	if got := getOver(t, c, br); got != "microsocks" {
		t.Errorf("target saw the connection come from %q, want microsocks", got)
	}
}

func TestSocketOwnerSeesThisProcessWhenDirect(t *testing.T) {
	_, target := ownerTarget(t)
	c := dial(t, target.String())
	exe, _ := os.Executable()
	want := exe[strings.LastIndex(exe, "/")+1:]
	if len(want) > 15 {
		want = want[:15]
	}
	if got := getOver(t, c, bufio.NewReader(c)); got != want {
		t.Errorf("direct connection owned by %q, want %q", got, want)
	}
}

func TestCleanupStopsTheProxies(t *testing.T) {
	var addrs []string
	t.Run("start", func(t *testing.T) {
		addrs = append(addrs,
			testenv.StartTinyproxy(t, testenv.TinyproxyOptions{}),
			testenv.StartDante(t),
			testenv.StartMicrosocks(t, "", ""))
	})
	for _, a := range addrs {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := testenv.WaitListening(ctx, a)
		cancel()
		if err == nil {
			t.Errorf("%s still accepts connections after cleanup", a)
		}
	}
}

func TestWaitListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := testenv.WaitListening(context.Background(), addr); err != nil {
		t.Errorf("listening: %v", err)
	}
	ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = testenv.WaitListening(ctx, addr)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("closed port: err = %v, want one naming %s", err, addr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("WaitListening took %v past its context", d)
	}
}

func TestRequireFindsSbin(t *testing.T) {
	t.Setenv("PATH", "/nonexistent")
	if p := testenv.Require(t, "ip"); !strings.HasSuffix(p, "/ip") {
		t.Errorf("Require(ip) = %q", p)
	}
}

// tbRecorder records Require's verdict instead of ending the test.
type tbRecorder struct {
	testing.TB
	fatal, skip string
}

func (r *tbRecorder) Helper()                           {}
func (r *tbRecorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *tbRecorder) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

func TestRequireMissingSkipsLocallyFailsInCI(t *testing.T) {
	const missing = "storeedge-no-such-tool"
	t.Setenv("CI", "")
	r := &tbRecorder{TB: t}
	testenv.Require(r, missing)
	if r.fatal != "" || !strings.Contains(r.skip, "scripts/install-test-deps.sh") {
		t.Errorf("locally: fatal %q, skip %q; want a skip pointing at the install script", r.fatal, r.skip)
	}
	t.Setenv("CI", "true")
	r = &tbRecorder{TB: t}
	testenv.Require(r, missing)
	if r.skip != "" || !strings.Contains(r.fatal, missing+" not installed") {
		t.Errorf("CI=true: fatal %q, skip %q; want a failure", r.fatal, r.skip)
	}
}
