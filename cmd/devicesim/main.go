// Command devicesim is the reference shop device: it pairs with a storeedge server, heartbeats,
// listens for pushed commands, checks each one and acknowledges it, printing every command it
// does as a line of JSON. With -devices N it runs N devices at once (tests, benchmarks). With
// -discover it finds the server itself, by a UDP probe or by mDNS (docs/discovery.md), says hello
// and pairs with what it found.
//
//	devicesim -server http://192.168.1.10 -code 1234-5678
//	devicesim -server http://127.0.0.1:8080 -enrollment-secret S -devices 500 -capabilities orders
//	devicesim -discover udp -code 1234-5678
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
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/devices/push"
	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/internal/config"
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
	pushVersion := fs.Int("push-version", push.Version, "push protocol version to speak (1: a device not yet updated, docs/push-protocol.md)")
	discover := fs.String("discover", "", `find the server instead of -server: "udp" (a probe on UDP 57854) or "mdns" (_storeedge._tcp); the push listeners then bind every interface unless -listen says otherwise`)
	shop := fs.String("shop", "", "with -discover udp, ask only the server of this shop id")
	discoverTimeout := fs.Duration("discover-timeout", 5*time.Second, "how long -discover looks for a server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	switch {
	case *n < 1 || *n > 10000:
		return fmt.Errorf("-devices must be 1..10000, got %d", *n)
	case (*code == "") == (*enroll == ""):
		return errors.New("give -code or -enrollment-secret")
	case *code != "" && *n > 1:
		return errors.New("a pairing code pairs one device; use -enrollment-secret for -devices > 1")
	case *discover != "" && given["server"]:
		return errors.New("give -server or -discover, not both")
	case *discover != "" && *discover != "udp" && *discover != "mdns":
		return fmt.Errorf(`-discover %q: want "udp" or "mdns"`, *discover)
	case *pushVersion < push.MinVersion || *pushVersion > push.Version:
		return fmt.Errorf("-push-version must be %d..%d, got %d", push.MinVersion, push.Version, *pushVersion)
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

	var found *discovery.Found
	if *discover != "" {
		f, err := find(ctx, *discover, *shop, *discoverTimeout)
		if err != nil {
			return err
		}
		found = &f
		*server = f.URL
		if !given["listen"] {
			*host = "" // the server dials the device from the LAN
		}
		fmt.Fprintf(stderr, "devicesim: found %s %q (shop %q) at %s by %s in %s, pairing %s\n",
			f.ServerID, f.Name, f.ShopID, f.URL, *discover, f.After.Round(time.Millisecond), map[bool]string{true: "open", false: "closed"}[f.PairingOpen])
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
			AppVersion: "devicesim/1", Listen: listen, Heartbeat: *heartbeat, Logger: log, PushVersion: *pushVersion,
			Handle: func(c devicesim.Command) error {
				outMu.Lock()
				defer outMu.Unlock()
				return enc.Encode(struct {
					Device string `json:"device"`
					devicesim.Command
				}{d.ID(), c})
			}})
		if found != nil {
			// Hello first, so that shop IT sees the device among those waiting, as a real one
			// would while it waits for its pairing code.
			addr, err := d.Listen()
			if err != nil {
				return err
			}
			_, p, _ := net.SplitHostPort(addr)
			pushPort, _ := strconv.Atoi(p)
			hello := discovery.Hello{DeviceID: discovery.TruncateText(devName, discovery.MaxIDLen), Kind: *kind, Name: devName,
				Version: "devicesim/1", PushPort: pushPort}
			if err := discovery.SayHello(hello, netip.AddrPortFrom(found.From.Addr(), config.DefaultDiscoveryUDPPort)); err != nil {
				return err
			}
		}
		if err := d.Pair(ctx, *code, *enroll); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "devicesim: %s paired as %s, push port %s\n", devName, d.ID(), d.PushAddr())
		g.Go(func() error { return d.Run(gctx) })
	}
	return g.Wait()
}

// find looks for a server by UDP probe or mDNS, and returns the first that answers.
func find(ctx context.Context, how, shop string, timeout time.Duration) (discovery.Found, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var found []discovery.Found
	var err error
	if how == "udp" {
		found, err = discovery.Probe(ctx, discovery.ProbeOptions{ShopID: shop, First: true})
	} else {
		found, err = discovery.Browse(ctx, discovery.BrowseOptions{First: true})
	}
	if err != nil {
		return discovery.Found{}, fmt.Errorf("discover by %s: %w", how, err)
	}
	return found[0], nil
}
