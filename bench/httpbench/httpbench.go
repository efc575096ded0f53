// Package httpbench measures the LAN API's product and barcode lookups under wrk, next to a bare
// net/http server (bench/fixedserver) answering a body of the average product answer's size.
package httpbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/bench/syncbench"
	"github.com/storeedge/storeedge/bench/wrk"
)

// target is one thing wrk is pointed at, and what each round measured.
type target struct {
	name    string
	url     string
	script  string
	base    *target // of a daemon's target: the baseline run with its script, next to it
	results []wrk.Result
	// Of a daemon's target, each round's figures against the baseline's in the same pair of
	// runs: req/s and p99 ratios.
	rates, p99s []float64
}

// run is one http benchmark: the daemon, the baseline and what was measured.
type run struct {
	o        *harness.Options
	meta     syncbench.Meta
	wrkBin   string
	daemon   *harness.Proc
	frontURL string // the front door, for status
	catalog  string // the catalog port's URL, where wrk goes
	warmLine string // what the daemon logged about its read cache
	sample   Sample
	targets  []*target // the daemon's, each with its baseline
	bases    []*target // the baselines, in the order of targets
	codes    int       // barcodes in the catalog, all of them in the barcode scripts

	peakKB, rssKB int64
	statusTimes   []time.Duration // GET /api/v1/status on the idle daemon
	bareTimes     []time.Duration // the same client's GETs of the baseline, one at a time
}

// Run runs wrk against the daemon's product and barcode lookups (sync off) and against a bare
// net/http server answering a body of the average product answer's size.
func Run(ctx context.Context, o *harness.Options, r *harness.Report, w io.Writer) error {
	meta, err := syncbench.EnsureDB(ctx, o, r, w)
	if err != nil {
		return err
	}
	if err := harness.PairDevice(ctx, o.DataDir); err != nil {
		return err
	}
	wrkBin, err := wrk.Find()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n==== http: %s (%s products), wrk -t%d -c%d -d%s ====\n", o.DataDir, harness.FmtInt(int64(meta.Products)), o.Threads, o.Connections, wrk.DurationArg(o.Duration))
	h := &run{o: o, meta: meta, wrkBin: wrkBin}
	if err := h.startDaemon(ctx); err != nil {
		return err
	}
	defer h.daemon.Kill()
	fmt.Fprintf(w, "storeedge: %s\n", h.warmLine)
	sc, err := h.writeScripts(ctx, w)
	if err != nil {
		return err
	}
	bare, bareURL, err := startBare(ctx, o.FixedBin, h.sample.AvgSize)
	if err != nil {
		return err
	}
	defer bare.Kill()
	zipf := fmt.Sprintf("Zipf s=%g", wrk.ZipfS)
	for _, s := range []struct{ name, script string }{
		{"products/{id}, uniform", sc.ids}, {"products/{id}, " + zipf, sc.idsZipf},
		{"barcodes/{code}, uniform", sc.codes}, {"barcodes/{code}, " + zipf, sc.codesZipf},
	} {
		base := &target{name: fmt.Sprintf("baseline: fixedserver, %d-byte body, the script of %s", h.sample.AvgSize, s.name),
			url: bareURL, script: s.script}
		h.targets = append(h.targets, &target{name: "storeedge GET /api/v1/catalog/" + s.name, url: h.catalog, script: s.script, base: base})
		h.bases = append(h.bases, base)
	}
	if err := h.measure(ctx, w); err != nil {
		return err
	}
	if err := h.finish(ctx, bareURL); err != nil {
		return err
	}
	if err := bare.Stop(10 * time.Second); err != nil {
		return err
	}
	r.Add(w, h.table())
	return nil
}

// startDaemon starts storeedge on the kept database with sync off, and returns once it answers
// and its read cache is warm.
func (h *run) startDaemon(ctx context.Context) error {
	ports, err := harness.FreePorts(3)
	if err != nil {
		return err
	}
	closed, front, catalog := ports[0], ports[1], ports[2]
	cfg := harness.DaemonConfig{DataDir: h.o.DataDir, CloudURL: harness.LocalURL(closed), FrontDoor: front, Catalog: catalog,
		Extra: append([]string{"cloud.sync=false"}, h.o.Sets...)}
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
	if h.daemon, err = cfg.Start(h.o.StoreedgeBin, hook); err != nil {
		return err
	}
	h.frontURL, h.catalog = harness.LocalURL(front), harness.LocalURL(catalog)
	if _, err := harness.WaitFirst200(ctx, h.daemon, h.catalog+"/api/v1/catalog/products/P0000001", 10*time.Millisecond, 30*time.Second); err != nil {
		return err
	}
	h.warmLine = "read cache off"
	if !readCacheOn(h.o.Sets) {
		return nil
	}
	select {
	case h.warmLine = <-warmed:
		return nil
	case <-h.daemon.Done():
		return fmt.Errorf("storeedge exited while warming its read cache:\n%s", h.daemon.Tail())
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("storeedge: no \"read cache warmed\" in its log after 5 minutes")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scripts are the wrk scripts of the lookups: product ids and barcodes, uniform and by a Zipf law.
type scripts struct{ ids, idsZipf, codes, codesZipf string }

// writeScripts samples the catalog over the LAN API for the average answer's size, reads every
// barcode from the database, and writes the wrk scripts of the product and barcode lookups.
func (h *run) writeScripts(ctx context.Context, w io.Writer) (sc scripts, err error) {
	dir := filepath.Join(h.o.WorkDir, "http")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sc, err
	}
	if h.sample, err = SampleProducts(ctx, h.catalog, h.meta.Products, h.o.Sample); err != nil {
		return sc, err
	}
	codes, err := AllBarcodes(ctx, filepath.Join(h.o.DataDir, "storeedge.db"))
	if err != nil {
		return sc, err
	}
	if len(codes)%7919 == 0 {
		codes = codes[1:] // the Zipf script scatters its ranks by multiples of 7919
	}
	h.codes = len(codes)
	codesFile := filepath.Join(dir, "barcodes.txt")
	if err := wrk.WriteLines(codesFile, codes); err != nil {
		return sc, err
	}
	fmt.Fprintf(w, "sampled %d random products over the LAN API: average answer %d bytes; %d barcodes in the database -> %s\n",
		h.sample.N, h.sample.AvgSize, len(codes), codesFile)
	if sc.ids, err = wrk.WriteIDScript(dir, h.meta.Products); err != nil {
		return sc, err
	}
	if sc.idsZipf, err = wrk.WriteZipfScript(dir, h.meta.Products); err != nil {
		return sc, err
	}
	if sc.codes, err = wrk.WriteBarcodeScript(dir, codesFile); err != nil {
		return sc, err
	}
	sc.codesZipf, err = wrk.WriteBarcodeZipfScript(dir, codesFile)
	return sc, err
}

// startBare starts the baseline server answering size bytes, and returns it and its URL once it
// answers.
func startBare(ctx context.Context, bin string, size int) (*harness.Proc, string, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, "", err
	}
	bare, err := harness.Start("fixedserver", bin, []string{"-listen", "127.0.0.1:" + strconv.Itoa(port), "-size", strconv.Itoa(size)}, nil, nil)
	if err != nil {
		return nil, "", err
	}
	url := harness.LocalURL(port)
	if _, err := harness.WaitFirst200(ctx, bare, url+"/", 10*time.Millisecond, 30*time.Second); err != nil {
		bare.Kill()
		return nil, "", err
	}
	return bare, url, nil
}

// measure warms every target up, then runs the measured rounds. Each round runs every daemon
// target right next to its baseline, which comes first in one round and second in the next: on
// a shared machine the speed drifts over a minute by more than the margins read here, and a
// ratio of two runs seconds apart drifts least.
func (h *run) measure(ctx context.Context, w io.Writer) error {
	wrkRun := func(t *target, d time.Duration) (wrk.Result, error) {
		res, _, err := wrk.Run(ctx, h.wrkBin, wrk.Options{Threads: h.o.Threads, Connections: h.o.Connections, Duration: d, Script: t.script, URL: t.url})
		return res, err
	}
	if h.o.Warmup > 0 {
		for _, t := range append(slices.Clone(h.targets), h.bases...) {
			fmt.Fprintf(w, "warm-up (not measured): %s\n", t.name)
			if _, err := wrkRun(t, h.o.Warmup); err != nil {
				return err
			}
		}
	}
	for round := range h.o.Rounds {
		// Rotate the order so no target always runs right after the same one.
		for i := range h.targets {
			t := h.targets[(i+round)%len(h.targets)]
			pair := []*target{t.base, t}
			if round%2 == 1 {
				pair[0], pair[1] = t, t.base
			}
			for _, p := range pair {
				fmt.Fprintf(w, "round %d/%d: %s\n", round+1, h.o.Rounds, p.name)
				res, err := wrkRun(p, h.o.Duration)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "  %.0f req/s, p50 %s, p99 %s, %s requests\n", res.ReqPerSec, harness.FmtMs(res.P50), harness.FmtMs(res.P99), harness.FmtInt(res.Requests))
				p.results = append(p.results, res)
			}
			d, b := t.results[len(t.results)-1], t.base.results[len(t.base.results)-1]
			t.rates = append(t.rates, d.ReqPerSec/b.ReqPerSec)
			t.p99s = append(t.p99s, float64(d.P99)/float64(b.P99))
			fmt.Fprintf(w, "  this pair: req/s %s the baseline's, p99 %s\n", harness.FmtRatio(t.rates[len(t.rates)-1]), harness.FmtRatio(t.p99s[len(t.p99s)-1]))
		}
	}
	return nil
}

// statusCalls is how many GET /api/v1/status the idle daemon answers for the status figures.
const statusCalls = 300

// finish reads the daemon's memory, times its status on the idle server (and the baseline's
// answers, one at a time, with the same client), and stops it.
func (h *run) finish(ctx context.Context, bareURL string) error {
	h.peakKB, _ = harness.ProcStatus(h.daemon.Pid(), "VmHWM")
	h.rssKB, _ = harness.ProcStatus(h.daemon.Pid(), "VmRSS")
	var err error
	if h.statusTimes, err = timeStatus(ctx, h.frontURL, statusCalls); err != nil {
		return err
	}
	if h.bareTimes, err = timeGets(ctx, bareURL+"/", statusCalls); err != nil {
		return err
	}
	return h.daemon.Stop(30 * time.Second)
}

// table is the result: each target's median figures, the daemon's next to the baseline's. Each of
// the daemon's targets is read against the baseline run with the same script right next to it
// (wrk's own work differs between the scripts, and it shares the CPUs): its ratios are the
// medians of the ratios of its pairs of runs.
func (h *run) table() *harness.Table {
	o := h.o
	t := &harness.Table{
		Title: fmt.Sprintf("http: wrk -t%d -c%d -d%s --latency on the catalog port (%s-product database, sync off)", o.Threads, o.Connections, wrk.DurationArg(o.Duration), harness.FmtInt(int64(h.meta.Products))),
		Head:  []string{"target", "req/s", "p50", "p99", "req/s vs baseline", "p99 vs baseline", "targets (≥ 0.85×, ≤ 1.50×)"},
	}
	for _, tg := range h.targets {
		m := wrk.MedianEach(tg.results)
		rr, pr := harness.Median(slices.Clone(tg.rates)), harness.Median(slices.Clone(tg.p99s))
		t.Add(tg.name, harness.FmtRate(m.ReqPerSec), harness.FmtMs(m.P50), harness.FmtMs(m.P99), harness.FmtRatio(rr), harness.FmtRatio(pr),
			"req/s "+harness.Verdict(rr >= 0.85)+", p99 "+harness.Verdict(pr <= 1.5))
	}
	for _, tg := range h.bases {
		m := wrk.MedianEach(tg.results)
		t.Add(tg.name, harness.FmtRate(m.ReqPerSec), harness.FmtMs(m.P50), harness.FmtMs(m.P99), "1.00×", "1.00×", "")
	}
	for _, tg := range h.targets {
		t.Note("%s: the pairs' req/s ratios %s, p99 ratios %s", strings.TrimPrefix(tg.name, "storeedge GET /api/v1/catalog/"), fmtRatios(tg.rates), fmtRatios(tg.p99s))
	}
	t.Note("ids uniform over P0000001..P%07d, or by a Zipf law of exponent %g with the ranks scattered over the ids; barcodes the same over the %d barcodes of the database", h.meta.Products, wrk.ZipfS, h.codes)
	t.Note("the baseline ignores the path and answers %d bytes, the average product answer of %d random products read over the LAN API", h.sample.AvgSize, h.sample.N)
	if o.Rounds > 1 {
		t.Note("each figure is the median of %d rounds; in each round every target ran right next to its baseline, the baseline first in one round and second in the next; every run's figures are printed above the table", o.Rounds)
	}
	t.Note("storeedge peak RSS during the run: %s (%s at the end); wrk, the server and the bench share the machine's CPUs", harness.FmtMB(h.peakKB), harness.FmtMB(h.rssKB))
	t.Note("storeedge: %s", h.warmLine)
	sp99, bp99 := harness.Percentile(h.statusTimes, 99), harness.Percentile(h.bareTimes, 99)
	t.Note("GET /api/v1/status on the idle server, %d calls one at a time: p50 %s, p99 %s (target p99 ≤ 10 ms: %s); the baseline's answer, the same way: p50 %s, p99 %s",
		len(h.statusTimes), harness.FmtMs(harness.Percentile(h.statusTimes, 50)), harness.FmtMs(sp99), harness.Verdict(sp99 <= 10*time.Millisecond),
		harness.FmtMs(harness.Percentile(h.bareTimes, 50)), harness.FmtMs(bp99))
	t.Note("machine: %s at the end (another user's work shows here as noise)", harness.LoadAvg())
	return t
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

// fmtRatios writes ratios in the order they were measured.
func fmtRatios(vs []float64) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = harness.FmtRatio(v)
	}
	return strings.Join(out, ", ")
}
