//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startupPoll is how often the first answer is polled for: connect and GET on a new connection.
const startupPoll = time.Millisecond

// benchStartup measures exec → first 200 of GET /api/v1/catalog/products/P0000001 on the front
// door, with the large database and no cloud, next to the same measurement of fixedserver.
func benchStartup(ctx context.Context, o *options, r *report, w io.Writer) error {
	meta, err := ensureDB(ctx, o, r, w)
	if err != nil {
		return err
	}
	if err := pairBenchDevice(ctx, o.dataDir); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n==== startup: %s (%s products), cloud down, %d runs each ====\n", o.dataDir, fmtInt(int64(meta.Products)), o.repeat)
	closed, err := freePort() // free a moment ago, and nothing listens there
	if err != nil {
		return err
	}
	const path = "/api/v1/catalog/products/P0000001"
	var daemon, bare []time.Duration
	var selfReported []string
	for i := range o.repeat {
		front, err := freePort()
		if err != nil {
			return err
		}
		cfg := daemonConfig{dataDir: o.dataDir, cloudURL: "http://127.0.0.1:" + strconv.Itoa(closed), frontDoor: front, extra: o.sets}
		var mu sync.Mutex
		own := ""
		if err := o.dropCaches(); err != nil {
			return err
		}
		d, err := measureStartup(ctx, "storeedge", o.storeedgeBin, cfg.args(), front, path, func(line string) {
			if strings.Contains(line, `msg="storeedge: serving"`) {
				mu.Lock()
				own = logField(line, "startup")
				mu.Unlock()
			}
		})
		if err != nil {
			return err
		}
		mu.Lock()
		selfReported = append(selfReported, own)
		mu.Unlock()
		port, err := freePort()
		if err != nil {
			return err
		}
		if err := o.dropCaches(); err != nil {
			return err
		}
		b, err := measureStartup(ctx, "fixedserver", o.fixedBin, []string{"-listen", "127.0.0.1:" + strconv.Itoa(port), "-size", "400"}, port, path, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  run %d: storeedge %s (it logged startup=%s), fixedserver %s\n", i+1, fmtMs(d), own, fmtMs(b))
		daemon = append(daemon, d)
		bare = append(bare, b)
	}
	dlo, dmed, dhi := minMedMax(daemon)
	blo, bmed, bhi := minMedMax(bare)
	t := &table{
		title: fmt.Sprintf("startup: exec → first 200 of GET %s (%s-product database, cloud down), %d runs", path, fmtInt(int64(meta.Products)), o.repeat),
		head:  []string{"program", "min", "median", "max", "target", "verdict"},
	}
	t.add("storeedge run", fmtMs(dlo), fmtMs(dmed), fmtMs(dhi), "< 1 s", verdict(dhi < time.Second))
	t.add("baseline: fixedserver", fmtMs(blo), fmtMs(bmed), fmtMs(bhi), "", "")
	t.add("storeedge / baseline", "", fmtRatio(float64(dmed)/float64(bmed)), "", "", "")
	t.note("polled every %v with a new connection + GET; each program stopped with SIGTERM and checked to exit 0 between runs", startupPoll)
	cache := "was in the OS page cache (warm)"
	if o.cold {
		cache = "was dropped from the OS page cache before every run (-cold)"
	}
	t.note("storeedge ran with cloud.url on a closed port of 127.0.0.1 (sync on, cloud unreachable); the database file (%s) %s", dbSize(o.dataDir), cache)
	t.note("fixedserver: a trivial net/http server (bench/fixedserver) answering a fixed 400-byte body; its time is the cost of starting any Go server process")
	t.note("machine: %s at the end (another user's work shows here as noise)", loadAvg())
	r.add(w, t)
	return nil
}

// measureStartup starts a server and returns the time from exec to its first 200 answer of path
// on port, then stops it with SIGTERM and checks that it exited 0.
func measureStartup(ctx context.Context, name, bin string, args []string, port int, path string, hook func(string)) (time.Duration, error) {
	var h func(string, time.Time)
	if hook != nil {
		h = func(l string, _ time.Time) { hook(l) }
	}
	p, err := startProc(name, bin, args, nil, h)
	if err != nil {
		return 0, err
	}
	defer p.kill()
	at, err := waitFirst200(ctx, p, "http://127.0.0.1:"+strconv.Itoa(port)+path, startupPoll, 30*time.Second)
	if err != nil {
		return 0, err
	}
	d := at.Sub(p.started)
	if err := p.stop(30 * time.Second); err != nil {
		return 0, err
	}
	return d, nil
}

// ensureDB returns the meta of the kept database, running the sync benchmark first when there is
// none.
func ensureDB(ctx context.Context, o *options, r *report, w io.Writer) (dbMeta, error) {
	m, err := readMeta(o.dataDir)
	if err == nil {
		if _, err := os.Stat(filepath.Join(o.dataDir, "storeedge.db")); err != nil {
			return m, fmt.Errorf("%s has %s but no storeedge.db: delete the directory and run bench sync", o.dataDir, metaFile)
		}
		return m, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	if _, err := os.Stat(filepath.Join(o.dataDir, "storeedge.db")); err == nil {
		return m, fmt.Errorf("%s holds a storeedge.db that bench sync did not make (no %s): pass another -data-dir, or delete it", o.dataDir, metaFile)
	}
	fmt.Fprintf(w, "\nno database in %s yet: running the sync benchmark to build it\n", o.dataDir)
	if err := benchSync(ctx, o, r, w); err != nil {
		return m, err
	}
	return readMeta(o.dataDir)
}

// dropCaches empties the OS page cache when -cold is set, so a start reads the database from disk
// as after a reboot. It needs root and slows everything else on the machine for a moment.
func (o *options) dropCaches() error {
	if !o.cold {
		return nil
	}
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("-cold: drop the page cache: %w (it needs root)", err)
	}
	return nil
}

// dbSize describes the size of the database file.
func dbSize(dir string) string {
	fi, err := os.Stat(filepath.Join(dir, "storeedge.db"))
	if err != nil {
		return "size unknown"
	}
	return fmt.Sprintf("%.0f MB", float64(fi.Size())/1e6)
}
