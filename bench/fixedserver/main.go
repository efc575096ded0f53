// Command fixedserver is the baseline server of storeedge's benchmarks (bench/): a bare net/http
// server that answers every GET with the same JSON body of -size bytes. What storeedge takes
// beyond it, to start or per request, is storeedge's own cost.
//
//	fixedserver -listen 127.0.0.1:PORT -size 400
//
// It prints "fixedserver listening on http://ADDR" once listening and stops on SIGTERM or
// SIGINT, exit 0. It listens on loopback addresses only.
//
// Two flags add, one at a time, what storeedge's catalog answers carry beyond a body, so that
// their share of the difference can be measured apart (docs/PERFORMANCE.md):
//
//	-headers    the four headers of the catalog contract: X-Request-Id (a new one for every
//	            answer), Cache-Control, Storeedge-Synced-At and Storeedge-Data-Age
//	-timeouts   the daemon's default lan.read_timeout and lan.write_timeout, which net/http
//	            applies to every request with deadlines on the connection
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/storeedge/storeedge/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "fixedserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fixedserver", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback `address` to listen on")
	size := fs.Int("size", 400, "answer body size in `bytes` (at least 16)")
	headers := fs.Bool("headers", false, "send the four headers of storeedge's catalog answers too")
	timeouts := fs.Bool("timeouts", false, "apply storeedge's default LAN read and write timeouts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *size < 16 || *size > 1<<20 {
		return fmt.Errorf("-size %d outside 16..1048576", *size)
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: want a loopback address such as 127.0.0.1:8080", *listen)
	}
	h := handler(fixedBody(*size), *headers)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	if *timeouts {
		srv.ReadTimeout, srv.WriteTimeout = config.DefaultLANReadTimeout, config.DefaultLANWriteTimeout
	}
	fmt.Printf("fixedserver listening on http://%s\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// handler answers every request with body, and with the catalog contract's headers when headers
// is set.
func handler(body []byte, headers bool) http.Handler {
	length := []string{strconv.Itoa(len(body))}
	contentType := []string{"application/json"}
	var ids atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = contentType
		hdr["Content-Length"] = length
		if headers {
			hdr["X-Request-Id"] = []string{"5f1e2d3c4b5a-" + strconv.FormatUint(ids.Add(1), 10)}
			hdr["Cache-Control"] = noCache
			hdr["Storeedge-Synced-At"] = syncedAt
			hdr["Storeedge-Data-Age"] = dataAge
		}
		w.Write(body)
	})
}

// Values of the catalog contract's headers, as a synced catalog's answer carries them.
var (
	noCache  = []string{"no-cache"}
	syncedAt = []string{"2026-12-04T10:00:00Z"}
	dataAge  = []string{"12"}
)

// fixedBody is a JSON object of exactly n bytes, shaped like a catalog answer.
func fixedBody(n int) []byte {
	const head, tail = `{"id":"P0000000","pad":"`, `"}`
	if n < len(head)+len(tail) {
		return []byte(strings.Repeat(" ", n))
	}
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}
