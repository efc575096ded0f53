package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/devices"
)

func TestNewRejectsBadOptions(t *testing.T) {
	db := openDB(t)
	dm, err := devices.New(t.Context(), devices.Options{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "no database"},
		{Options{DB: db}, "no device registry"},
		{Options{DB: db, Devices: dm, Services: map[string]int{"catlog": 8000}}, "lan.services.catlog: unknown service"},
		{Options{DB: db, Devices: dm, FrontDoor: 70000}, "lan.front_door: port 70000 out of range"},
		{Options{DB: db, Devices: dm, FrontDoor: -2}, "lan.front_door: port -2 out of range"},
		{Options{DB: db, Devices: dm, FrontDoor: 8080, Services: map[string]int{"catalog": 8080}}, "lan.services.catalog: 8080: same port as lan.front_door"},
	} {
		if _, err := New(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.o.Services, err, c.want)
		}
	}
}

// testClient is an HTTP client whose connections the test closes, so the leak check sees none.
func testClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: false}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func getStatus(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body)
}

// runServer runs s until the test ends, and checks Run stops cleanly then.
func runServer(t *testing.T, s *Server) (stop func()) {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestEachPortServesItsOwnRoutes(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Bind = "127.0.0.1"
		o.FrontDoor = EphemeralPort
		o.Services = map[string]int{"catalog": EphemeralPort, "admin": EphemeralPort, "media": EphemeralPort, "orders": 0}
	})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	stop := runServer(t, f.srv)
	c := testClient(t)

	addrs := f.srv.Addrs()
	if len(addrs) != 4 || addrs["front_door"] == "" || addrs["catalog"] == "" || addrs["admin"] == "" || addrs["media"] == "" {
		t.Fatalf("addrs %v: want front_door, catalog, media and admin only", addrs)
	}
	for name, addr := range addrs {
		if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
			t.Errorf("%s bound to %s", name, addr)
		}
	}
	for _, tc := range []struct {
		port, path string
		status     int
	}{
		{"front_door", "/api/v1/status", 200},
		{"front_door", "/api/v1/catalog/products/P0001", 200},
		{"front_door", "/healthz", 200},
		{"front_door", "/readyz", 200},
		{"catalog", "/api/v1/catalog/products/P0001", 200},
		{"catalog", "/api/v1/catalog/search?q=tea", 200},
		{"catalog", "/api/v1/status", 404},
		{"catalog", "/healthz", 200},
		{"catalog", "/readyz", 200},
		{"admin", "/api/v1/status", 200},
		{"admin", "/api/v1/catalog/products", 404},
		{"admin", "/api/v1/catalog/products/P0001", 404},
		{"admin", "/healthz", 200},
		{"admin", "/readyz", 200},
		{"media", "/api/v1/catalog/products/P0001", 404},
		{"media", "/healthz", 200},
		{"media", "/readyz", 200},
	} {
		code, body := f.getOver(t, c, "http://"+addrs[tc.port]+tc.path)
		if code != tc.status {
			t.Errorf("%s %s: %d, want %d (%s)", tc.port, tc.path, code, tc.status, body)
		}
		if code == 404 && !strings.Contains(body, "this port carries only the "+tc.port+" service") {
			t.Errorf("%s %s: 404 without the hint: %s", tc.port, tc.path, body)
		}
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	stop()
	// The ports are closed.
	for name, addr := range addrs {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections on %s after Run returned", name, addr)
		}
	}
}

// Stopping with a keep-alive connection open and a request stuck half-way: Run gives it the grace
// period, then cuts it, logs that, returns nil and leaves no goroutine behind.
func TestRunStopsCleanly(t *testing.T) {
	logs := newLogSink()
	f := newFixture(t, func(o *Options) {
		o.Bind = "127.0.0.1"
		o.FrontDoor = EphemeralPort
		o.ShutdownGrace = 200 * time.Millisecond
		o.ReadHeaderTimeout = time.Minute
		o.ReadTimeout = time.Minute
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// The stuck request must be the server's when the stop comes: once the server has taken its
	// connection (StateNew), Shutdown waits for it, as for any connection that has sent no whole
	// header yet (for up to 5 s); taken too late, the stop would not see it at all. taken gets the
	// client address of every connection the server takes; the test makes two.
	taken := make(chan string, 16)
	f.srv.connState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			taken <- c.RemoteAddr().String()
		}
	}

	// Run listens by itself when Listen was not called.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx) }()
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not open its port")
		}
		addr = f.srv.Addrs()["front_door"]
	}

	c := testClient(t)
	if code, _ := getStatus(t, c, "http://"+addr+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if _, err := stuck.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	for a := ""; a != stuck.LocalAddr().String(); {
		select {
		case a = <-taken:
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not take the stuck connection")
		}
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v on a requested stop", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > 5*time.Second {
		t.Errorf("stop took %v; want about the 200ms grace", took)
	}
	if !strings.Contains(logs.String(), "were cut") {
		t.Errorf("no log of the cut request: %s", logs)
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	stuck.Close()

	if err := f.srv.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
}

func TestListenPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	f := newFixture(t, func(o *Options) {
		o.Bind = "127.0.0.1"
		o.FrontDoor = EphemeralPort
		o.Services = map[string]int{"catalog": port}
	})
	err = f.srv.Listen()
	if err == nil {
		f.srv.Close()
		t.Fatal("Listen on a port in use succeeded")
	}
	p := strconv.Itoa(port)
	for _, want := range []string{
		"lan.services.catalog: cannot listen on 127.0.0.1:" + p + ": address already in use",
		"another program already listens on port " + p,
		"`ss -ltnp 'sport = :" + p + "'` on Linux",
		"`netstat -ano | findstr :" + p + "` on Windows",
		"stop it or change lan.services.catalog",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	var le *ListenError
	if !errors.As(err, &le) || le.Key != "lan.services.catalog" || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %#v is not a ListenError wrapping EADDRINUSE", err)
	}
	// The front door, opened before the failure, was released again.
	if len(f.srv.Addrs()) != 0 {
		t.Errorf("addrs after a failed Listen: %v", f.srv.Addrs())
	}
}

func TestListenErrorPermissionDenied(t *testing.T) {
	// Tests run as root, so the real failure cannot be provoked: build it as net.Listen reports it.
	sysErr := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	err := listenError("lan.front_door", ":80", 80, sysErr)
	want := "lan.front_door: cannot listen on :80: permission denied: ports below 1024 need a privilege: " +
		"run storeedge as root, give the binary CAP_NET_BIND_SERVICE (sudo setcap cap_net_bind_service=+ep " + executable() + "; " +
		"the systemd unit does this with AmbientCapabilities), or set lan.front_door to a port above 1023"
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
	if !errors.Is(err, syscall.EACCES) {
		t.Error("EACCES lost from the chain")
	}
	// Above 1023 the privilege advice would be wrong.
	err = listenError("lan.services.admin", ":8005", 8005, sysErr)
	if strings.Contains(err.Error(), "CAP_NET_BIND_SERVICE") || !strings.Contains(err.Error(), "choose another port for lan.services.admin") {
		t.Errorf("high port: %v", err)
	}
	// Windows reports a port in use with its own code.
	err = listenError("lan.front_door", ":80", 80, &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", wsaeaddrinuse)})
	if !strings.Contains(err.Error(), "another program already listens on port 80") {
		t.Errorf("WSAEADDRINUSE: %v", err)
	}
	// Anything else keeps the system's words.
	err = listenError("lan.front_door", "10.9.9.9:80", 80, &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)})
	if !strings.Contains(err.Error(), "lan.front_door: cannot listen on 10.9.9.9:80: listen tcp: bind: cannot assign requested address") {
		t.Errorf("other error: %v", err)
	}
}

func TestListenThenClose(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Bind = "127.0.0.1"
		o.FrontDoor = EphemeralPort
		o.Services = map[string]int{"admin": EphemeralPort}
	})
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	addrs := f.srv.Addrs()
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for name, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s: %s not released by Close: %v", name, addr, err)
			continue
		}
		ln.Close()
	}
	if err := f.srv.Run(context.Background()); err == nil {
		t.Error("Run after Close succeeded")
	}
}
