package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ErrNotLoopback refuses any connection that would leave the machine.
var ErrNotLoopback = errors.New("bench talks to 127.0.0.1 only")

// loopbackDial dials only loopback addresses, so a mistake can never send benchmark traffic
// elsewhere.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrNotLoopback)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// NewClient returns an HTTP client for loopback servers: no proxy from the environment, loopback
// only, the bench's credentials on every request, and a bound on every request.
func NewClient(timeout time.Duration, keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: authTransport{&http.Transport{
			Proxy:               nil,
			DialContext:         loopbackDial,
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 16,
			DisableCompression:  true,
		}},
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePorts returns n ports that were free a moment ago.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		var err error
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	return ports, nil
}
