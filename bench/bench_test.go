//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A report of wrk 4.x with --latency, a failed-answer line and socket errors.
const wrkOutput = `Running 15s test @ http://127.0.0.1:18000
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.87ms    5.07ms  58.10ms   74.07%
    Req/Sec     4.99k   695.71     6.81k    69.00%
  Latency Distribution
     50%  812.00us
     75%    9.30ms
     90%   13.38ms
     99%    1.02s
  99456 requests in 10.03s, 59.75MB read
  Socket errors: connect 0, read 0, write 0, timeout 12
  Non-2xx or 3xx responses: 5
Requests/sec:   9917.67
Transfer/sec:      5.96MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.reqPerSec != 9917.67 || r.requests != 99456 || r.non2xx != 5 {
		t.Errorf("rate %v, requests %d, non2xx %d", r.reqPerSec, r.requests, r.non2xx)
	}
	if r.p50 != 812*time.Microsecond || r.p90 != 13380*time.Microsecond || r.p99 != 1020*time.Millisecond {
		t.Errorf("p50 %v p90 %v p99 %v", r.p50, r.p90, r.p99)
	}
	if r.socketErrors == "" {
		t.Error("socket errors not seen")
	}
}

func TestParseWrkWithoutLatencyFails(t *testing.T) {
	if _, err := parseWrk("Requests/sec:   9917.67\n"); err == nil {
		t.Fatal("a report without the latency distribution was accepted")
	}
}

func TestLogField(t *testing.T) {
	line := `time=2026-11-23T20:02:27.264Z level=INFO msg="feed: pages applied" collection=products pages=200 applied=1000000 quarantined=0 caught_up=true`
	for key, want := range map[string]string{"collection": "products", "caught_up": "true", "msg": "feed: pages applied", "missing": ""} {
		if got := logField(line, key); got != want {
			t.Errorf("%s: got %q, want %q", key, got, want)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"/bin/storeedge", "run", "--set", "shop.name=My shop", "it's"})
	want := `/bin/storeedge run --set 'shop.name=My shop' 'it'\''s'`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestReplaceDirRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "precious.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceDir(src, dst); err == nil {
		t.Fatal("replaced a directory that holds no storeedge database")
	}
	if _, err := os.Stat(filepath.Join(dst, "precious.txt")); err != nil {
		t.Fatal("the foreign directory was touched")
	}
	if err := writeMeta(dst, dbMeta{Products: 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := replaceDir(src, dst); err != nil {
		t.Fatalf("a directory of ours was not replaced: %v", err)
	}
}

func TestLoopbackOnly(t *testing.T) {
	c := newClient(time.Second, false)
	if _, err := c.Get("http://192.0.2.1:80/"); err == nil {
		t.Fatal("a request to a non-loopback address was sent")
	}
}
