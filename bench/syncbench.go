//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// benchSync measures a first sync of o.products products: the plain baseline loader on the
// downloaded feed, then the daemon against cloudsim once per page size. The fastest daemon run's
// data directory is kept in o.dataDir for startup and http.
func benchSync(ctx context.Context, o *options, r *report, w io.Writer) error {
	fmt.Fprintf(w, "\n==== sync: %d products, seed %d, page sizes %v ====\n", o.products, o.seed, o.pageSizes)
	cloud, cloudURL, err := startCloud(o)
	if err != nil {
		return err
	}
	defer cloud.kill()

	feeds := filepath.Join(o.workDir, "feeds")
	if !o.keepFeeds {
		defer os.RemoveAll(feeds)
	}
	dl, err := downloadFeeds(ctx, cloudURL, feeds, o.syncLimit, w)
	if err != nil {
		return err
	}

	base, err := runBaseline(ctx, o, feeds, w)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "baseline: %s rows in %.2f s (load %.2f s + search index %.2f s) = %.0f rows/s, peak RSS %s, CPU %.1f s\n",
		fmtInt(base.Total), base.TotalSeconds, base.LoadSeconds, base.FTSSeconds, float64(base.Total)/base.TotalSeconds, fmtMB(base.PeakRSSKB), base.CPUSeconds)

	var runs []*daemonSync
	defer func() {
		for _, d := range runs {
			if d.dir != "" {
				os.RemoveAll(d.dir)
			}
		}
	}()
	for _, ps := range o.pageSizes {
		d, err := runDaemonSync(ctx, o, cloudURL, ps, w)
		if d != nil {
			runs = append(runs, d)
		}
		if err != nil {
			return err
		}
	}
	best := runs[0]
	for _, d := range runs[1:] {
		if d.rate() > best.rate() {
			best = d
		}
	}
	if err := writeMeta(best.dir, dbMeta{Products: o.products, Seed: o.seed, PageSize: best.pageSize, Created: time.Now().UTC()}); err != nil {
		return err
	}
	if err := replaceDir(best.dir, o.dataDir); err != nil {
		return err
	}
	best.dir = ""
	fmt.Fprintf(w, "kept the database of the page_size %d run in %s\n", best.pageSize, o.dataDir)

	baseRate := float64(base.Total) / base.TotalSeconds
	t := &table{
		title: fmt.Sprintf("sync: first sync of %s products (%s rows), daemon page_size %d vs plain loader", fmtInt(int64(o.products)), fmtInt(best.total), best.pageSize),
		head:  []string{"figure", "daemon", "baseline", "daemon/baseline", "target", "verdict"},
	}
	ratio := best.rate() / baseRate
	t.add("rows/s", fmtRate(best.rate()), fmtRate(baseRate), fmtRatio(ratio), "≥ 1.00× baseline", verdict(ratio >= 1))
	t.add("total time", fmtSecs(best.caughtUp), fmt.Sprintf("%.2f s", base.TotalSeconds), fmtRatio(best.caughtUp.Seconds()/base.TotalSeconds), "< 60 s", verdict(best.caughtUp < time.Minute))
	t.add("peak RSS (VmHWM)", fmtMB(best.peakKB), fmtMB(base.PeakRSSKB), fmtRatio(float64(best.peakKB)/float64(base.PeakRSSKB)), "< 200 MB", verdict(best.peakKB < 200*1024))
	t.add("CPU time (user+sys)", fmt.Sprintf("%.1f s", best.cpu), fmt.Sprintf("%.1f s", base.CPUSeconds), fmtRatio(best.cpu/base.CPUSeconds), "", "")
	logged := "-"
	if d, ok := best.collDone[cloudapi.Collections[len(cloudapi.Collections)-1]]; ok {
		logged = fmtSecs(d)
	}
	t.note("daemon time: exec of storeedge until the GET /api/v1/status that showed wan.state=ok and every collection with last_success and remaining=0 was sent (status polled every %v until the log said the last collection caught up, at %s, then every %v)",
		slowPoll, logged, fastPoll)
	t.note("daemon rows/s: rows of all collections in status / daemon time; its time includes cloudsim generating the feed on the same 2 cores (the same feed took %.1f s to download alone, %.0f MB)",
		dl.seconds, float64(dl.bytes)/1e6)
	for _, d := range runs {
		if d.failures > 0 {
			t.note("page_size %d run: the daemon logged %d failed sync pass(es) and resumed from its cursor; first error: %s", d.pageSize, d.failures, d.firstFailure)
		}
	}
	if len(o.sets) > 0 {
		t.note("daemon settings beyond the defaults: %s", strings.Join(o.sets, ", "))
	}
	t.note("baseline: %s on the downloaded NDJSON, one goroutine, encoding/json, plain prepared upserts, %d rows per transaction, products_fts filled at the end (%.2f s of the total); timed from creating the database",
		baselineCommand, baselineBatch, base.FTSSeconds)
	t.note("machine: %s at the end (another user's work shows here as noise)", loadAvg())
	r.add(w, t)

	pc := &table{title: "sync: rows per collection", head: []string{"collection", "daemon rows", "baseline rows", "daemon caught up at (s after exec, from its log)"}}
	for _, c := range cloudapi.Collections {
		at := "-"
		if d, ok := best.collDone[c]; ok {
			at = fmt.Sprintf("%.2f", d.Seconds())
		}
		pc.add(c, fmtInt(best.rows[c]), fmtInt(base.Rows[c]), at)
	}
	pc.add("total", fmtInt(best.total), fmtInt(base.Total), "")
	r.add(w, pc)

	if len(runs) > 1 {
		ps := &table{title: "sync: daemon by cloud.page_size", head: []string{"page_size", "time", "rows/s", "vs baseline", "peak RSS", "CPU time"}}
		for _, d := range runs {
			ps.add(strconv.Itoa(d.pageSize), fmtSecs(d.caughtUp), fmtRate(d.rate()), fmtRatio(d.rate()/baseRate), fmtMB(d.peakKB), fmt.Sprintf("%.1f s", d.cpu))
		}
		ps.note("baseline of the same run: %.0f rows/s in %.2f s, CPU %.1f s", baseRate, base.TotalSeconds, base.CPUSeconds)
		ps.note("CPU time is the figure least moved by other work on the machine; wall time and rows/s move with it")
		r.add(w, ps)
	}
	return nil
}

// startCloud starts cloudsim with the bench's catalog and returns its URL.
func startCloud(o *options) (*proc, string, error) {
	addr := make(chan string, 1)
	p, err := startProc("cloudsim", o.cloudsimBin, []string{"-listen", "127.0.0.1:0", "-products", strconv.Itoa(o.products),
		"-seed", strconv.FormatInt(o.seed, 10), "-store-key", benchKey}, nil,
		func(line string, _ time.Time) {
			if u, ok := strings.CutPrefix(line, "cloudsim listening on "); ok {
				select {
				case addr <- strings.TrimSpace(u):
				default:
				}
			}
		})
	if err != nil {
		return nil, "", err
	}
	select {
	case u := <-addr:
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			p.kill()
			return nil, "", fmt.Errorf("cloudsim listens on %q, not on 127.0.0.1", u)
		}
		return p, u, nil
	case <-p.done:
		return nil, "", p.exitErr()
	case <-time.After(2 * time.Minute):
		p.kill()
		return nil, "", fmt.Errorf("cloudsim did not say where it listens within 2 minutes; its output:\n%s", p.Tail())
	}
}

type download struct {
	bytes   int64
	seconds float64
}

// downloadFeeds saves each collection's whole feed (a snapshot, as one streamed response) to
// DIR/COLLECTION.ndjson for the baseline. Not part of any timed figure.
func downloadFeeds(ctx context.Context, cloudURL, dir string, limit time.Duration, w io.Writer) (download, error) {
	var dl download
	if err := os.RemoveAll(dir); err != nil {
		return dl, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return dl, err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c := newClient(0, true)
	start := time.Now()
	for _, coll := range cloudapi.Collections {
		u := cloudURL + "/v1/feed/" + coll + "?stream=true&limit=10000"
		fmt.Fprintf(w, "download (untimed): GET %s -> %s\n", u, filepath.Join(dir, coll+".ndjson"))
		n, err := downloadFeed(ctx, c, u, filepath.Join(dir, coll+".ndjson"))
		if err != nil {
			return dl, fmt.Errorf("download %s feed: %w", coll, err)
		}
		dl.bytes += n
	}
	dl.seconds = time.Since(start).Seconds()
	fmt.Fprintf(w, "downloaded %.0f MB of feed in %.1f s\n", float64(dl.bytes)/1e6, dl.seconds)
	return dl, nil
}

func downloadFeed(ctx context.Context, c *http.Client, u, file string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+benchKey)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("%s: %s", resp.Status, b)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/x-ndjson" {
		return 0, fmt.Errorf("content type %q, want application/x-ndjson", mt)
	}
	f, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	tw := &tailWriter{}
	n, err := io.Copy(io.MultiWriter(f, tw), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	// A stream ends with the end line of a page that has nothing more to send.
	last := tw.lastLine()
	var end struct {
		End *cloudapi.PageEnd `json:"end"`
	}
	if json.Unmarshal(last, &end) != nil || end.End == nil || end.End.More {
		return n, fmt.Errorf("the feed did not end with a final end line (got %.200q)", last)
	}
	return n, nil
}

// tailWriter keeps the last bytes written, to check how a stream ended.
type tailWriter struct{ b []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8192 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tailWriter) lastLine() []byte {
	b := strings.TrimRight(string(t.b), "\n")
	if i := strings.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return []byte(b)
}

// runBaseline runs the baseline loader as a child process on a fresh database and removes the
// database afterwards.
func runBaseline(ctx context.Context, o *options, feeds string, w io.Writer) (baselineResult, error) {
	var res baselineResult
	dir := filepath.Join(o.workDir, "baseline")
	if err := os.RemoveAll(dir); err != nil {
		return res, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	var mu sync.Mutex
	var line string
	p, err := startProc("baseline", o.selfBin, []string{baselineCommand, "-feeds", feeds, "-db", filepath.Join(dir, "baseline.db")}, nil,
		func(l string, _ time.Time) {
			if s, ok := strings.CutPrefix(l, resultPrefix); ok {
				mu.Lock()
				line = s
				mu.Unlock()
			}
		})
	if err != nil {
		return res, err
	}
	defer p.kill()
	select {
	case <-p.done:
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(o.syncLimit):
		return res, fmt.Errorf("baseline did not finish within %v", o.syncLimit)
	}
	if p.cmd.ProcessState.ExitCode() != 0 {
		return res, p.exitErr()
	}
	mu.Lock()
	defer mu.Unlock()
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, fmt.Errorf("baseline result %q: %w; its output:\n%s", line, err, p.Tail())
	}
	res.CPUSeconds = p.cpuSeconds()
	return res, nil
}

// Status polling during a daemon sync. Status counts every collection's rows, which costs about
// half a second of CPU on a million-product database, so it is polled rarely until the daemon's
// log says the last collection caught up, and then often.
const (
	slowPoll = 10 * time.Second
	fastPoll = 20 * time.Millisecond
)

// daemonSync is one daemon first sync.
type daemonSync struct {
	pageSize int
	dir      string
	caughtUp time.Duration // exec until the first status that showed it caught up was sent
	collDone map[string]time.Duration
	rows     map[string]int64
	total    int64
	peakKB   int64
	cpu      float64
	// failed passes the daemon logged ("feed: sync failed, will retry"; repeats of one message
	// are logged once a minute), and the first one's error
	failures     int
	firstFailure string
}

func (d *daemonSync) rate() float64 { return float64(d.total) / d.caughtUp.Seconds() }

// runDaemonSync starts storeedge on a fresh data directory against the cloud and waits until its
// status shows it caught up.
func runDaemonSync(ctx context.Context, o *options, cloudURL string, pageSize int, w io.Writer) (*daemonSync, error) {
	d := &daemonSync{pageSize: pageSize, dir: filepath.Join(o.workDir, "run-page-size-"+strconv.Itoa(pageSize)), collDone: map[string]time.Duration{}}
	if err := os.RemoveAll(d.dir); err != nil {
		return nil, err
	}
	front, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := daemonConfig{dataDir: d.dir, cloudURL: cloudURL, frontDoor: front,
		extra: append([]string{"cloud.page_size=" + strconv.Itoa(pageSize), "cloud.poll_interval=1h"}, o.sets...)}
	fmt.Fprintf(w, "\ndaemon sync, page_size %d:\n", pageSize)

	var mu sync.Mutex // protects lastSeen, doneAt, failures and firstFailure
	lastSeen := false
	failures, firstFailure := 0, ""
	hint := make(chan struct{}, 1)
	doneAt := map[string]time.Time{}
	lastColl := cloudapi.Collections[len(cloudapi.Collections)-1]
	p, err := startProc("storeedge", o.storeedgeBin, cfg.args(), nil, func(line string, at time.Time) {
		if strings.Contains(line, `msg="feed: sync failed, will retry"`) {
			mu.Lock()
			if failures++; firstFailure == "" {
				firstFailure = logField(line, "error")
			}
			mu.Unlock()
			return
		}
		if !strings.Contains(line, `msg="feed: pages applied"`) || !strings.Contains(line, "caught_up=true") {
			return
		}
		coll := logField(line, "collection")
		mu.Lock()
		if _, ok := doneAt[coll]; !ok {
			doneAt[coll] = at
		}
		if coll == lastColl {
			lastSeen = true
		}
		mu.Unlock()
		select {
		case hint <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return d, err
	}
	defer p.kill()

	c := newClient(30*time.Second, true)
	base := fmt.Sprintf("http://127.0.0.1:%d", front)
	deadline := p.started.Add(o.syncLimit)
	var st *status
	for {
		mu.Lock()
		fast := lastSeen
		mu.Unlock()
		wait := slowPoll
		if fast {
			wait = fastPoll
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return d, ctx.Err()
		case <-p.done:
			t.Stop()
			return d, p.exitErr()
		case <-hint:
			t.Stop()
		case <-t.C:
		}
		if time.Now().After(deadline) {
			last := "none"
			if st != nil {
				last = st.brief()
			}
			return d, fmt.Errorf("storeedge did not catch up within %v (-sync-timeout); last status: %s; its last output:\n%s", o.syncLimit, last, p.Tail())
		}
		send := time.Now()
		s, err := getStatus(ctx, c, base)
		if err != nil {
			if ctx.Err() != nil {
				return d, ctx.Err()
			}
			fmt.Fprintf(w, "  %6.1f s  status: %v\n", time.Since(p.started).Seconds(), err)
			continue
		}
		st = s
		if st.caughtUp() {
			d.caughtUp = send.Sub(p.started)
			break
		}
		if !fast {
			fmt.Fprintf(w, "  %6.1f s  %s\n", time.Since(p.started).Seconds(), st.brief())
		}
	}
	if d.peakKB, err = procStatus(p.cmd.Process.Pid, "VmHWM"); err != nil {
		return d, err
	}
	mu.Lock()
	for coll, at := range doneAt {
		d.collDone[coll] = at.Sub(p.started)
	}
	d.failures, d.firstFailure = failures, firstFailure
	mu.Unlock()
	d.rows = map[string]int64{}
	for _, c := range st.Collections {
		d.rows[c.Name] = c.Rows
		d.total += c.Rows
		if c.Quarantined > 0 {
			fmt.Fprintf(w, "  warning: %d %s lines quarantined\n", c.Quarantined, c.Name)
		}
	}
	if err := p.stop(30 * time.Second); err != nil {
		return d, err
	}
	d.cpu = p.cpuSeconds()
	if d.failures > 0 {
		fmt.Fprintf(w, "  warning: the daemon logged %d failed sync passes; first: %s\n", d.failures, d.firstFailure)
	}
	fmt.Fprintf(w, "  caught up after %.2f s: %s rows, %.0f rows/s, peak RSS %s, CPU %.1f s; %s\n",
		d.caughtUp.Seconds(), fmtInt(d.total), d.rate(), fmtMB(d.peakKB), d.cpu, st.brief())
	return d, nil
}

// logField reads key=value (or key="value") from a slog text line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if s, err := strconv.QuotedPrefix(v); err == nil {
			u, _ := strconv.Unquote(s)
			return u
		}
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}
