package mediabench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/bench/wrk"
)

// servers are the two programs serving the same files.
type servers struct {
	dir      string // the benchmark's scratch directory
	data     string // storeedge's data directory
	files    []serveFile
	nginxBin string
	daemon   *harness.Proc
	nginx    *harness.Proc
	base     string // storeedge's URL
	nbase    string // nginx's URL
}

// kill stops both servers.
func (s *servers) kill() {
	for _, p := range []*harness.Proc{s.daemon, s.nginx} {
		if p != nil {
			p.Kill()
		}
	}
}

// serve measures serving 1 MiB and 20 MiB media files to 64 connections.
func serve(ctx context.Context, o *options, r *harness.Report, w io.Writer) error {
	wrkBin, err := wrk.Find()
	if err != nil {
		return err
	}
	s := &servers{dir: filepath.Join(o.workDir, "media-serve")}
	defer s.kill()
	if err := s.start(ctx, o); err != nil {
		return err
	}
	t := &harness.Table{Title: fmt.Sprintf("Serving media files, wrk -t%d -c%d -d%s, median of %d rounds", o.threads, o.connections, wrk.DurationArg(o.duration), o.rounds),
		Head: []string{"file", "storeedge req/s", "storeedge MB/s", "nginx req/s", "nginx MB/s", "ratio", "target", "met?", "p99 storeedge / nginx"}}
	for _, f := range s.files {
		se, ng, err := s.measure(ctx, o, wrkBin, f)
		if err != nil {
			return err
		}
		mb := func(rps float64) string { return fmt.Sprintf("%.0f", rps*float64(f.size)/1e6) }
		ratio := se.ReqPerSec / ng.ReqPerSec
		t.Add(fmt.Sprintf("%d MiB", f.size>>20), fmt.Sprintf("%.0f", se.ReqPerSec), mb(se.ReqPerSec), fmt.Sprintf("%.0f", ng.ReqPerSec), mb(ng.ReqPerSec),
			fmt.Sprintf("%.2f×", ratio), "≥ 0.90×", harness.Verdict(ratio >= 0.9), fmt.Sprintf("%s / %s", se.P99.Round(time.Microsecond*100), ng.P99.Round(time.Microsecond*100)))
	}
	t.Note("Both serve the same files from %s: storeedge GET /api/v1/media/{id} with a device credential, nginx %s with sendfile on.", filepath.Join(s.data, "media"), s.nginxBin)
	t.Note("storeedge: cloud.sync false, media.enabled false (serving only), lan.read_cache_mb 0; nginx: worker_processes auto, access_log off.")
	r.Add(w, t)
	return nil
}

// start seeds a fresh data directory with the files and starts storeedge and nginx on it.
func (s *servers) start(ctx context.Context, o *options) error {
	var err error
	if s.nginxBin, err = findNginx(); err != nil {
		return err
	}
	os.RemoveAll(s.dir)
	s.data = filepath.Join(s.dir, "data")
	if err := os.MkdirAll(filepath.Join(s.dir, "nginx", "tmp"), 0o755); err != nil {
		return err
	}
	if s.files, err = seedMediaCache(ctx, s.data, []serveFile{{id: "M1MIB", size: 1 << 20}, {id: "M20MIB", size: 20 << 20}}); err != nil {
		return fmt.Errorf("media-serve: seed the cache: %w", err)
	}
	if err := harness.PairDevice(ctx, s.data); err != nil {
		return err
	}
	if err := s.startDaemon(ctx, o); err != nil {
		return err
	}
	return s.startNginx(ctx)
}

// startDaemon starts storeedge serving media only.
func (s *servers) startDaemon(ctx context.Context, o *options) error {
	port, err := harness.FreePort()
	if err != nil {
		return err
	}
	cfg := harness.DaemonConfig{DataDir: s.data, CloudURL: "http://127.0.0.1:9", FrontDoor: port,
		Extra: []string{"cloud.sync=false", "media.enabled=false", "lan.read_cache_mb=0", "log.level=warn"}}
	if s.daemon, err = cfg.Start(o.storeedgeBin, nil); err != nil {
		return err
	}
	s.base = harness.LocalURL(port)
	_, err = harness.WaitFirst200(ctx, s.daemon, s.base+"/healthz", 20*time.Millisecond, 20*time.Second)
	return err
}

// startNginx starts nginx serving the media cache's folder.
func (s *servers) startNginx(ctx context.Context) error {
	port, err := harness.FreePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(s.dir, "nginx", "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(filepath.Join(s.dir, "nginx"), filepath.Join(s.data, "media"), port)), 0o644); err != nil {
		return err
	}
	if s.nginx, err = harness.Start("nginx", s.nginxBin, []string{"-c", conf, "-e", filepath.Join(s.dir, "nginx", "error.log")}, nil, nil); err != nil {
		return err
	}
	s.nbase = harness.LocalURL(port)
	_, err = harness.WaitFirst200(ctx, s.nginx, s.nbase+s.files[0].cachePath(), 20*time.Millisecond, 20*time.Second)
	return err
}

// measure runs the rounds of one file against both servers and returns the median round of each.
func (s *servers) measure(ctx context.Context, o *options, wrkBin string, f serveFile) (se, ng wrk.Result, err error) {
	targets := []struct{ name, url string }{
		{"storeedge", s.base + "/api/v1/media/" + f.id},
		{"nginx", s.nbase + f.cachePath()},
	}
	results := map[string][]wrk.Result{}
	for round := 0; round < o.rounds; round++ {
		for _, tg := range targets {
			script, err := wrk.WritePathScript(s.dir, tg.name+f.id, tg.url)
			if err != nil {
				return se, ng, err
			}
			// A 20 MiB answer to each of 64 connections takes seconds: more than wrk's 2 s.
			run := wrk.Options{Threads: o.threads, Connections: o.connections, Script: script, URL: tg.url, Timeout: 60 * time.Second}
			if round == 0 && o.warmup > 0 {
				run.Duration = o.warmup
				if _, _, err := wrk.Run(ctx, wrkBin, run); err != nil {
					return se, ng, err
				}
			}
			run.Duration = o.duration
			res, _, err := wrk.Run(ctx, wrkBin, run)
			if err != nil {
				return se, ng, err
			}
			results[tg.name] = append(results[tg.name], res)
		}
	}
	return wrk.MedianRound(results["storeedge"]), wrk.MedianRound(results["nginx"]), nil
}

// findNginx returns the nginx executable, which Debian keeps in /usr/sbin.
func findNginx() (string, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nginx"); err != nil {
			return "", errors.New("nginx not found: run scripts/install-test-deps.sh (nginx-light)")
		}
	}
	return bin, nil
}
