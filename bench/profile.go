//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/server"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/feed"
)

// The daemon has no pprof endpoint, so the profiles run the daemon's own packages in this
// process: feed.Syncer + storage for a first sync, server + storage under wrk for the LAN API.
// Only the cloud (cloudsim) and the load generator (wrk) are other processes, so the profile
// shows storeedge's code alone.

// profiles are the profile files a command writes.
type profiles struct {
	cpu, block, mutex string
	cpuFile           *os.File
}

func (p *profiles) flags(fs *flag.FlagSet, name string) {
	fs.StringVar(&p.cpu, "cpuprofile", filepath.Join("bin", "bench-work", name+".cpu.pprof"), "CPU profile `file`")
	fs.StringVar(&p.block, "blockprofile", "", "block profile `file` (waits on channels, locks, the connection pool); empty: none")
	fs.StringVar(&p.mutex, "mutexprofile", "", "mutex contention profile `file`; empty: none")
}

func (p *profiles) start() error {
	if err := os.MkdirAll(filepath.Dir(p.cpu), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p.cpu)
	if err != nil {
		return err
	}
	if p.block != "" {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	}
	if p.mutex != "" {
		runtime.SetMutexProfileFraction(10)
	}
	p.cpuFile = f
	return pprof.StartCPUProfile(f)
}

func (p *profiles) stop(w io.Writer) error {
	pprof.StopCPUProfile()
	errs := []error{p.cpuFile.Close()}
	fmt.Fprintf(w, "CPU profile: %s\n  go tool pprof -top -nodecount=40 %s\n", p.cpu, p.cpu)
	for _, x := range []struct{ name, file string }{{"block", p.block}, {"mutex", p.mutex}} {
		if x.file == "" {
			continue
		}
		f, err := os.Create(x.file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, pprof.Lookup(x.name).WriteTo(f, 0), f.Close())
		fmt.Fprintf(w, "%s profile: %s\n  go tool pprof -top -nodecount=40 %s\n", x.name, x.file, x.file)
	}
	return errors.Join(errs...)
}

// cmdProfileSync profiles a first sync done by feed.Syncer in this process against a cloudsim
// process.
func cmdProfileSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &options{}
	var prof profiles
	fs := flag.NewFlagSet("bench profile-sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.binDir, "bin", "bin", "`directory` holding the cloudsim binary")
	fs.StringVar(&o.workDir, "work", filepath.Join("bin", "bench-work"), "scratch `directory`")
	fs.IntVar(&o.products, "products", 1_000_000, "catalog size")
	fs.Int64Var(&o.seed, "seed", 1, "cloudsim catalog seed")
	pageSize := fs.Int("page-size", 5000, "changes per feed page (cloud.page_size)")
	prof.flags(fs, "profile-sync")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *pageSize < 1 || *pageSize > cloudapi.MaxPageSize {
		return usageError{fmt.Errorf("-page-size %d outside 1..%d", *pageSize, cloudapi.MaxPageSize)}
	}
	var err error
	if o.binDir, err = filepath.Abs(o.binDir); err != nil {
		return err
	}
	o.cloudsimBin = filepath.Join(o.binDir, "cloudsim")
	cloudProc, cloudURL, err := startCloud(o)
	if err != nil {
		return err
	}
	defer cloudProc.kill()

	dir := filepath.Join(o.workDir, "profile-sync")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := storage.Open(ctx, filepath.Join(dir, "storeedge.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	client, err := cloud.New(cloudURL, benchKey, newClient(2*time.Minute, true), "storeedge-bench")
	if err != nil {
		return err
	}
	syncer := feed.New(feed.Options{DB: db, Client: client, PageSize: *pageSize,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err := prof.start(); err != nil {
		return err
	}
	start := time.Now()
	err = syncer.SyncOnce(ctx)
	elapsed := time.Since(start)
	if perr := prof.stop(stdout); err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("profile-sync: %w", err)
	}
	var total int64
	for _, c := range cloudapi.Collections {
		n, err := db.Count(ctx, c)
		if err != nil {
			return err
		}
		total += n
	}
	fmt.Fprintf(stdout, "in-process first sync (feed.Syncer.SyncOnce, page size %d): %s rows in %.2f s = %.0f rows/s\n",
		*pageSize, fmtInt(total), elapsed.Seconds(), float64(total)/elapsed.Seconds())
	return nil
}

// cmdProfileHTTP profiles the LAN server (server + storage in this process) on the kept database
// while wrk asks for random products or barcodes.
func cmdProfileHTTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &options{}
	var prof profiles
	fs := flag.NewFlagSet("bench profile-http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.workDir, "work", filepath.Join("bin", "bench-work"), "scratch `directory`")
	fs.StringVar(&o.dataDir, "data-dir", "", "database `directory` made by bench sync (default WORK/data)")
	fs.IntVar(&o.threads, "threads", 2, "wrk -t")
	fs.IntVar(&o.connections, "connections", 64, "wrk -c")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "wrk -d")
	target := fs.String("target", "products", "what wrk asks for: products, barcodes, or bare (a fixed body from a bare net/http handler in this process, for comparison)")
	prof.flags(fs, "profile-http")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *target != "products" && *target != "barcodes" && *target != "bare" {
		return usageError{fmt.Errorf("-target %q: want products, barcodes or bare", *target)}
	}
	var err error
	if o.workDir, err = filepath.Abs(o.workDir); err != nil {
		return err
	}
	if o.dataDir == "" {
		o.dataDir = filepath.Join(o.workDir, "data")
	}
	meta, err := readMeta(o.dataDir)
	if err != nil {
		return fmt.Errorf("profile-http needs a database made by bench sync in %s: %w", o.dataDir, err)
	}
	wrkBin, err := findWrk()
	if err != nil {
		return err
	}
	if err := pairBenchDevice(ctx, o.dataDir); err != nil {
		return err
	}
	db, err := storage.Open(ctx, filepath.Join(o.dataDir, "storeedge.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	// The daemon's default read cache, warmed before the measurement as the daemon does at start.
	if err := db.EnableReadCache(1 << 30); err != nil {
		return err
	}
	if _, _, err := db.WarmReadCache(ctx); err != nil {
		return err
	}
	dm, err := devices.New(ctx, devices.Options{DB: db})
	if err != nil {
		return err
	}
	srv, err := server.New(server.Options{DB: db, Devices: dm, Bind: "127.0.0.1", FrontDoor: 0,
		Services: map[string]int{"catalog": server.EphemeralPort}, ShutdownGrace: time.Second})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Run(sctx) }()
	defer func() { stop(); <-served }()
	base := "http://" + srv.Addrs()["catalog"]

	dir := filepath.Join(o.workDir, "http")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	script, err := writeIDScript(dir, meta.Products)
	if err != nil {
		return err
	}
	if *target == "barcodes" {
		smp, err := sampleProducts(ctx, base, meta.Products, 20000)
		if err != nil {
			return err
		}
		codes := filepath.Join(dir, "barcodes.txt")
		if err := writeLines(codes, smp.barcodes); err != nil {
			return err
		}
		if script, err = writeBarcodeScript(dir, codes); err != nil {
			return err
		}
	}
	if *target == "bare" {
		// The same product answer's bytes from a bare handler: what net/http alone costs here.
		size, _, err := getProduct(ctx, newClient(10*time.Second, false), base+"/api/v1/catalog/products/P0000001")
		if err != nil {
			return err
		}
		body := make([]byte, size)
		for i := range body {
			body[i] = 'x'
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = []string{"application/json"}
			w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
			w.Write(body)
		}), ReadHeaderTimeout: 5 * time.Second}
		go bare.Serve(ln)
		defer bare.Close()
		base = "http://" + ln.Addr().String()
	} else {
		// The database alone, without HTTP: the ceiling of the lookups the server can answer.
		cpu0 := processCPU()
		n, elapsed, err := storageOnly(ctx, db, *target, meta.Products, script, 5*time.Second)
		if err != nil {
			return err
		}
		cpu := processCPU() - cpu0
		fmt.Fprintf(stdout, "storage only (%d goroutines calling storage.DB in a loop for 5 s, no HTTP): %.0f %s lookups/s; CPU %.1f s = %.1f µs per lookup\n",
			runtime.GOMAXPROCS(0), float64(n)/elapsed.Seconds(), *target, cpu.Seconds(), float64(cpu.Microseconds())/float64(n))
	}
	if err := prof.start(); err != nil {
		return err
	}
	cpu0 := processCPU()
	res, _, err := runWrk(ctx, wrkBin, wrkRun{threads: o.threads, connections: o.connections, duration: o.duration, script: script, url: base})
	cpu := processCPU() - cpu0
	if perr := prof.stop(stdout); err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "in-process server, %s: %.0f req/s, p50 %s, p99 %s; server CPU %.1f s = %.1f µs per request (GOMAXPROCS %d)\n",
		*target, res.reqPerSec, fmtMs(res.p50), fmtMs(res.p99), cpu.Seconds(), float64(cpu.Microseconds())/float64(res.requests), runtime.GOMAXPROCS(0))
	return nil
}

// storageOnly calls storage.DB.Get (or ProductByBarcode) with random keys from GOMAXPROCS
// goroutines for d and returns the number of lookups and the time they took. For barcodes the keys are read from the
// script's list file next to it.
func storageOnly(ctx context.Context, db *storage.DB, target string, products int, script string, d time.Duration) (int64, time.Duration, error) {
	var codes []string
	if target == "barcodes" {
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

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func writeLines(file string, lines []string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if _, err := io.WriteString(f, l+"\n"); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
