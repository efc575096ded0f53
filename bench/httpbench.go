//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// httpTarget is one thing wrk is pointed at.
type httpTarget struct {
	name    string
	url     string
	script  string
	results []wrkResult
}

// median is the median of each figure over the rounds, taken separately.
func (t *httpTarget) median() wrkResult {
	rates := make([]float64, len(t.results))
	var p50, p99 []time.Duration
	var requests int64
	for i, r := range t.results {
		rates[i] = r.reqPerSec
		p50 = append(p50, r.p50)
		p99 = append(p99, r.p99)
		requests += r.requests
	}
	slices.Sort(rates)
	m := wrkResult{reqPerSec: rates[len(rates)/2], requests: requests}
	if n := len(rates); n%2 == 0 {
		m.reqPerSec = (rates[n/2-1] + rates[n/2]) / 2
	}
	_, m.p50, _ = minMedMax(p50)
	_, m.p99, _ = minMedMax(p99)
	return m
}

// benchHTTP runs wrk against the daemon's product and barcode lookups (sync off) and against a
// bare net/http server answering a body of the average product answer's size.
func benchHTTP(ctx context.Context, o *options, r *report, w io.Writer) error {
	meta, err := ensureDB(ctx, o, r, w)
	if err != nil {
		return err
	}
	if err := pairBenchDevice(ctx, o.dataDir); err != nil {
		return err
	}
	wrkBin, err := findWrk()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n==== http: %s (%s products), wrk -t%d -c%d -d%s ====\n", o.dataDir, fmtInt(int64(meta.Products)), o.threads, o.connections, durationArg(o.duration))
	closed, err := freePort()
	if err != nil {
		return err
	}
	front, err := freePort()
	if err != nil {
		return err
	}
	catalog, err := freePort()
	if err != nil {
		return err
	}
	cfg := daemonConfig{dataDir: o.dataDir, cloudURL: "http://127.0.0.1:" + strconv.Itoa(closed), frontDoor: front, catalog: catalog,
		extra: append([]string{"cloud.sync=false"}, o.sets...)}
	// The daemon warms its read cache in the background after it starts serving; the
	// measurement starts once its log says the cache is warm (or at once with the cache off).
	warmed := make(chan string, 1)
	hook := func(line string, _ time.Time) {
		if strings.Contains(line, "read cache warmed") {
			select {
			case warmed <- line:
			default:
			}
		}
	}
	daemon, err := startProc("storeedge", o.storeedgeBin, cfg.args(), nil, hook)
	if err != nil {
		return err
	}
	defer daemon.kill()
	catalogURL := "http://127.0.0.1:" + strconv.Itoa(catalog)
	if _, err := waitFirst200(ctx, daemon, catalogURL+"/api/v1/catalog/products/P0000001", 10*time.Millisecond, 30*time.Second); err != nil {
		return err
	}
	warmLine := "read cache off"
	if readCacheOn(o.sets) {
		select {
		case warmLine = <-warmed:
		case <-daemon.done:
			return fmt.Errorf("storeedge exited while warming its read cache:\n%s", daemon.Tail())
		case <-time.After(5 * time.Minute):
			return fmt.Errorf("storeedge: no \"read cache warmed\" in its log after 5 minutes")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fmt.Fprintf(w, "storeedge: %s\n", warmLine)

	dir := filepath.Join(o.workDir, "http")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	smp, err := sampleProducts(ctx, catalogURL, meta.Products, o.sample)
	if err != nil {
		return err
	}
	codesFile := filepath.Join(dir, "barcodes.txt")
	if err := os.WriteFile(codesFile, []byte(strings.Join(smp.barcodes, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "sampled %d random products over the LAN API: average answer %d bytes, %d barcodes -> %s\n",
		smp.n, smp.avgSize, len(smp.barcodes), codesFile)
	idScript, err := writeIDScript(dir, meta.Products)
	if err != nil {
		return err
	}
	codeScript, err := writeBarcodeScript(dir, codesFile)
	if err != nil {
		return err
	}

	barePort, err := freePort()
	if err != nil {
		return err
	}
	bare, err := startProc("fixedserver", o.fixedBin, []string{"-listen", "127.0.0.1:" + strconv.Itoa(barePort), "-size", strconv.Itoa(smp.avgSize)}, nil, nil)
	if err != nil {
		return err
	}
	defer bare.kill()
	bareURL := "http://127.0.0.1:" + strconv.Itoa(barePort)
	if _, err := waitFirst200(ctx, bare, bareURL+"/", 10*time.Millisecond, 30*time.Second); err != nil {
		return err
	}

	targets := []*httpTarget{
		{name: "storeedge GET /api/v1/catalog/products/{id}", url: catalogURL, script: idScript},
		{name: "storeedge GET /api/v1/catalog/barcodes/{code}", url: catalogURL, script: codeScript},
		{name: fmt.Sprintf("baseline: fixedserver, %d-byte body", smp.avgSize), url: bareURL, script: idScript},
	}
	run := func(t *httpTarget, d time.Duration) (wrkResult, error) {
		res, _, err := runWrk(ctx, wrkBin, wrkRun{threads: o.threads, connections: o.connections, duration: d, script: t.script, url: t.url})
		return res, err
	}
	if o.warmup > 0 {
		for _, t := range targets {
			fmt.Fprintf(w, "warm-up (not measured): %s\n", t.name)
			if _, err := run(t, o.warmup); err != nil {
				return err
			}
		}
	}
	for round := range o.rounds {
		// Rotate the order so no target always runs right after the same one.
		for i := range targets {
			t := targets[(i+round)%len(targets)]
			fmt.Fprintf(w, "round %d/%d: %s\n", round+1, o.rounds, t.name)
			res, err := run(t, o.duration)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "  %.0f req/s, p50 %s, p99 %s, %s requests\n", res.reqPerSec, fmtMs(res.p50), fmtMs(res.p99), fmtInt(res.requests))
			t.results = append(t.results, res)
		}
	}
	peak, _ := procStatus(daemon.cmd.Process.Pid, "VmHWM")
	rss, _ := procStatus(daemon.cmd.Process.Pid, "VmRSS")
	statusTimes, err := timeStatus(ctx, "http://127.0.0.1:"+strconv.Itoa(front), 3)
	if err != nil {
		return err
	}
	if err := daemon.stop(30 * time.Second); err != nil {
		return err
	}
	if err := bare.stop(10 * time.Second); err != nil {
		return err
	}

	baseline := targets[2].median()
	t := &table{
		title: fmt.Sprintf("http: wrk -t%d -c%d -d%s --latency on the catalog port (%s-product database, sync off)", o.threads, o.connections, durationArg(o.duration), fmtInt(int64(meta.Products))),
		head:  []string{"target", "req/s", "p50", "p99", "req/s vs baseline", "p99 vs baseline", "targets (≥ 0.70×, ≤ 2.00×)"},
	}
	for i, tg := range targets {
		m := tg.median()
		if i == 2 {
			t.add(tg.name, fmtRate(m.reqPerSec), fmtMs(m.p50), fmtMs(m.p99), "1.00×", "1.00×", "")
			continue
		}
		rr := m.reqPerSec / baseline.reqPerSec
		pr := float64(m.p99) / float64(baseline.p99)
		t.add(tg.name, fmtRate(m.reqPerSec), fmtMs(m.p50), fmtMs(m.p99), fmtRatio(rr), fmtRatio(pr),
			"req/s "+verdict(rr >= 0.7)+", p99 "+verdict(pr <= 2))
	}
	t.note("ids uniform over P0000001..P%07d; barcodes uniform over the %d barcodes of %d random products read over the LAN API", meta.Products, len(smp.barcodes), smp.n)
	t.note("the baseline is hit with the products script (it ignores the path) and answers %d bytes, the average product answer", smp.avgSize)
	if o.rounds > 1 {
		t.note("each figure is the median of %d rounds per target (targets alternating); every round's figures are printed above the table", o.rounds)
	}
	t.note("storeedge peak RSS during the run: %s (%s at the end); wrk, the server and the bench share the machine's CPUs", fmtMB(peak), fmtMB(rss))
	t.note("storeedge: %s", warmLine)
	_, med, _ := minMedMax(statusTimes)
	t.note("not a target: GET /api/v1/status took %s (median of %d, idle server): it counts the rows of every collection", fmtMs(med), len(statusTimes))
	t.note("machine: %s at the end (another user's work shows here as noise)", loadAvg())
	r.add(w, t)
	return nil
}

// timeStatus times n GET /api/v1/status on an otherwise idle server.
func timeStatus(ctx context.Context, base string, n int) ([]time.Duration, error) {
	c := newClient(30*time.Second, true)
	var out []time.Duration
	for range n {
		start := time.Now()
		if _, err := getStatus(ctx, c, base); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// sample is what a random sample of products read over the LAN API tells.
type sample struct {
	n        int
	avgSize  int
	barcodes []string
}

// sampleProducts reads n random products (fixed seed) from the catalog port with a few workers.
func sampleProducts(ctx context.Context, base string, products, n int) (sample, error) {
	n = min(n, products)
	rng := rand.New(rand.NewPCG(1, 2))
	ids := rng.Perm(products)[:n]
	c := newClient(10*time.Second, true)
	var (
		mu       sync.Mutex // protects the fields below
		total    int64
		barcodes []string
		firstErr error
	)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for idx := range next {
				size, codes, err := getProduct(ctx, c, fmt.Sprintf("%s/api/v1/catalog/products/P%07d", base, idx+1))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				total += int64(size)
				barcodes = append(barcodes, codes...)
				mu.Unlock()
			}
		})
	}
	for _, idx := range ids {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		next <- idx
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return sample{}, fmt.Errorf("sample products: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return sample{}, err
	}
	if len(barcodes) == 0 {
		return sample{}, fmt.Errorf("sample products: no barcodes in %d products", n)
	}
	slices.Sort(barcodes)
	return sample{n: n, avgSize: int((total + int64(n)/2) / int64(n)), barcodes: slices.Compact(barcodes)}, nil
}

func getProduct(ctx context.Context, c *http.Client, url string) (int, []string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var it struct {
		Doc struct {
			Barcodes []string `json:"barcodes"`
		} `json:"doc"`
	}
	if err := json.Unmarshal(body, &it); err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return len(body), it.Doc.Barcodes, nil
}

// readCacheOn reports whether the daemon runs with a read cache, i.e. whether -set leaves
// lan.read_cache_mb at its default or at a value other than 0.
func readCacheOn(sets []string) bool {
	on := true
	for _, kv := range sets {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(k) == "lan.read_cache_mb" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			on = err != nil || n != 0
		}
	}
	return on
}
