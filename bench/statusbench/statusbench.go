// Package statusbench measures GET /api/v1/status, the document a monitoring system polls: while
// the daemon runs a first sync of the catalog, then idle on the database that sync built, next
// to a bare net/http server answering a body of the same size.
package statusbench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// IdleSamples is how many requests are timed on the idle daemon and on the baseline.
const IdleSamples = 500

// WarmLimit is how long the idle measurement waits for the daemon to warm its read cache.
const WarmLimit = 5 * time.Minute

// result is the latencies of one target.
type result struct {
	name  string
	times []time.Duration
}

// p returns the q-quantile (0..1) of the latencies.
func (r result) p(q float64) time.Duration {
	if len(r.times) == 0 {
		return 0
	}
	s := slices.Clone(r.times)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// Run starts cloudsim with o.Products products and a daemon on a fresh data directory, times
// status requests one after the other while it syncs, then IdleSamples more once it caught up,
// then the same number against fixedserver.
func Run(ctx context.Context, o *harness.Options, r *harness.Report, w io.Writer) error {
	fmt.Fprintf(w, "\n==== status: %d products, page size %d ====\n", o.Products, o.PageSizes[0])
	cloud, cloudURL, err := harness.StartCloud(ctx, harness.Cloud{Bin: o.CloudsimBin, Products: o.Products, Seed: o.Seed, Ready: 2 * time.Minute})
	if err != nil {
		return err
	}
	defer cloud.Kill()
	dir := filepath.Join(o.WorkDir, "status-run")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	front, err := harness.FreePort()
	if err != nil {
		return err
	}
	cfg := harness.DaemonConfig{DataDir: dir, CloudURL: cloudURL, FrontDoor: front,
		Extra: append([]string{"cloud.page_size=" + strconv.Itoa(o.PageSizes[0]), "cloud.poll_interval=1h"}, o.Sets...)}
	// The daemon warms its read cache once every collection caught up, which takes the CPU for a
	// while; idle means after that. (It warms the empty cache at start too: that one does not
	// count.)
	warms := make(chan time.Time, 4)
	hook := func(line string, at time.Time) {
		if strings.Contains(line, "read cache warmed") {
			select {
			case warms <- at:
			default:
			}
		}
	}
	p, err := cfg.Start(o.StoreedgeBin, hook)
	if err != nil {
		return err
	}
	defer p.Kill()
	base := harness.LocalURL(front)
	if _, err := harness.WaitFirst200(ctx, p, base+"/api/v1/status", 10*time.Millisecond, 30*time.Second); err != nil {
		return err
	}
	syncing, err := timeUntilCaughtUp(ctx, p, base, o.SyncLimit)
	if err != nil {
		return err
	}
	if err := waitWarm(ctx, w, warms, time.Now()); err != nil {
		return err
	}
	idle, size, err := timeIdle(ctx, base)
	if err != nil {
		return err
	}
	if err := p.Stop(30 * time.Second); err != nil {
		return err
	}
	bare, err := timeBare(ctx, o.FixedBin, size)
	if err != nil {
		return err
	}
	r.Add(w, table(o, []result{syncing, idle, bare}, size))
	return nil
}

// waitWarm waits for a "read cache warmed" logged after caughtUp, or WarmLimit.
func waitWarm(ctx context.Context, w io.Writer, warms <-chan time.Time, caughtUp time.Time) error {
	limit := time.After(WarmLimit)
	for {
		select {
		case at := <-warms:
			if at.After(caughtUp) {
				return nil
			}
		case <-limit:
			fmt.Fprintf(w, "no \"read cache warmed\" in the log %v after the sync: measuring idle anyway\n", WarmLimit)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// timeUntilCaughtUp times status requests, one after the other, until one shows every collection
// caught up.
func timeUntilCaughtUp(ctx context.Context, p *harness.Proc, base string, limit time.Duration) (result, error) {
	res := result{name: "storeedge, during the first sync"}
	c := harness.NewClient(30*time.Second, true)
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return res, fmt.Errorf("storeedge exited during the sync:\n%s", p.Tail())
		}
		start := time.Now()
		st, err := harness.GetStatus(ctx, c, base)
		if err != nil {
			return res, err
		}
		res.times = append(res.times, time.Since(start))
		if st.CaughtUp() {
			return res, nil
		}
	}
	return res, fmt.Errorf("storeedge did not catch up within %v (-sync-timeout)", limit)
}

// timeIdle times IdleSamples status requests on the daemon that caught up, and returns the size
// of its answer.
func timeIdle(ctx context.Context, base string) (result, int, error) {
	res := result{name: "storeedge, idle (sync done, read cache warm)"}
	c := harness.NewClient(30*time.Second, true)
	size := 0
	for range IdleSamples {
		start := time.Now()
		n, err := get(ctx, c, base+"/api/v1/status")
		if err != nil {
			return res, 0, err
		}
		res.times = append(res.times, time.Since(start))
		size = n
	}
	return res, size, nil
}

// timeBare times IdleSamples requests to fixedserver answering size bytes.
func timeBare(ctx context.Context, bin string, size int) (result, error) {
	res := result{name: fmt.Sprintf("baseline: fixedserver, %d-byte body", size)}
	port, err := harness.FreePort()
	if err != nil {
		return res, err
	}
	bare, err := harness.Start("fixedserver", bin, []string{"-listen", "127.0.0.1:" + strconv.Itoa(port), "-size", strconv.Itoa(max(size, 16))}, nil, nil)
	if err != nil {
		return res, err
	}
	defer bare.Kill()
	url := harness.LocalURL(port) + "/"
	if _, err := harness.WaitFirst200(ctx, bare, url, 10*time.Millisecond, 30*time.Second); err != nil {
		return res, err
	}
	c := harness.NewClient(30*time.Second, true)
	for range IdleSamples {
		start := time.Now()
		if _, err := get(ctx, c, url); err != nil {
			return res, err
		}
		res.times = append(res.times, time.Since(start))
	}
	return res, bare.Stop(10 * time.Second)
}

// get reads url whole and returns the size of its body.
func get(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return len(body), nil
}

// table is the result: each target's p50 and p99 next to the baseline's.
func table(o *harness.Options, rs []result, size int) *harness.Table {
	t := &harness.Table{
		Title: fmt.Sprintf("status: GET /api/v1/status one request at a time (%s products, page size %d)", harness.FmtInt(int64(o.Products)), o.PageSizes[0]),
		Head:  []string{"target", "requests", "p50", "p99", "p99 vs baseline", "p99 ≤ 10 ms"},
	}
	bare := rs[len(rs)-1]
	for _, r := range rs {
		ratio := float64(r.p(0.99)) / float64(max(bare.p(0.99), 1))
		t.Add(r.name, strconv.Itoa(len(r.times)), harness.FmtMs(r.p(0.5)), harness.FmtMs(r.p(0.99)), harness.FmtRatio(ratio), harness.Verdict(r.p(0.99) <= 10*time.Millisecond))
	}
	t.Note("status answer: %d bytes; the bench, the daemon and cloudsim share the machine's CPUs", size)
	t.Note("machine: %s at the end (another user's work shows here as noise)", harness.LoadAvg())
	return t
}
