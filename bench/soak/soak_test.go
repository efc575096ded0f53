package soak

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// The CI soak: a minute of the ten-minute soak's load at a size a loaded two-core machine
// holds under -race (the daemon itself is built without it), judged by the same checks, after
// a warm-up of 90 s: the daemon's SQLite page caches fill for about that long under this load
// (a three-minute run showed RSS climbing 69 -> 120 MB over 80 s, then flat at 121-123 MB).
func TestSoakMinute(t *testing.T) {
	bin := t.TempDir()
	for _, pkg := range []string{"storeedge", "cloudsim"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, pkg), "../../cmd/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	t.Cleanup(harness.KillAll)
	var log strings.Builder
	r, err := Run(context.Background(), Options{
		StoreedgeBin: filepath.Join(bin, "storeedge"), CloudsimBin: filepath.Join(bin, "cloudsim"),
		WorkDir: t.TempDir(), Duration: time.Minute, Warmup: 90 * time.Second, Devices: 100, OrderRate: 20, CatalogEvery: time.Second,
		SampleEvery: time.Second, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	r.Print(os.Stdout)
	if f := r.Failures(); len(f) > 0 {
		t.Errorf("soak failed:\n  %s\nprogress:\n%s", strings.Join(f, "\n  "), log.String())
	}
}

// A daemon that leaks is caught: flat samples pass, a steady climb after the warm-up fails,
// and a run too short to sample fails rather than passes.
func TestGrowthCheck(t *testing.T) {
	run := func(rss func(i int) int64) *Result {
		r := &Result{Options: Options{Duration: 100 * time.Second}}
		for i := range 100 {
			r.Samples = append(r.Samples, Sample{At: time.Duration(i) * time.Second, RSSKB: rss(i), Goroutines: 500, FDs: 600})
		}
		return r
	}
	flat := run(func(i int) int64 { return 100_000 + int64(i%3)*1000 }) // GC saw-tooth, ±2 %
	for _, g := range flat.Growths() {
		if !g.Passed {
			t.Errorf("flat run: %+v failed", g)
		}
	}
	leak := run(func(i int) int64 { return 100_000 + int64(i)*200 }) // +0.2 % a second
	if g := leak.Growths()[0]; g.Passed {
		t.Errorf("leaking run passed: %+v", g)
	}
	// Requests in flight add goroutines and files to most samples of a loaded run, the last
	// ones included: no growth. A goroutine and a file lost a second is one.
	busy := run(func(int) int64 { return 100_000 })
	for i := range busy.Samples {
		if i%4 != 0 {
			busy.Samples[i].Goroutines += 20 + i%3
			busy.Samples[i].FDs += 20
		}
	}
	for _, g := range busy.Growths() {
		if !g.Passed {
			t.Errorf("run with requests in flight: %+v failed", g)
		}
	}
	leaky := run(func(int) int64 { return 100_000 })
	for i := range leaky.Samples {
		leaky.Samples[i].Goroutines += i
		leaky.Samples[i].FDs += i
	}
	for _, g := range leaky.Growths()[1:] {
		if g.Passed {
			t.Errorf("a goroutine and a file lost a second passed: %+v", g)
		}
	}
	short := &Result{Options: Options{Duration: time.Minute}}
	for _, g := range short.Growths() {
		if !g.Unmeasured || g.Passed {
			t.Errorf("no samples: %+v", g)
		}
	}
}
