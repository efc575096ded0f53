package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

// benchMediaFetch measures the prefetch of a cloudsim container in Azurite against rclone copy
// of the same container, the daemon's RSS growth during it, and the bandwidth cap.
func benchMediaFetch(ctx context.Context, o *mediaOptions, r *report, w io.Writer) error {
	dir := filepath.Join(o.workDir, "media-fetch")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	azAddr, err := startAzurite(ctx, dir)
	if err != nil {
		return err
	}
	blobURL := "http://" + azAddr + "/" + testenv.AzuriteAccount
	cloudURL, err := startMediaCloud(ctx, o, testenv.AzuriteConnectionString(blobURL))
	if err != nil {
		return err
	}
	catalog := filepath.Join(dir, "catalog")
	items, err := syncCatalogOnly(ctx, o, catalog, cloudURL)
	if err != nil {
		return err
	}
	rclone, rcloneFiles, rcloneBytes, err := runRclone(ctx, o, dir, blobURL)
	if err != nil {
		return err
	}
	fetch, err := runPrefetch(ctx, o, dir, catalog, cloudURL, items, nil)
	if err != nil {
		return err
	}
	t := &table{title: fmt.Sprintf("Prefetch of %d media items (%.2f GB) from Azurite", items, float64(rcloneBytes)/1e9),
		head: []string{"measure", "storeedge", "baseline, same run", "ratio", "target", "met?"}}
	speed := rclone.Seconds() / fetch.took.Seconds()
	t.add("prefetch time", fetch.took.Round(10*time.Millisecond).String(), rclone.Round(10*time.Millisecond).String()+" (rclone copy)",
		fmt.Sprintf("%.2f× the speed", speed), "≥ 1.00×", verdict(speed >= 1))
	t.add("RSS growth during the prefetch", fmt.Sprintf("%.1f MB (%.1f → %.1f)", float64(fetch.rssMax-fetch.rssStart)/1e3, float64(fetch.rssStart)/1e3, float64(fetch.rssMax)/1e3),
		"", "", "≤ 20 MB", verdict(fetch.rssMax-fetch.rssStart <= 20_000))
	capped, err := runPrefetch(ctx, o, dir, catalog, cloudURL, items, []string{"media.max_bandwidth=" + strconv.FormatInt(o.capRate, 10)})
	if err != nil {
		return err
	}
	acc := capped.rate / float64(o.capRate)
	t.add("bandwidth cap", fmt.Sprintf("%.2f MB/s over %s", capped.rate/1e6, o.capWindow), fmt.Sprintf("cap %.2f MB/s; uncapped %.2f MB/s", float64(o.capRate)/1e6, fetch.rate/1e6),
		fmt.Sprintf("%.3f× the cap", acc), "0.90–1.10×", verdict(acc >= 0.9 && acc <= 1.1))
	t.note("rclone copied %d files, %d bytes (--transfers %d, MD5 checked); storeedge media.parallel %d, lan.read_cache_mb 0, the catalog synced beforehand.", rcloneFiles, rcloneBytes, o.parallel, o.parallel)
	t.note("Prefetch time: from exec of storeedge (or rclone) until every file is verified in place (rclone: until it exits).")
	t.note("RSS: VmRSS sampled every 200 ms from the first status answer to the end of the prefetch. Cap: bytes received over %s, from 3 s after the first byte.", o.capWindow)
	r.add(w, t)
	return nil
}

// startAzurite runs Azurite's Blob service in memory on a free port.
func startAzurite(ctx context.Context, dir string) (string, error) {
	root, err := os.Getwd()
	if err != nil {
		return "", err
	}
	main, err := testenv.AzuriteMain(root)
	if err != nil {
		return "", err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("node not found: run scripts/install-test-deps.sh")
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	p, err := startProc("azurite", node, testenv.AzuriteArgs(main, port, "", ""), nil, nil)
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := testenv.WaitListening(wctx, addr); err != nil {
		return "", fmt.Errorf("azurite: %w; its output:\n%s", err, p.Tail())
	}
	return addr, nil
}

// startMediaCloud starts cloudsim filling the container, and returns its URL once it listens
// (after the upload).
func startMediaCloud(ctx context.Context, o *mediaOptions, conn string) (string, error) {
	addr := make(chan string, 1)
	p, err := startProc("cloudsim", o.cloudsimBin, []string{"-listen", "127.0.0.1:0", "-products", strconv.Itoa(o.products), "-store-key", benchKey},
		[]string{"CLOUDSIM_MEDIA_CONNECTION_STRING=" + conn},
		func(line string, _ time.Time) {
			if u, ok := strings.CutPrefix(line, "cloudsim listening on "); ok {
				select {
				case addr <- strings.TrimSpace(u):
				default:
				}
			}
		})
	if err != nil {
		return "", err
	}
	select {
	case u := <-addr:
		return u, nil
	case <-p.done:
		return "", p.exitErr()
	case <-time.After(10 * time.Minute):
		return "", errors.New("cloudsim did not fill the container within 10 minutes")
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// syncCatalogOnly syncs the catalog into dataDir with media off, and returns the number of media
// items.
func syncCatalogOnly(ctx context.Context, o *mediaOptions, dataDir, cloudURL string) (int, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return 0, err
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	d, err := startProc("storeedge", o.storeedgeBin, daemonConfig{dataDir: dataDir, cloudURL: cloudURL, frontDoor: port,
		extra: []string{"media.enabled=false", "lan.read_cache_mb=0", "cloud.page_size=10000", "cloud.poll_interval=1s"}}.args(), nil, nil)
	if err != nil {
		return 0, err
	}
	defer d.kill()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	c := newClient(10*time.Second, true)
	c.Transport = authTransport{c.Transport}
	for {
		st, err := getStatus(ctx, c, base)
		if err == nil && st.caughtUp() {
			for _, col := range st.Collections {
				if col.Name == "media" {
					return int(col.Rows), d.stop(30 * time.Second)
				}
			}
		}
		if d.exited() {
			return 0, d.exitErr()
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// runRclone copies the container with rclone and returns how long it took, the files and bytes.
func runRclone(ctx context.Context, o *mediaOptions, dir, blobURL string) (time.Duration, int, int64, error) {
	bin, err := exec.LookPath("rclone")
	if err != nil {
		return 0, 0, 0, errors.New("rclone not found: run scripts/install-test-deps.sh")
	}
	dst := filepath.Join(dir, "rclone")
	conf := filepath.Join(dir, "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		return 0, 0, 0, err
	}
	args := []string{"copy", "--azureblob-use-emulator", "--azureblob-endpoint", blobURL, ":azureblob:media", dst,
		"--transfers", strconv.Itoa(o.parallel), "--checkers", "8", "--retries", "1", "--low-level-retries", "1"}
	p, err := startProc("rclone", bin, args, []string{"RCLONE_CONFIG=" + conf}, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.kill()
		return 0, 0, 0, ctx.Err()
	}
	took := time.Since(p.started)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return 0, 0, 0, fmt.Errorf("rclone exited %d:\n%s", code, p.Tail())
	}
	var files int
	var bytes int64
	err = filepath.WalkDir(dst, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		fi, err := e.Info()
		if err == nil {
			files++
			bytes += fi.Size()
		}
		return err
	})
	return took, files, bytes, err
}

// fetchRun is what one daemon prefetch measured.
type fetchRun struct {
	took             time.Duration
	rssStart, rssMax int64   // kB
	rate             float64 // bytes per second over the cap window, or over the whole prefetch
}

// runPrefetch starts the daemon on a copy of the synced catalog and measures its prefetch. With
// extra settings (the cap), it measures the rate over the cap window and stops there.
func runPrefetch(ctx context.Context, o *mediaOptions, dir, catalog, cloudURL string, items int, extra []string) (fetchRun, error) {
	var res fetchRun
	data := filepath.Join(dir, fmt.Sprintf("fetch-%d", len(extra)))
	os.RemoveAll(data)
	if out, err := exec.Command("cp", "-a", catalog, data).CombinedOutput(); err != nil {
		return res, fmt.Errorf("copy the catalog: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	sets := append([]string{"media.parallel=" + strconv.Itoa(o.parallel), "lan.read_cache_mb=0", "cloud.poll_interval=1s"}, extra...)
	d, err := startProc("storeedge", o.storeedgeBin, daemonConfig{dataDir: data, cloudURL: cloudURL, frontDoor: port, extra: sets}.args(), nil, nil)
	if err != nil {
		return res, err
	}
	defer d.kill()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	c := newClient(10*time.Second, true)
	c.Transport = authTransport{c.Transport}
	var t0 time.Time
	var b0 int64
	for {
		st, err := getMediaStatus(ctx, c, base)
		now := time.Now()
		if err == nil {
			rss, _ := procStatus(d.cmd.Process.Pid, "VmRSS")
			if res.rssStart == 0 {
				res.rssStart = rss
			}
			res.rssMax = max(res.rssMax, rss)
			m := st.Media
			switch {
			case extra == nil && m.Files == int64(items) && m.Pending == 0:
				res.took = now.Sub(d.started)
				res.rate = float64(m.Bytes) / res.took.Seconds()
				return res, d.stop(30 * time.Second)
			case extra != nil && t0.IsZero() && m.ReceivedBytes > 0:
				t0 = now.Add(3 * time.Second)
			case extra != nil && !t0.IsZero() && b0 == 0 && now.After(t0):
				t0, b0 = now, m.ReceivedBytes
			case extra != nil && b0 > 0 && now.Sub(t0) >= o.capWindow:
				res.rate = float64(m.ReceivedBytes-b0) / now.Sub(t0).Seconds()
				return res, d.stop(30 * time.Second)
			}
		}
		if d.exited() {
			return res, d.exitErr()
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return res, err
		}
	}
}
