// Package soak runs storeedge under a shop's steady load for a long time and checks that it
// stays flat: the daemon and cloudsim as processes (package harness), N paired devices in this
// process (package devices/devicesim: push listeners that acknowledge, heartbeats), product
// lookups, event-stream followers, orders at a steady rate, catalog changes in the cloud every
// second and the outbox draining to it.
//
// It samples the daemon's resident memory, goroutines (the status document) and open files,
// and fails when any grew more than MaxGrowth after the warm-up, on any error, on an order
// that did not reach the cloud or the event stream, and on commands left in push queues. The
// command is "bench soak" (scripts/bench.sh soak); soak_test.go runs a 60-second version in CI
// with the same checks.
package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// The defaults of "bench soak": the load of issue #13 point 6.
const (
	DefaultDuration     = 10 * time.Minute
	DefaultDevices      = 500
	DefaultOrderRate    = 50
	DefaultCatalogEvery = time.Second
	// DefaultProducts is the cloud's catalog: small enough that the first sync takes a second or
	// two, big enough that it fills the daemon's SQLite page caches before the load starts. On a
	// smaller catalog they fill as orders and catalog changes grow the database, over the first
	// two minutes (53 → 109 MB at 2,000 products, then flat): a one-minute soak would take that
	// for a leak.
	DefaultProducts = 20_000
	// DefaultSampleEvery is how often the daemon's resources are sampled.
	DefaultSampleEvery = 2 * time.Second
	// WarmupShare is the part of the run before the baseline of the growth check: caches,
	// connection pools and the push connections settle in it.
	WarmupShare = 0.2
	// MaxGrowth is the largest growth of a resource allowed after the warm-up (5 %).
	MaxGrowth = 0.05
	// EnrollmentSecret pairs the soak's devices; it is not a secret.
	EnrollmentSecret = "soak-enrollment-secret-0123"
)

// Options are one soak's parameters.
type Options struct {
	StoreedgeBin, CloudsimBin string
	WorkDir                   string // scratch; the daemon's data directory goes in it
	Duration                  time.Duration
	// Warmup, when set, runs the load this long before Duration, outside the growth check: long
	// enough for SQLite's page caches to fill under the load. Zero: the first WarmupShare of
	// Duration is the warm-up.
	Warmup       time.Duration
	Devices      int
	OrderRate    int // orders per second
	CatalogEvery time.Duration
	Products     int
	SampleEvery  time.Duration
	Followers    int           // event-stream followers; 0: one per 50 devices, at least 2
	Heartbeat    time.Duration // each device's heartbeat interval; 0: 30 s
	LookupRate   int           // product lookups per second, all devices together; 0: 2 per device
	Log          io.Writer     // progress lines; nil: none
}

// phases returns how long the load runs in all, and when the warm-up ends.
func (o *Options) phases() (total, warm time.Duration) {
	if o.Warmup > 0 {
		return o.Warmup + o.Duration, o.Warmup
	}
	return o.Duration, time.Duration(float64(o.Duration) * WarmupShare)
}

func (o *Options) defaults() {
	if o.Products == 0 {
		o.Products = DefaultProducts
	}
	if o.SampleEvery == 0 {
		o.SampleEvery = DefaultSampleEvery
	}
	if o.Followers == 0 {
		o.Followers = max(2, o.Devices/50)
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.LookupRate == 0 {
		o.LookupRate = 2 * o.Devices
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Run runs one soak and returns its result; the result's Failures say whether it passed. The
// error is a soak that could not run (a binary missing, a process that did not start).
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	if o.Devices < 1 || o.OrderRate < 1 || o.Duration <= 0 || o.CatalogEvery <= 0 {
		return nil, errors.New("soak: -devices, -orders-per-second, -duration and -catalog-every must be positive")
	}
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, err
	}
	cloud, cloudURL, err := harness.StartCloud(ctx, harness.Cloud{Bin: o.CloudsimBin, Products: o.Products, Ready: 30 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer cloud.Kill()
	daemon, base, err := StartDaemon(ctx, o.StoreedgeBin, filepath.Join(o.WorkDir, "data"), cloudURL, o.Log)
	if err != nil {
		return nil, err
	}
	defer daemon.Stop(10 * time.Second)
	s := &soak{o: o, base: base, cloudURL: cloudURL, daemon: daemon, client: harness.NewClient(30*time.Second, true)}
	return s.run(ctx)
}

// StartDaemon starts storeedge on a fresh data directory, with the cloud polled every second
// and devices pairing by EnrollmentSecret, waits for its first complete sync and returns it and
// its URL. The regression bench (bench/regress) starts its shop with it too.
func StartDaemon(ctx context.Context, bin, dataDir, cloudURL string, log io.Writer) (*harness.Proc, string, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, "", err
	}
	if err := os.RemoveAll(dataDir); err != nil {
		return nil, "", err
	}
	cfg := harness.DaemonConfig{DataDir: dataDir, CloudURL: cloudURL, FrontDoor: port, Extra: []string{
		"cloud.poll_interval=1s",
		"devices.enrollment_secret=" + EnrollmentSecret,
		"log.level=warn",
	}}
	fmt.Fprintf(log, "soak: %s\n", harness.ShellJoin(append([]string{bin}, cfg.Args()...)))
	p, err := cfg.Start(bin, nil)
	if err != nil {
		return nil, "", fmt.Errorf("soak: start storeedge: %w", err)
	}
	base := harness.LocalURL(port)
	if _, err := harness.WaitFirst200(ctx, p, base+"/healthz", 50*time.Millisecond, 30*time.Second); err != nil {
		p.Kill()
		return nil, "", fmt.Errorf("soak: %w", err)
	}
	c := harness.NewClient(10*time.Second, true)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := harness.GetStatus(ctx, c, base)
		if err == nil && st.CaughtUp() {
			return p, base, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			return nil, "", fmt.Errorf("soak: first sync not done within 2 minutes (status %v, %v)", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// productURL is the lookup of the i-th product (0-based) of cloudsim's catalog.
func productURL(base string, i int) string {
	return base + "/api/v1/catalog/products/P" + fmt.Sprintf("%07d", i+1)
}

// drain reads and closes an answer, and says whether it was the status wanted.
func drain(resp *http.Response, want int) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %.200s", resp.Request.Method, resp.Request.URL.Path, resp.Status, b)
	}
	return nil
}
