package main

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// The media benchmarks, each next to a baseline measured in the same run (docs/PERFORMANCE.md):
//
//	media-serve  wrk, 64 connections, on a 1 MiB and a 20 MiB media file: storeedge's media
//	             service vs nginx (Debian's nginx-light, sendfile on) serving the same files from
//	             the same disk
//	media-fetch  the prefetch of a cloudsim container in Azurite (about 2 GB): storeedge vs
//	             rclone copy (Debian's rclone, Azure Blob backend) of the same container; the
//	             daemon's RSS growth during it; and the bandwidth cap's accuracy

// mediaOptions are the flags of the media benchmarks.
type mediaOptions struct {
	binDir, workDir      string
	connections, threads int
	duration, warmup     time.Duration
	rounds               int
	products             int
	capRate              int64
	capWindow            time.Duration
	parallel             int

	storeedgeBin, cloudsimBin string
}

func parseMediaOptions(cmd string, args []string, stderr io.Writer) (*mediaOptions, error) {
	o := &mediaOptions{}
	fs := flag.NewFlagSet("bench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.binDir, "bin", "bin", "`directory` holding the storeedge and cloudsim binaries")
	fs.StringVar(&o.workDir, "work", filepath.Join("bin", "bench-work"), "scratch `directory`")
	fs.IntVar(&o.threads, "threads", 2, "media-serve: wrk -t")
	fs.IntVar(&o.connections, "connections", 64, "media-serve: wrk -c")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "media-serve: wrk -d of each measured run")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "media-serve: unmeasured warm-up before each target")
	fs.IntVar(&o.rounds, "rounds", 3, "media-serve: measured rounds of each target, alternating; the median is reported")
	fs.IntVar(&o.products, "products", 42000, "media-fetch: cloudsim catalog size (42000 products: 10,500 media items, about 2.1 GB)")
	fs.Int64Var(&o.capRate, "cap", 4<<20, "media-fetch: media.max_bandwidth of the cap run, bytes per second")
	fs.DurationVar(&o.capWindow, "cap-window", 20*time.Second, "media-fetch: how long the cap run is measured")
	fs.IntVar(&o.parallel, "parallel", 4, "media-fetch: media.parallel of the daemon and rclone --transfers")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	switch {
	case o.connections < o.threads || o.threads < 1:
		return nil, usageError{errors.New("-threads must be ≥ 1 and -connections ≥ -threads")}
	case o.duration < time.Second, o.rounds < 1, o.products < 4, o.capRate < 16<<10, o.capWindow < 5*time.Second, o.parallel < 1:
		return nil, usageError{errors.New("-duration ≥ 1s, -rounds ≥ 1, -products ≥ 4, -cap ≥ 16384, -cap-window ≥ 5s, -parallel ≥ 1")}
	}
	var err error
	if o.binDir, err = filepath.Abs(o.binDir); err != nil {
		return nil, err
	}
	if o.workDir, err = filepath.Abs(o.workDir); err != nil {
		return nil, err
	}
	o.storeedgeBin, o.cloudsimBin = filepath.Join(o.binDir, "storeedge"), filepath.Join(o.binDir, "cloudsim")
	for _, b := range []string{o.storeedgeBin, o.cloudsimBin} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s is missing: build it first (scripts/bench.sh does)", b)
		}
	}
	return o, os.MkdirAll(o.workDir, 0o755)
}

func cmdMedia(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	o, err := parseMediaOptions(cmd, args, stderr)
	if err != nil {
		return err
	}
	r := &report{}
	switch cmd {
	case "media-serve":
		err = benchMediaServe(ctx, o, r, stdout)
	case "media-fetch":
		err = benchMediaFetch(ctx, o, r, stdout)
	default:
		err = benchMediaServe(ctx, o, r, stdout)
		if err == nil {
			err = benchMediaFetch(ctx, o, r, stdout)
		}
	}
	r.print(stdout)
	return err
}

// serveFile is one file of the serving benchmark.
type serveFile struct {
	id   string
	size int
	md5  string // hex
}

// seedMediaCache puts the files into a fresh data directory as the fetcher would have: verified
// files in the cache and their records, under media manifests in the catalog.
func seedMediaCache(ctx context.Context, dataDir string, files []serveFile) ([]serveFile, error) {
	db, err := storage.Open(ctx, filepath.Join(dataDir, "storeedge.db"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	cache, err := mediacache.Open(filepath.Join(dataDir, "media"))
	if err != nil {
		return nil, err
	}
	var changes []cloudapi.Change
	for i := range files {
		data := make([]byte, files[i].size)
		r := rand.New(rand.NewPCG(uint64(i), 1))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		sum := md5.Sum(data)
		files[i].md5 = hex.EncodeToString(sum[:])
		d, err := cache.Begin(files[i].md5, int64(len(data)))
		if err != nil {
			return nil, err
		}
		d.Write(data)
		if err := d.Commit(int64(len(data))); err != nil {
			return nil, err
		}
		m := cloudapi.MediaManifest{ID: files[i].id, Blob: files[i].id + ".mp4", Size: int64(len(data)), MD5: base64.StdEncoding.EncodeToString(sum[:]), ContentType: "video/mp4"}
		doc, _ := json.Marshal(m)
		changes = append(changes, cloudapi.Change{Collection: cloudapi.Media, ID: m.ID, Op: cloudapi.OpUpsert, Rev: int64(i + 1), Doc: doc})
	}
	if _, err := db.ApplyPage(ctx, storage.Page{Collection: cloudapi.Media, Changes: changes, End: cloudapi.PageEnd{Cursor: "bench", Count: len(changes)}}); err != nil {
		return nil, err
	}
	for _, f := range files {
		if _, err := db.StoreMedia(ctx, f.id, f.md5, "video/mp4", int64(f.size), time.Now()); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// nginxConf serves root on port with sendfile, as a shop would set nginx up for static files.
func nginxConf(dir, root string, port int) string {
	// The cache's files are readable by their owner only (0640 in 0750 folders): the workers run
	// as the bench's own user, as storeedge does.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	return fmt.Sprintf(`daemon off;
%[4]s
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  sendfile on;
  tcp_nopush on;
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
  types { video/mp4 mp4; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
    etag on;
  }
}
`, dir, port, root, user)
}

// benchMediaServe measures serving 1 MiB and 20 MiB media files to 64 connections.
func benchMediaServe(ctx context.Context, o *mediaOptions, r *report, w io.Writer) error {
	wrkBin, err := findWrk()
	if err != nil {
		return err
	}
	nginxBin, err := exec.LookPath("nginx")
	if err != nil {
		if nginxBin, err = exec.LookPath("/usr/sbin/nginx"); err != nil {
			return errors.New("nginx not found: run scripts/install-test-deps.sh (nginx-light)")
		}
	}
	dir := filepath.Join(o.workDir, "media-serve")
	os.RemoveAll(dir)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(dir, "nginx", "tmp"), 0o755); err != nil {
		return err
	}
	files, err := seedMediaCache(ctx, data, []serveFile{{id: "M1MIB", size: 1 << 20}, {id: "M20MIB", size: 20 << 20}})
	if err != nil {
		return fmt.Errorf("media-serve: seed the cache: %w", err)
	}
	if err := pairBenchDevice(ctx, data); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	d, err := startProc("storeedge", o.storeedgeBin, daemonConfig{dataDir: data, cloudURL: "http://127.0.0.1:9", frontDoor: port,
		extra: []string{"cloud.sync=false", "media.enabled=false", "lan.read_cache_mb=0", "log.level=warn"}}.args(), nil, nil)
	if err != nil {
		return err
	}
	defer d.kill()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if _, err := waitFirst200(ctx, d, base+"/healthz", 20*time.Millisecond, 20*time.Second); err != nil {
		return err
	}
	nport, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "nginx", "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(filepath.Join(dir, "nginx"), filepath.Join(data, "media"), nport)), 0o644); err != nil {
		return err
	}
	n, err := startProc("nginx", nginxBin, []string{"-c", conf, "-e", filepath.Join(dir, "nginx", "error.log")}, nil, nil)
	if err != nil {
		return err
	}
	defer n.kill()
	nbase := "http://127.0.0.1:" + strconv.Itoa(nport)
	if _, err := waitFirst200(ctx, n, nbase+"/"+files[0].md5[:2]+"/"+files[0].md5, 20*time.Millisecond, 20*time.Second); err != nil {
		return err
	}
	t := &table{title: fmt.Sprintf("Serving media files, wrk -t%d -c%d -d%s, median of %d rounds", o.threads, o.connections, durationArg(o.duration), o.rounds),
		head: []string{"file", "storeedge req/s", "storeedge MB/s", "nginx req/s", "nginx MB/s", "ratio", "target", "met?", "p99 storeedge / nginx"}}
	for _, f := range files {
		targets := []struct{ name, url string }{
			{"storeedge", base + "/api/v1/media/" + f.id},
			{"nginx", nbase + "/" + f.md5[:2] + "/" + f.md5},
		}
		results := map[string][]wrkResult{}
		for round := 0; round < o.rounds; round++ {
			for _, tg := range targets {
				script, err := writePathScript(dir, tg.name+f.id, tg.url)
				if err != nil {
					return err
				}
				// A 20 MiB answer to each of 64 connections takes seconds: more than wrk's 2 s.
				run := wrkRun{threads: o.threads, connections: o.connections, script: script, url: tg.url, timeout: 60 * time.Second}
				if round == 0 && o.warmup > 0 {
					run.duration = o.warmup
					if _, _, err := runWrk(ctx, wrkBin, run); err != nil {
						return err
					}
				}
				run.duration = o.duration
				res, _, err := runWrk(ctx, wrkBin, run)
				if err != nil {
					return err
				}
				results[tg.name] = append(results[tg.name], res)
			}
		}
		se, ng := medianOf(results["storeedge"]), medianOf(results["nginx"])
		mb := func(rps float64) string { return fmt.Sprintf("%.0f", rps*float64(f.size)/1e6) }
		ratio := se.reqPerSec / ng.reqPerSec
		t.add(fmt.Sprintf("%d MiB", f.size>>20), fmt.Sprintf("%.0f", se.reqPerSec), mb(se.reqPerSec), fmt.Sprintf("%.0f", ng.reqPerSec), mb(ng.reqPerSec),
			fmt.Sprintf("%.2f×", ratio), "≥ 0.90×", verdict(ratio >= 0.9), fmt.Sprintf("%s / %s", se.p99.Round(time.Microsecond*100), ng.p99.Round(time.Microsecond*100)))
	}
	t.note("Both serve the same files from %s: storeedge GET /api/v1/media/{id} with a device credential, nginx %s with sendfile on.", filepath.Join(data, "media"), nginxBin)
	t.note("storeedge: cloud.sync false, media.enabled false (serving only), lan.read_cache_mb 0; nginx: worker_processes auto, access_log off.")
	r.add(w, t)
	return nil
}

// writePathScript writes a wrk script asking for the path of url again and again.
func writePathScript(dir, name, url string) (string, error) {
	i := strings.Index(url[len("http://"):], "/") + len("http://")
	path := filepath.Join(dir, name+".lua")
	s := "-- GET " + url[i:] + "\nfunction request()\n  return wrk.format(\"GET\", " + strconv.Quote(url[i:]) + ")\nend\n"
	return path, os.WriteFile(path, []byte(s), 0o644)
}

// medianOf is the result with the median request rate.
func medianOf(rs []wrkResult) wrkResult {
	sorted := append([]wrkResult(nil), rs...)
	for i := range sorted {
		for j := i + 1; j < len(sorted); j++ {
			if sorted[j].reqPerSec < sorted[i].reqPerSec {
				sorted[i], sorted[j] = sorted[j], sorted[i]
			}
		}
	}
	return sorted[len(sorted)/2]
}

// mediaStatusDoc is the part of the status the media benchmarks read.
type mediaStatusDoc struct {
	Collections []struct {
		LastSuccess *string `json:"last_success"`
		Remaining   int64   `json:"remaining"`
	} `json:"collections"`
	WAN struct {
		State string `json:"state"`
	} `json:"wan"`
	Media struct {
		State         string `json:"state"`
		LastError     string `json:"last_error"`
		Files         int64  `json:"files"`
		Bytes         int64  `json:"bytes"`
		Pending       int    `json:"pending"`
		ReceivedBytes int64  `json:"received_bytes"`
	} `json:"media"`
}

func getMediaStatus(ctx context.Context, c *http.Client, base string) (*mediaStatusDoc, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/status", nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st mediaStatusDoc
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: %s", resp.Status)
	}
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}
