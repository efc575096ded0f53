// Command fixedserver is the baseline server of storeedge's benchmarks (bench/): a bare net/http
// server that answers every GET with the same JSON body of -size bytes. What storeedge takes
// beyond it, to start or per request, is storeedge's own cost.
//
//	fixedserver -listen 127.0.0.1:PORT -size 400
//
// It prints "fixedserver listening on http://ADDR" once listening and stops on SIGTERM or
// SIGINT, exit 0. It listens on loopback addresses only.
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
	"syscall"
	"time"
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
	body := fixedBody(*size)
	length := []string{strconv.Itoa(len(body))}
	contentType := []string{"application/json"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = contentType
		hdr["Content-Length"] = length
		w.Write(body)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
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

// fixedBody is a JSON object of exactly n bytes, shaped like a catalog answer.
func fixedBody(n int) []byte {
	const head, tail = `{"id":"P0000000","pad":"`, `"}`
	if n < len(head)+len(tail) {
		return []byte(strings.Repeat(" ", n))
	}
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}
