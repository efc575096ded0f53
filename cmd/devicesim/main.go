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
	"slices"
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
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var found *discovery.Found
	if o.discover != "" {
		f, err := find(ctx, o.discover, o.shop, o.discoverTimeout)
		if err != nil {
			return err
		}
		found = &f
		o.server = f.URL
		if !o.given["listen"] {
			o.host = "" // the server dials the device from the LAN
		}
		fmt.Fprintf(stderr, "devicesim: found %s %q (shop %q) at %s by %s in %s, pairing %s\n",
			f.ServerID, f.Name, f.ShopID, f.URL, o.discover, f.After.Round(time.Millisecond), map[bool]string{true: "open", false: "closed"}[f.PairingOpen])
	}
	out := &commandLog{enc: json.NewEncoder(stdout)}
	g, gctx := errgroup.WithContext(ctx)
	for i := range o.n {
		d, err := startDevice(ctx, o, i, found, log, out, stderr)
		if err != nil {
			return err
		}
		g.Go(func() error { return d.Run(gctx) })
	}
	return g.Wait()
}

// options are devicesim's command line.
type options struct {
	server, code, enroll, kind, name, caps, host string
	types                                        string
	n, port, pushVersion                         int
	heartbeat, discoverTimeout                   time.Duration
	verbose                                      bool
	discover, shop                               string
	given                                        map[string]bool // the flags set on the command line
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("devicesim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", "http://127.0.0.1", "base URL of the storeedge LAN API (front door or devices port)")
	fs.StringVar(&o.code, "code", "", "pairing code an admin created (one device only)")
	fs.StringVar(&o.enroll, "enrollment-secret", "", "the shop's enrollment secret (devices.enrollment_secret), instead of -code")
	fs.IntVar(&o.n, "devices", 1, "how many devices to run")
	fs.StringVar(&o.kind, "kind", "tablet", "tablet, kiosk, pos, signage, printer or other")
	fs.StringVar(&o.name, "name", "devicesim", "device name; with -devices N, a number is added")
	fs.StringVar(&o.caps, "capabilities", "", `comma-separated capabilities, e.g. "orders,print"`)
	fs.StringVar(&o.types, "extra-types", "", `comma-separated command types the device does besides order.new, print, catalog.changed, reload and ping; it nacks any other ("unknown command type")`)
	fs.StringVar(&o.host, "listen", "127.0.0.1", "address the push listeners bind to")
	fs.IntVar(&o.port, "push-port", 0, "push port of the first device, the next ones count up from it; 0: free ports")
	fs.DurationVar(&o.heartbeat, "heartbeat", 30*time.Second, "interval between heartbeats")
	fs.BoolVar(&o.verbose, "v", false, "log each connection")
	fs.IntVar(&o.pushVersion, "push-version", push.Version, "push protocol version to speak (1: a device not yet updated, docs/push-protocol.md)")
	fs.StringVar(&o.discover, "discover", "", `find the server instead of -server: "udp" (a probe on UDP 57854) or "mdns" (_storeedge._tcp); the push listeners then bind every interface unless -listen says otherwise`)
	fs.StringVar(&o.shop, "shop", "", "with -discover udp, ask only the server of this shop id")
	fs.DurationVar(&o.discoverTimeout, "discover-timeout", 5*time.Second, "how long -discover looks for a server")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.given[f.Name] = true })
	return o, o.check()
}

// check names the first contradiction or value out of range on the command line.
func (o options) check() error {
	switch {
	case o.n < 1 || o.n > 10000:
		return fmt.Errorf("-devices must be 1..10000, got %d", o.n)
	case (o.code == "") == (o.enroll == ""):
		return errors.New("give -code or -enrollment-secret")
	case o.code != "" && o.n > 1:
		return errors.New("a pairing code pairs one device; use -enrollment-secret for -devices > 1")
	case o.discover != "" && o.given["server"]:
		return errors.New("give -server or -discover, not both")
	case o.discover != "" && o.discover != "udp" && o.discover != "mdns":
		return fmt.Errorf(`-discover %q: want "udp" or "mdns"`, o.discover)
	case o.pushVersion < push.MinVersion || o.pushVersion > push.Version:
		return fmt.Errorf("-push-version must be %d..%d, got %d", push.MinVersion, push.Version, o.pushVersion)
	}
	return nil
}

// commandLog writes each command a device did as one JSON line on stdout.
type commandLog struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (l *commandLog) write(device string, c devicesim.Command) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc.Encode(struct {
		Device string `json:"device"`
		devicesim.Command
	}{device, c})
}

// startDevice builds the i-th device, says hello when the server was discovered, and pairs it.
func startDevice(ctx context.Context, o options, i int, found *discovery.Found, log *slog.Logger, out *commandLog, stderr io.Writer) (*devicesim.Device, error) {
	devName := o.name
	if o.n > 1 {
		devName = fmt.Sprintf("%s-%d", o.name, i+1)
	}
	listen := net.JoinHostPort(o.host, "0")
	if o.port > 0 {
		listen = net.JoinHostPort(o.host, strconv.Itoa(o.port+i))
	}
	var capList []string
	if o.caps != "" {
		capList = strings.Split(o.caps, ",")
	}
	types := devicesim.DefaultTypes
	if o.types != "" {
		types = append(slices.Clone(types), strings.Split(o.types, ",")...)
	}
	var d *devicesim.Device
	d = devicesim.New(devicesim.Options{Server: strings.TrimRight(o.server, "/"), Kind: o.kind, Name: devName, Capabilities: capList,
		AppVersion: "devicesim/1", Listen: listen, Heartbeat: o.heartbeat, Logger: log, PushVersion: o.pushVersion, Types: types,
		Handle: func(c devicesim.Command) error { return out.write(d.ID(), c) }})
	if found != nil {
		// Hello first, so that shop IT sees the device among those waiting, as a real one would
		// while it waits for its pairing code.
		if err := sayHello(d, devName, o.kind, found); err != nil {
			return nil, err
		}
	}
	if err := d.Pair(ctx, o.code, o.enroll); err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "devicesim: %s paired as %s, push port %s\n", devName, d.ID(), d.PushAddr())
	return d, nil
}

// sayHello opens d's push port and says hello to the server that was found, with that port.
func sayHello(d *devicesim.Device, devName, kind string, found *discovery.Found) error {
	addr, err := d.Listen()
	if err != nil {
		return err
	}
	_, p, _ := net.SplitHostPort(addr)
	pushPort, _ := strconv.Atoi(p)
	hello := discovery.Hello{DeviceID: discovery.TruncateText(devName, discovery.MaxIDLen), Kind: kind, Name: devName,
		Version: "devicesim/1", PushPort: pushPort}
	return discovery.SayHello(hello, netip.AddrPortFrom(found.From.Addr(), config.DefaultDiscoveryUDPPort))
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
