package profile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/bench/httpbench"
	"github.com/storeedge/storeedge/bench/syncbench"
	"github.com/storeedge/storeedge/bench/wrk"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/server"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// httpFlags are the flags of profile-http.
type httpFlags struct {
	workDir, dataDir     string
	threads, connections int
	duration             time.Duration
	target               string
	prof                 profiles
}

func parseHTTPFlags(args []string, stderr io.Writer) (*httpFlags, error) {
	f := &httpFlags{}
	fs := harness.NewFlagSet("profile-http", stderr)
	fs.StringVar(&f.workDir, "work", harness.DefaultWork, "scratch `directory`")
	fs.StringVar(&f.dataDir, "data-dir", "", "database `directory` made by bench sync (default WORK/data)")
	fs.IntVar(&f.threads, "threads", 2, "wrk -t")
	fs.IntVar(&f.connections, "connections", 64, "wrk -c")
	fs.DurationVar(&f.duration, "duration", 15*time.Second, "wrk -d")
	fs.StringVar(&f.target, "target", "products", "what wrk asks for: products (uniform ids), zipf (products, ids by a Zipf law), barcodes (uniform over every barcode), barcodes-zipf, or bare (a fixed body from a bare net/http handler in this process, for comparison)")
	f.prof.flags(fs, "profile-http")
	if err := harness.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	if !slices.Contains([]string{"products", "zipf", "barcodes", "barcodes-zipf", "bare"}, f.target) {
		return nil, harness.Usagef("-target %q: want products, zipf, barcodes, barcodes-zipf or bare", f.target)
	}
	if err := harness.AbsPaths(&f.workDir); err != nil {
		return nil, err
	}
	if f.dataDir == "" {
		f.dataDir = filepath.Join(f.workDir, "data")
	}
	return f, nil
}

// HTTP profiles the LAN server (server + storage in this process) on the kept database while wrk
// asks for random products or barcodes.
func HTTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseHTTPFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx) // ends what prepareTarget starts
	defer cancel()
	meta, err := syncbench.ReadMeta(f.dataDir)
	if err != nil {
		return fmt.Errorf("profile-http needs a database made by bench sync in %s: %w", f.dataDir, err)
	}
	wrkBin, err := wrk.Find()
	if err != nil {
		return err
	}
	if err := harness.PairDevice(ctx, f.dataDir); err != nil {
		return err
	}
	dbPath := filepath.Join(f.dataDir, "storeedge.db")
	db, err := storage.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	base, stop, err := serveCatalog(ctx, db)
	if err != nil {
		return err
	}
	defer stop()
	dir := filepath.Join(f.workDir, "http")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	script, url, err := prepareTarget(ctx, f.target, db, dbPath, base, dir, meta.Products, stdout)
	if err != nil {
		return err
	}
	var res wrk.Result
	var cpu time.Duration
	err = f.prof.during(stdout, func() (err error) {
		cpu0 := harness.ProcessCPU()
		res, _, err = wrk.Run(ctx, wrkBin, wrk.Options{Threads: f.threads, Connections: f.connections, Duration: f.duration, Script: script, URL: url})
		cpu = harness.ProcessCPU() - cpu0
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "in-process server, %s: %.0f req/s, p50 %s, p99 %s; server CPU %.1f s = %.1f µs per request (GOMAXPROCS %d)\n",
		f.target, res.ReqPerSec, harness.FmtMs(res.P50), harness.FmtMs(res.P99), cpu.Seconds(), float64(cpu.Microseconds())/float64(res.Requests), runtime.GOMAXPROCS(0))
	return nil
}

// serveCatalog runs the LAN server on db in this process, with the daemon's default read cache
// warmed before the measurement as the daemon does at start and its HTTP metrics, and returns the
// catalog port's URL and a function that stops the server.
func serveCatalog(ctx context.Context, db *storage.DB) (string, func(), error) {
	if err := db.EnableReadCache(1 << 30); err != nil {
		return "", nil, err
	}
	if _, _, err := db.WarmReadCache(ctx); err != nil {
		return "", nil, err
	}
	dm, err := devices.New(ctx, devices.Options{DB: db})
	if err != nil {
		return "", nil, err
	}
	srv, err := server.New(server.Options{DB: db, Devices: dm, Bind: "127.0.0.1", FrontDoor: 0,
		Services: map[string]int{"catalog": server.EphemeralPort}, ShutdownGrace: time.Second, Metrics: prometheus.NewRegistry()})
	if err != nil {
		return "", nil, err
	}
	if err := srv.Listen(); err != nil {
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Run(sctx) }()
	return "http://" + srv.Addrs()["catalog"], func() { cancel(); <-served }, nil
}

// prepareTarget writes the wrk script of target and returns it with the URL wrk is pointed at.
// For products and barcodes it first measures the lookups on storage alone; for bare it starts
// the bare handler, which runs until ctx ends.
func prepareTarget(ctx context.Context, target string, db *storage.DB, dbPath, base, dir string, products int, stdout io.Writer) (script, url string, err error) {
	if script, err = wrk.WriteIDScript(dir, products); err != nil {
		return "", "", err
	}
	switch target {
	case "bare":
		url, err = startBare(ctx, base)
		return script, url, err
	case "zipf":
		if script, err = wrk.WriteZipfScript(dir, products); err != nil {
			return "", "", err
		}
	case "barcodes", "barcodes-zipf":
		all, err := httpbench.AllBarcodes(ctx, dbPath)
		if err != nil {
			return "", "", err
		}
		if len(all)%7919 == 0 {
			all = all[1:] // the Zipf script scatters its ranks by multiples of 7919
		}
		codes := filepath.Join(dir, "barcodes.txt")
		if err := wrk.WriteLines(codes, all); err != nil {
			return "", "", err
		}
		write := wrk.WriteBarcodeScript
		if target == "barcodes-zipf" {
			write = wrk.WriteBarcodeZipfScript
		}
		if script, err = write(dir, codes); err != nil {
			return "", "", err
		}
	}
	// The database alone, without HTTP: the ceiling of the lookups the server can answer.
	cpu0 := harness.ProcessCPU()
	n, elapsed, err := storageOnly(ctx, db, target, products, script, 5*time.Second)
	if err != nil {
		return "", "", err
	}
	cpu := harness.ProcessCPU() - cpu0
	fmt.Fprintf(stdout, "storage only (%d goroutines calling storage.DB in a loop for 5 s, no HTTP, keys uniformly random whatever the target): %.0f %s lookups/s; CPU %.1f s = %.1f µs per lookup\n",
		runtime.GOMAXPROCS(0), float64(n)/elapsed.Seconds(), target, cpu.Seconds(), float64(cpu.Microseconds())/float64(n))
	return script, base, nil
}

// startBare serves the same product answer's bytes from a bare handler, what net/http alone
// costs here, until ctx ends; it returns its URL.
func startBare(ctx context.Context, base string) (string, error) {
	size, _, err := httpbench.GetProduct(ctx, harness.NewClient(10*time.Second, false), base+"/api/v1/catalog/products/P0000001")
	if err != nil {
		return "", err
	}
	body := []byte(strings.Repeat("x", size))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
		w.Write(body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go bare.Serve(ln)
	context.AfterFunc(ctx, func() { bare.Close() })
	return "http://" + ln.Addr().String(), nil
}

// storageOnly calls storage.DB.Get (or ProductByBarcode) with uniformly random keys, also for a
// Zipf target (the figure is the storage's cost per lookup, not the workload's), from GOMAXPROCS
// goroutines for d and returns the number of lookups and the time they took. For barcodes the
// keys are read from the script's list file next to it.
func storageOnly(ctx context.Context, db *storage.DB, target string, products int, script string, d time.Duration) (int64, time.Duration, error) {
	var codes []string
	if strings.HasPrefix(target, "barcodes") {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(script), "barcodes.txt"))
		if err != nil {
			return 0, 0, err
		}
		codes = strings.Fields(string(b))
		if len(codes) == 0 {
			return 0, 0, errors.New("storage only: no barcodes")
		}
	}
	n := runtime.GOMAXPROCS(0)
	counts := make([]int64, n)
	errs := make([]error, n)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				var err error
				if codes != nil {
					_, err = db.ProductByBarcode(ctx, codes[rng.IntN(len(codes))])
				} else {
					_, err = db.Get(ctx, cloudapi.Products, fmt.Sprintf("P%07d", 1+rng.IntN(products)))
				}
				if err != nil {
					errs[g] = err
					return
				}
				counts[g]++
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, fmt.Errorf("storage only: %w", err)
	}
	var total int64
	for _, c := range counts {
		total += c
	}
	return total, elapsed, nil
}
