// Command devicesim is the reference shop device: it pairs with a storeedge server, heartbeats,
// listens for pushed commands, checks each one and acknowledges it, printing every command it
// does as a line of JSON. With -devices N it runs N devices at once (tests, benchmarks).
//
//	devicesim -server http://192.168.1.10 -code 1234-5678
//	devicesim -server http://127.0.0.1:8080 -enrollment-secret S -devices 500 -capabilities orders
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/storeedge/storeedge/devices/devicesim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "devicesim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devicesim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1", "base URL of the storeedge LAN API (front door or devices port)")
	code := fs.String("code", "", "pairing code an admin created (one device only)")
	enroll := fs.String("enrollment-secret", "", "the shop's enrollment secret (devices.enrollment_secret), instead of -code")
	n := fs.Int("devices", 1, "how many devices to run")
	kind := fs.String("kind", "tablet", "tablet, kiosk, pos, signage, printer or other")
	name := fs.String("name", "devicesim", "device name; with -devices N, a number is added")
	caps := fs.String("capabilities", "", `comma-separated capabilities, e.g. "orders,print"`)
	host := fs.String("listen", "127.0.0.1", "address the push listeners bind to")
	port := fs.Int("push-port", 0, "push port of the first device, the next ones count up from it; 0: free ports")
	heartbeat := fs.Duration("heartbeat", 30*time.Second, "interval between heartbeats")
	verbose := fs.Bool("v", false, "log each connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *n < 1 || *n > 10000:
		return fmt.Errorf("-devices must be 1..10000, got %d", *n)
	case (*code == "") == (*enroll == ""):
		return errors.New("give -code or -enrollment-secret")
	case *code != "" && *n > 1:
		return errors.New("a pairing code pairs one device; use -enrollment-secret for -devices > 1")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var capList []string
	if *caps != "" {
		capList = strings.Split(*caps, ",")
	}

	var outMu sync.Mutex
	enc := json.NewEncoder(stdout)
	g, gctx := errgroup.WithContext(ctx)
	for i := range *n {
		devName := *name
		if *n > 1 {
			devName = fmt.Sprintf("%s-%d", *name, i+1)
		}
		listen := net.JoinHostPort(*host, "0")
		if *port > 0 {
			listen = net.JoinHostPort(*host, strconv.Itoa(*port+i))
		}
		var d *devicesim.Device
		d = devicesim.New(devicesim.Options{Server: strings.TrimRight(*server, "/"), Kind: *kind, Name: devName, Capabilities: capList,
			AppVersion: "devicesim/1", Listen: listen, Heartbeat: *heartbeat, Logger: log,
			Handle: func(c devicesim.Command) error {
				outMu.Lock()
				defer outMu.Unlock()
				return enc.Encode(struct {
					Device string `json:"device"`
					devicesim.Command
				}{d.ID(), c})
			}})
		if err := d.Pair(ctx, *code, *enroll); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "devicesim: %s paired as %s, push port %s\n", devName, d.ID(), d.PushAddr())
		g.Go(func() error { return d.Run(gctx) })
	}
	return g.Wait()
}
