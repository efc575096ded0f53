package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/server"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
)

const demoUsage = `Usage: storeedge demo [--products N] [--port N] [--data-dir DIR] [--change-every 5s] [--set KEY=VALUE ...] [-v]

Runs the server against the built-in reference cloud (the same simulator the tests use), with a
generated catalog that changes every few seconds. Everything listens on 127.0.0.1 only. It
fetches the catalog's media into its data folder (at most 256 MiB, at 8 MiB/s): generated
bytes of each item's size, not pictures. Stop it with Ctrl-C; run it again and it starts from
the database it left. Its simulated cloud is new at each run: the server reads the catalog again
(the log says the cloud's cursor expired) and the demo device pairs again, with a new token.

--set changes a configuration key over the demo's own, as for storeedge run: for instance
--set lan.services.catalog=9000 when port 8000 is taken, or --set lan.services.media=0 to serve
media through the front door only. The demo's cloud (cloud.url, cloud.store_key) is built in,
and lan.bind stays 127.0.0.1.

Flags:
`

// adminBase is where the demo reaches the admin API and the status page: the front door, or
// the admin port when lan.front_door_admin is false.
func adminBase(cfg config.Config, addrs map[string]string) string {
	if !cfg.LAN.FrontDoorAdmin && addrs["admin"] != "" {
		return "http://" + addrs["admin"]
	}
	return "http://" + addrs["front_door"]
}

// revokeDemoDevices revokes the demo devices that earlier runs paired, through the admin API at
// base.
func revokeDemoDevices(ctx context.Context, base, admin string) error {
	call := func(method, path string, out any) error {
		req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		if out == nil {
			return nil
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	var list struct {
		Items []struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			Revoked bool   `json:"revoked"`
		} `json:"items"`
	}
	if err := call(http.MethodGet, "/api/v1/admin/devices", &list); err != nil {
		return err
	}
	for _, d := range list.Items {
		if d.Name == demoDevice && !d.Revoked {
			if err := call(http.MethodPost, "/api/v1/admin/devices/"+d.ID+"/revoke", nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// The demo's media cache and download rate (docs/media.md).
const (
	demoMediaCache = 256 << 20
	demoMediaRate  = 8 << 20
)

// demoDevice is the name of the demo's simulated device.
const demoDevice = "demo-pos"

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// cmdDemo runs the daemon against an in-process cloud simulator on loopback.
func cmdDemo(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	o, err := parseDemoFlags(args, stderr)
	if err != nil {
		return err
	}
	const storeKey = "demo-store-key"
	// The simulated cloud serves the media blobs itself (no Blob emulator needed), and names that
	// container in its remote configuration.
	sim := cloudsim.New(cloudsim.Options{Products: o.products, StoreID: "demo-shop", StoreName: "Demo shop", StoreKey: storeKey, ChangeEvery: o.changeEvery,
		Media: cloudsim.MediaOptions{BuiltIn: true}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: start the simulated cloud: %w", err)
	}
	cfg, err := demoConfig(o, "http://"+ln.Addr().String(), storeKey)
	if err != nil {
		ln.Close()
		return err
	}
	log := newLogger(cfg.Log, stderr)

	g, gctx := errgroup.WithContext(ctx)
	serveDemoCloud(gctx, g, sim, ln)
	g.Go(func() error {
		err := daemon(gctx, cfg, log, func(addrs map[string]string) {
			device := startDemoDevice(gctx, g, cfg, "http://"+addrs["front_door"], adminBase(cfg, addrs), log)
			printDemoBanner(stdout, o, cfg, addrs, device)
		})
		// The demo takes the front door's port as --port, not as the key: its message names it.
		if le, ok := errors.AsType[*server.ListenError](err); ok && le.Key == "lan.front_door" {
			le.Fix = strings.ReplaceAll(le.Fix, "lan.front_door", "--port")
			le.Key = "--port"
		}
		return err
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("demo: stopped", slog.String("database", cfg.DatabasePath()))
	return err
}

// defaultDemoDir is the demo's data folder: storeedge-demo in the user's cache folder (on Linux
// ~/.cache, on Windows %LocalAppData%), which no other user may write to; without one, in the
// temporary folder, with the user's id.
func defaultDemoDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "storeedge-demo")
	}
	name := "storeedge-demo"
	if uid := os.Getuid(); uid > 0 {
		name += "-" + strconv.Itoa(uid)
	}
	return filepath.Join(os.TempDir(), name)
}

// demoOptions are the demo's command line.
type demoOptions struct {
	products    int
	port        int
	dataDir     string
	changeEvery time.Duration
	verbose     bool
	sets        setFlags // KEY=VALUE over the demo's configuration
}

func parseDemoFlags(args []string, stderr io.Writer) (demoOptions, error) {
	var o demoOptions
	fs := newFlagSet("demo", demoUsage, stderr)
	fs.IntVar(&o.products, "products", 5000, "products in the simulated catalog")
	fs.IntVar(&o.port, "port", 8080, "front-door port (the services take 8000-8005 as in production)")
	fs.StringVar(&o.dataDir, "data-dir", defaultDemoDir(), "where the demo keeps its database (kept when it stops: the next run starts from it)")
	fs.DurationVar(&o.changeEvery, "change-every", 5*time.Second, "how often the simulated cloud changes prices, stock and products")
	fs.BoolVar(&o.verbose, "v", false, "log every sync step (debug level)")
	fs.Var(&o.sets, "set", "set one configuration key over the demo's, KEY=VALUE (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	if o.products < 1 || o.products > 1_000_000 {
		return o, usageError{fmt.Errorf("demo: --products must be 1..1000000, got %d", o.products)}
	}
	if o.port < 1 || o.port > 65535 {
		return o, usageError{fmt.Errorf("demo: --port must be 1..65535, got %d", o.port)}
	}
	if rest := fs.Args(); len(rest) > 0 {
		return o, usageError{unexpectedArg("demo", rest[0], args)}
	}
	return o, nil
}

// demoConfig is the server's configuration in the demo: the defaults, on loopback, against the
// simulated cloud at cloudURL.
func demoConfig(o demoOptions, cloudURL, storeKey string) (config.Config, error) {
	cfg := config.Default()
	cfg.ServerID = "storeedge-demo"
	cfg.Shop.Name = "Demo shop"
	cfg.DataDir = o.dataDir
	cfg.Cloud.URL = cloudURL
	cfg.Cloud.StoreKey = config.Secret(storeKey)
	cfg.Cloud.PollInterval = 2 * time.Second
	cfg.WAN.Proxy = "direct"
	cfg.LAN.Bind = "127.0.0.1"
	cfg.LAN.FrontDoor = o.port
	// A demo should not fill the disk or the line: a small cache, a modest rate.
	cfg.Media.CacheMaxBytes = demoMediaCache
	cfg.Media.MaxBandwidth = demoMediaRate
	// Fresh credentials each run: the demo listens on loopback only, but a credential printed on
	// a terminal should not outlive it.
	cfg.Admin.Token = config.Secret("demo-admin-" + randomHex(12))
	cfg.Devices.EnrollmentSecret = config.Secret("demo-enroll-" + randomHex(12))
	cfg.Log.Level = "info"
	if o.verbose {
		cfg.Log.Level = "debug"
	}
	for i, kv := range o.sets {
		key, value, ok := strings.Cut(kv, "=")
		if !ok { // not quoted: it may be a secret typed in the wrong place
			return cfg, usageError{fmt.Errorf("demo: --set argument %d: want KEY=VALUE", i+1)}
		}
		switch key {
		case "cloud.url", "cloud.store_key":
			return cfg, usageError{fmt.Errorf("demo: --set %s: the demo's cloud is built in; use storeedge run for another", key)}
		case "lan.bind":
			return cfg, usageError{fmt.Errorf("demo: --set %s: the demo listens on 127.0.0.1 only; use storeedge run to serve the LAN", key)}
		case "lan.front_door":
			return cfg, usageError{fmt.Errorf("demo: --set %s: use --port", key)}
		case "data_dir":
			return cfg, usageError{fmt.Errorf("demo: --set %s: use --data-dir", key)}
		}
		if err := cfg.Set(key, value); err != nil {
			return cfg, usageError{fmt.Errorf("demo: --set: %w", err)}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{fmt.Errorf("demo: %w", err)}
	}
	return cfg, nil
}

// serveDemoCloud runs the simulated cloud on ln in g until ctx ends.
func serveDemoCloud(ctx context.Context, g *errgroup.Group, sim *cloudsim.Sim, ln net.Listener) {
	simSrv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		if err := simSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if simSrv.Shutdown(sctx) != nil {
			// What is left are connections of the daemon, stopping in this process: one it
			// opened and never sent a request on counts as in use for 5 s. Nothing is lost.
			simSrv.Close()
		}
		return nil
	})
	g.Go(func() error { return sim.Run(ctx) })
}

// startDemoDevice pairs a simulated device, as a real one would be, that shows pushed orders and
// commands in the log, runs it in g, and returns its token ("" if it could not pair).
func startDemoDevice(ctx context.Context, g *errgroup.Group, cfg config.Config, front, admin string, log *slog.Logger) string {
	// The device of an earlier run is gone with its process: revoke it rather than let the
	// server try to reach it.
	if err := revokeDemoDevices(ctx, admin, cfg.Admin.Token.Reveal()); err != nil {
		log.Warn("demo: cannot revoke the devices of earlier runs", slog.Any("error", err))
	}
	pos := devicesim.New(devicesim.Options{Server: front, Kind: "pos", Name: demoDevice, Capabilities: []string{"orders"}, Logger: log,
		Handle: func(c devicesim.Command) error {
			log.Info("demo-pos: pushed command", slog.String("type", c.Type), slog.String("id", c.ID))
			return nil
		}})
	if err := pos.Pair(ctx, "", cfg.Devices.EnrollmentSecret.Reveal()); err != nil {
		log.Error("demo: cannot pair the demo device", slog.Any("error", err))
		return ""
	}
	g.Go(func() error { return pos.Run(ctx) })
	return pos.Token()
}

// printDemoBanner tells where to look, as curl lines with the credentials the demo made.
func printDemoBanner(stdout io.Writer, o demoOptions, cfg config.Config, addrs map[string]string, device string) {
	front := "http://" + addrs["front_door"]
	base := adminBase(cfg, addrs)
	admin := cfg.Admin.Token.Reveal()
	fmt.Fprintf(stdout, `
storeedge demo is running (Ctrl-C to stop)
  simulated cloud   %s  (%d products, changing every %s)
  database          %s  (and the media fetched beside it, at most %d MiB)
  health            %s/healthz
  status page       %s/status  (log in with the admin token below)

  Devices authenticate every call. The demo runs one ("demo-pos", which logs the orders and
  commands pushed to it); its token:
    DEVICE=%s
  a product         curl -H "Authorization: Bearer $DEVICE" %s/api/v1/catalog/products/P0000001
  search            curl -H "Authorization: Bearer $DEVICE" '%s/api/v1/catalog/search?q=chocolate'
  device deltas     curl -H "Authorization: Bearer $DEVICE" '%s/api/v1/catalog/changes?since=0&limit=5'
  a media file      curl -H "Authorization: Bearer $DEVICE" -o M0000001.bin %s/api/v1/media/M0000001
                    (generated bytes of the item's size, not a picture)

  Admin routes want the admin token:
    ADMIN=%s
  status            curl -H "Authorization: Bearer $ADMIN" %s/api/v1/status
  devices           curl -H "Authorization: Bearer $ADMIN" %s/api/v1/admin/devices
  a pairing code    curl -X POST -H "Authorization: Bearer $ADMIN" %s/api/v1/admin/pairing-codes
  push a command    curl -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
                      -d '{"target":{"all":true},"type":"ping"}' %s/api/v1/admin/commands

  A simulated device that receives pushed orders and commands:
    go run ./cmd/devicesim -server %s -enrollment-secret %s -capabilities orders
`, cfg.Cloud.URL, o.products, o.changeEvery, cfg.DatabasePath(), cfg.Media.CacheMaxBytes>>20, front, base,
		device, front, front, front, front, admin, base, base, base, base, front, cfg.Devices.EnrollmentSecret.Reveal())
	fmt.Fprintln(stdout, "\n  Listening:")
	for _, n := range slices.Sorted(maps.Keys(addrs)) {
		fmt.Fprintf(stdout, "  %-17s %s\n", n, addrs[n])
	}
}
