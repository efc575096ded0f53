package mediabench

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

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/tools/testenv"
)

// fetch measures the prefetch of a cloudsim container in Azurite against rclone copy of the same
// container, the daemon's RSS growth during it, and the bandwidth cap.
func fetch(ctx context.Context, o *options, r *harness.Report, w io.Writer) error {
	dir := filepath.Join(o.workDir, "media-fetch")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir) // the copies of every run (see settle)
	az, azAddr, err := startAzurite(ctx)
	if err != nil {
		return err
	}
	// CPU time each program and Azurite used: on two shared cores, what one program spends is
	// time Azurite, serving it, does not get.
	azCPU := func() time.Duration { d, _ := harness.ProcCPU(az.Pid()); return d }
	blobURL := "http://" + azAddr + "/" + testenv.AzuriteAccount
	_, cloudURL, err := harness.StartCloud(ctx, harness.Cloud{Bin: o.cloudsimBin, Products: o.products,
		Env: []string{"CLOUDSIM_MEDIA_CONNECTION_STRING=" + testenv.AzuriteConnectionString(blobURL)}, Ready: 10 * time.Minute})
	if err != nil {
		return err
	}
	catalog := filepath.Join(dir, "catalog")
	items, err := syncCatalogOnly(ctx, o, catalog, cloudURL)
	if err != nil {
		return err
	}
	// The two programs take turns, -rounds times each: on a shared machine one run of each can
	// land in a busy and a quiet moment.
	var rclones, fetches []time.Duration
	var rcloneFiles int
	var rcloneBytes int64
	var fetch fetchRun
	var cpus []string
	for round := range o.rounds {
		az0 := azCPU()
		took, files, bytes, rcloneCPU, err := runRclone(ctx, o, filepath.Join(dir, fmt.Sprintf("rclone-%d", round)), blobURL)
		if err != nil {
			return err
		}
		az1 := azCPU()
		rclones, rcloneFiles, rcloneBytes = append(rclones, took), files, bytes
		f, err := runPrefetch(ctx, o, filepath.Join(dir, fmt.Sprintf("fetch-%d", round)), catalog, cloudURL, items, nil)
		if err != nil {
			return err
		}
		az2 := azCPU()
		fetches = append(fetches, f.took)
		cpu := fmt.Sprintf("rclone %.1f s and Azurite %.1f s; storeedge %.1f s and Azurite %.1f s",
			rcloneCPU.Seconds(), (az1 - az0).Seconds(), f.cpu.Seconds(), (az2 - az1).Seconds())
		cpus = append(cpus, cpu)
		fmt.Fprintf(w, "round %d/%d: rclone %s, storeedge %s (first byte after %s); CPU: %s\n", round+1, o.rounds,
			took.Round(10*time.Millisecond), f.took.Round(10*time.Millisecond), f.firstByte.Round(10*time.Millisecond), cpu)
		if round == 0 || f.rssMax-f.rssStart > fetch.rssMax-fetch.rssStart {
			fetch.rssStart, fetch.rssMax = f.rssStart, f.rssMax
		}
		fetch.rate = max(fetch.rate, f.rate)
	}
	_, rclone, _ := harness.MinMedMax(rclones)
	_, fetch.took, _ = harness.MinMedMax(fetches)
	t := &harness.Table{Title: fmt.Sprintf("Prefetch of %d media items (%.2f GB) from Azurite", items, float64(rcloneBytes)/1e9),
		Head: []string{"measure", "storeedge", "baseline, same run", "ratio", "target", "met?"}}
	speed := rclone.Seconds() / fetch.took.Seconds()
	t.Add("prefetch time", fetch.took.Round(10*time.Millisecond).String(), rclone.Round(10*time.Millisecond).String()+" (rclone copy)",
		fmt.Sprintf("%.2f× the speed", speed), "≥ 1.00×", harness.Verdict(speed >= 1))
	t.Add("RSS growth during the prefetch", fmt.Sprintf("%.1f MB (%.1f → %.1f)", float64(fetch.rssMax-fetch.rssStart)/1e3, float64(fetch.rssStart)/1e3, float64(fetch.rssMax)/1e3),
		"", "", "≤ 20 MB", harness.Verdict(fetch.rssMax-fetch.rssStart <= 20_000))
	capped, err := runPrefetch(ctx, o, filepath.Join(dir, "fetch-capped"), catalog, cloudURL, items, []string{"media.max_bandwidth=" + strconv.FormatInt(o.capRate, 10)})
	if err != nil {
		return err
	}
	acc := capped.rate / float64(o.capRate)
	t.Add("bandwidth cap", fmt.Sprintf("%.2f MB/s over %s", capped.rate/1e6, o.capWindow), fmt.Sprintf("cap %.2f MB/s; uncapped %.2f MB/s", float64(o.capRate)/1e6, fetch.rate/1e6),
		fmt.Sprintf("%.3f× the cap", acc), "0.90–1.10×", harness.Verdict(acc >= 0.9 && acc <= 1.1))
	t.Note("rclone copied %d files, %d bytes (--transfers %d, MD5 checked); storeedge media.parallel %d, lan.read_cache_mb 0, the catalog synced beforehand.", rcloneFiles, rcloneBytes, o.parallel, o.parallel)
	t.Note("Prefetch time: from exec of storeedge (or rclone) until every file is verified in place (rclone: until it exits; storeedge: status polled every 200 ms, every 20 ms once fewer than 100 files are left); the median of %d runs of each, taking turns: rclone %s, storeedge %s.", o.rounds, fmtDurations(rclones), fmtDurations(fetches))
	t.Note("CPU time (user+system) of each round, Azurite's while it served each program (its share of the two cores is what bounds both): %s.", strings.Join(cpus, "; "))
	t.Note("RSS: VmRSS sampled every 200 ms from the first status answer to the end of the prefetch (the largest growth of the runs). Cap: bytes received over %s, from 3 s after the first byte.", o.capWindow)
	r.Add(w, t)
	return nil
}

// startAzurite runs Azurite's Blob service in memory on a free port.
func startAzurite(ctx context.Context) (*harness.Proc, string, error) {
	root, err := os.Getwd()
	if err != nil {
		return nil, "", err
	}
	main, err := testenv.AzuriteMain(root)
	if err != nil {
		return nil, "", err
	}
	node, err := testenv.NodeBinary(root)
	if err != nil {
		return nil, "", err
	}
	port, err := harness.FreePort()
	if err != nil {
		return nil, "", err
	}
	p, err := harness.Start("azurite", node, testenv.AzuriteArgs(main, port, "", ""), nil, nil)
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := testenv.WaitListening(wctx, addr); err != nil {
		return nil, "", fmt.Errorf("azurite: %w; its output:\n%s", err, p.Tail())
	}
	return p, addr, nil
}

// syncCatalogOnly syncs the catalog into dataDir with media off, and returns the number of media
// items.
func syncCatalogOnly(ctx context.Context, o *options, dataDir, cloudURL string) (int, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return 0, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return 0, err
	}
	d, err := harness.DaemonConfig{DataDir: dataDir, CloudURL: cloudURL, FrontDoor: port,
		Extra: []string{"media.enabled=false", "lan.read_cache_mb=0", "cloud.page_size=10000", "cloud.poll_interval=1s"}}.Start(o.storeedgeBin, nil)
	if err != nil {
		return 0, err
	}
	defer d.Kill()
	base := harness.LocalURL(port)
	c := harness.NewClient(10*time.Second, true)
	for {
		st, err := harness.GetStatus(ctx, c, base)
		if err == nil && st.CaughtUp() {
			for _, col := range st.Collections {
				if col.Name == "media" {
					return int(col.Rows), d.Stop(30 * time.Second)
				}
			}
		}
		if d.Exited() {
			return 0, d.ExitErr()
		}
		if err := backoff.Sleep(ctx, 200*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// runRclone copies the container with rclone into dst, a new folder, and returns how long it
// took, the files and bytes, and the CPU time it used.
func runRclone(ctx context.Context, o *options, dst, blobURL string) (time.Duration, int, int64, time.Duration, error) {
	bin, err := exec.LookPath("rclone")
	if err != nil {
		return 0, 0, 0, 0, errors.New("rclone not found: run scripts/install-test-deps.sh")
	}
	conf := dst + ".conf"
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		return 0, 0, 0, 0, err
	}
	args := []string{"copy", "--azureblob-use-emulator", "--azureblob-endpoint", blobURL, ":azureblob:media", dst,
		"--transfers", strconv.Itoa(o.parallel), "--checkers", "8", "--retries", "1", "--low-level-retries", "1"}
	settle()
	p, err := harness.Start("rclone", bin, args, []string{"RCLONE_CONFIG=" + conf}, nil)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if err := p.Wait(ctx, 0); err != nil {
		p.Kill()
		return 0, 0, 0, 0, err
	}
	took := time.Since(p.Started())
	if code := p.ExitCode(); code != 0 {
		return 0, 0, 0, 0, fmt.Errorf("rclone exited %d:\n%s", code, p.Tail())
	}
	files, bytes, err := dirSize(dst)
	return took, files, bytes, time.Duration(p.CPUSeconds() * float64(time.Second)), err
}

// dirSize counts the files below dir and their bytes.
func dirSize(dir string) (files int, bytes int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
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
	return files, bytes, err
}

// fetchRun is what one daemon prefetch measured.
type fetchRun struct {
	took             time.Duration
	firstByte        time.Duration // exec until status first showed a byte received
	cpu              time.Duration // CPU time of the daemon until the prefetch was seen done
	rssStart, rssMax int64         // kB
	rate             float64       // bytes per second over the cap window, or over the whole prefetch
}

// settle writes every dirty page of the machine to disk before a measured run, so that neither
// program's run pays for the writeback of what ran before it: rclone does not sync its files,
// and the kernel writes them back half a minute later, during the run that follows. Each run
// also writes into a new folder, all removed at the end of the bench: on ext4 without a journal
// (as here) a new file skips the inodes deleted in the last minute, one by one, so that a run
// right after the removal of 10,000 files spent a sixth of its CPU looking for inodes.
func settle() { harness.SyncDisks() }

// runPrefetch starts the daemon on a copy of the synced catalog in data, a new folder, and
// measures its prefetch. With
// extra settings (the cap), it measures the rate over the cap window and stops there.
func runPrefetch(ctx context.Context, o *options, data, catalog, cloudURL string, items int, extra []string) (fetchRun, error) {
	var res fetchRun
	if out, err := exec.Command("cp", "-a", catalog, data).CombinedOutput(); err != nil {
		return res, fmt.Errorf("copy the catalog: %v: %s", err, out)
	}
	settle()
	port, err := harness.FreePort()
	if err != nil {
		return res, err
	}
	sets := append([]string{"media.parallel=" + strconv.Itoa(o.parallel), "lan.read_cache_mb=0", "cloud.poll_interval=1s"}, extra...)
	d, err := harness.DaemonConfig{DataDir: data, CloudURL: cloudURL, FrontDoor: port, Extra: sets}.Start(o.storeedgeBin, nil)
	if err != nil {
		return res, err
	}
	defer d.Kill()
	base := harness.LocalURL(port)
	c := harness.NewClient(10*time.Second, true)
	var t0 time.Time
	var b0 int64
	for {
		st, err := harness.GetStatus(ctx, c, base)
		now := time.Now()
		if err == nil {
			rss, _ := harness.ProcStatus(d.Pid(), "VmRSS")
			if res.rssStart == 0 {
				res.rssStart = rss
			}
			res.rssMax = max(res.rssMax, rss)
			m := st.Media
			if res.firstByte == 0 && m.ReceivedBytes > 0 {
				res.firstByte = now.Sub(d.Started())
			}
			switch {
			case extra == nil && m.Files == int64(items) && m.Pending == 0:
				res.took = now.Sub(d.Started())
				res.rate = float64(m.Bytes) / res.took.Seconds()
				res.cpu, _ = harness.ProcCPU(d.Pid())
				return res, d.Stop(30 * time.Second)
			case extra != nil && t0.IsZero() && m.ReceivedBytes > 0:
				t0 = now.Add(3 * time.Second)
			case extra != nil && !t0.IsZero() && b0 == 0 && now.After(t0):
				t0, b0 = now, m.ReceivedBytes
			case extra != nil && b0 > 0 && now.Sub(t0) >= o.capWindow:
				res.rate = float64(m.ReceivedBytes-b0) / now.Sub(t0).Seconds()
				return res, d.Stop(30 * time.Second)
			}
		}
		if d.Exited() {
			return res, d.ExitErr()
		}
		// Every 200 ms, and every 20 ms near the end, so that the time is read to within a few
		// of the last files rather than a fifth of a second, without polling all along.
		poll := 200 * time.Millisecond
		if err == nil && extra == nil && st.Media.Pending < 100 {
			poll = 20 * time.Millisecond
		}
		if err := backoff.Sleep(ctx, poll); err != nil {
			return res, err
		}
	}
}

func fmtDurations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(10 * time.Millisecond).String()
	}
	return strings.Join(s, ", ")
}
