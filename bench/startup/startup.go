// Package startup measures the time from exec of storeedge to its first product answer, with the
// kept large database and the cloud down, next to the same measurement of a trivial Go HTTP
// server (bench/fixedserver): what starting any Go server process costs.
package startup

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/bench/syncbench"
)

// poll is how often the first answer is polled for: connect and GET on a new connection.
const poll = time.Millisecond

// path is the answer waited for.
const path = "/api/v1/catalog/products/P0000001"

// Run measures exec → first 200 of GET /api/v1/catalog/products/P0000001 on the front door, with
// the large database and no cloud, next to the same measurement of fixedserver.
func Run(ctx context.Context, o *harness.Options, r *harness.Report, w io.Writer) error {
	meta, err := syncbench.EnsureDB(ctx, o, r, w)
	if err != nil {
		return err
	}
	if err := harness.PairDevice(ctx, o.DataDir); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n==== startup: %s (%s products), cloud down, %d runs each ====\n", o.DataDir, harness.FmtInt(int64(meta.Products)), o.Repeat)
	closed, err := harness.FreePort() // free a moment ago, and nothing listens there
	if err != nil {
		return err
	}
	var daemon, bare []time.Duration
	for i := range o.Repeat {
		d, own, err := measureDaemon(ctx, o, closed)
		if err != nil {
			return err
		}
		b, err := measureBare(ctx, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  run %d: storeedge %s (it logged startup=%s), fixedserver %s\n", i+1, harness.FmtMs(d), own, harness.FmtMs(b))
		daemon = append(daemon, d)
		bare = append(bare, b)
	}
	r.Add(w, table(o, meta, daemon, bare))
	return nil
}

// measureDaemon measures one start of storeedge with the cloud at the closed port; own is the
// startup time the daemon logged itself.
func measureDaemon(ctx context.Context, o *harness.Options, closed int) (d time.Duration, own string, err error) {
	front, err := harness.FreePort()
	if err != nil {
		return 0, "", err
	}
	cfg := harness.DaemonConfig{DataDir: o.DataDir, CloudURL: harness.LocalURL(closed), FrontDoor: front, Extra: o.Sets}
	if err := dropCaches(o); err != nil {
		return 0, "", err
	}
	var mu sync.Mutex
	d, err = measure(ctx, "storeedge", o.StoreedgeBin, cfg.Args(), front, func(line string, _ time.Time) {
		if strings.Contains(line, `msg="storeedge: serving"`) {
			mu.Lock()
			own = harness.LogField(line, "startup")
			mu.Unlock()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	return d, own, err
}

// measureBare measures one start of fixedserver.
func measureBare(ctx context.Context, o *harness.Options) (time.Duration, error) {
	port, err := harness.FreePort()
	if err != nil {
		return 0, err
	}
	if err := dropCaches(o); err != nil {
		return 0, err
	}
	return measure(ctx, "fixedserver", o.FixedBin, []string{"-listen", "127.0.0.1:" + strconv.Itoa(port), "-size", "400"}, port, nil)
}

// measure starts a server and returns the time from exec to its first 200 answer of path on
// port, then stops it with SIGTERM and checks that it exited 0.
func measure(ctx context.Context, name, bin string, args []string, port int, hook func(string, time.Time)) (time.Duration, error) {
	p, err := harness.Start(name, bin, args, nil, hook)
	if err != nil {
		return 0, err
	}
	defer p.Kill()
	at, err := harness.WaitFirst200(ctx, p, harness.LocalURL(port)+path, poll, 30*time.Second)
	if err != nil {
		return 0, err
	}
	d := at.Sub(p.Started())
	if err := p.Stop(30 * time.Second); err != nil {
		return 0, err
	}
	return d, nil
}

// table compares the daemon's starts with fixedserver's.
func table(o *harness.Options, meta syncbench.Meta, daemon, bare []time.Duration) *harness.Table {
	dlo, dmed, dhi := harness.MinMedMax(daemon)
	blo, bmed, bhi := harness.MinMedMax(bare)
	t := &harness.Table{
		Title: fmt.Sprintf("startup: exec → first 200 of GET %s (%s-product database, cloud down), %d runs", path, harness.FmtInt(int64(meta.Products)), o.Repeat),
		Head:  []string{"program", "min", "median", "max", "target", "verdict"},
	}
	t.Add("storeedge run", harness.FmtMs(dlo), harness.FmtMs(dmed), harness.FmtMs(dhi), "< 1 s", harness.Verdict(dhi < time.Second))
	t.Add("baseline: fixedserver", harness.FmtMs(blo), harness.FmtMs(bmed), harness.FmtMs(bhi), "", "")
	t.Add("storeedge / baseline", "", harness.FmtRatio(float64(dmed)/float64(bmed)), "", "", "")
	t.Note("polled every %v with a new connection + GET; each program stopped with SIGTERM and checked to exit 0 between runs", poll)
	cache := "was in the OS page cache (warm)"
	if o.Cold {
		cache = "was dropped from the OS page cache before every run (-cold)"
	}
	t.Note("storeedge ran with cloud.url on a closed port of 127.0.0.1 (sync on, cloud unreachable); the database file (%s) %s", dbSize(o.DataDir), cache)
	t.Note("fixedserver: a trivial net/http server (bench/fixedserver) answering a fixed 400-byte body; its time is the cost of starting any Go server process")
	t.Note("machine: %s at the end (another user's work shows here as noise)", harness.LoadAvg())
	return t
}

// dropCaches empties the OS page cache when -cold is set, so a start reads the database from disk
// as after a reboot.
func dropCaches(o *harness.Options) error {
	if !o.Cold {
		return nil
	}
	return harness.DropPageCache()
}

// dbSize describes the size of the database file.
func dbSize(dir string) string {
	fi, err := os.Stat(filepath.Join(dir, "storeedge.db"))
	if err != nil {
		return "size unknown"
	}
	return fmt.Sprintf("%.0f MB", float64(fi.Size())/1e6)
}
