package regress

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/bench/soak"
	"github.com/storeedge/storeedge/bench/syncbench"
	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/internal/backoff"
)

// The sizes of the regression bench: a few seconds each on a loaded two-core machine.
const (
	syncProducts   = 20_000
	syncRounds     = 3
	lookupProducts = 2000
	lookupRounds   = 7
	lookupPer      = time.Second
	pushDevices    = 100
	pushRounds     = 9
)

// envRecord, set to 1, writes the ratios measured into reference.json instead of checking
// them: after a deliberate change of speed, on the reference machine.
const envRecord = "STOREEDGE_REGRESS_RECORD"

// TestRegressions measures the three ratios and fails on one more than MaxDrop below its
// reference. The binaries are built without -race, whatever the test runs with, so that the
// daemon's side measures the daemon.
func TestRegressions(t *testing.T) {
	bin := buildBinaries(t, "storeedge", "cloudsim", "bench", "../fixedserver")
	t.Cleanup(harness.KillAll)
	ctx := context.Background()
	var figs []Figure

	o := &harness.Options{StoreedgeBin: bin["storeedge"], CloudsimBin: bin["cloudsim"], SelfBin: bin["bench"], WorkDir: t.TempDir(),
		Products: syncProducts, Seed: 1, PageSizes: []int{5000}, SyncLimit: 2 * time.Minute}
	d, b, err := syncbench.Rates(ctx, o, syncRounds, os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	figs = append(figs, NewFigure("sync", "rows/s", d, b))

	base, devs := startShop(ctx, t, bin)
	if d, b, err = LookupRates(ctx, base, devs[0].Token(), bin["fixedserver"], lookupProducts, lookupRounds, lookupPer, os.Stdout); err != nil {
		t.Fatal(err)
	}
	figs = append(figs, NewFigure("lookup", "req/s", d, b))
	if d, b, err = PushRates(ctx, base, devs, pushRounds, os.Stdout); err != nil {
		t.Fatal(err)
	}
	figs = append(figs, NewFigure("push", "rounds/s", d, b))
	judge(t, figs)
}

// judge prints the figures and compares them with the reference, or records them.
func judge(t *testing.T, figs []Figure) {
	tab := &harness.Table{Title: "Regression bench: storeedge / baseline, medians", Head: []string{"benchmark", "daemon", "baseline", "ratio", "reference", "floor"}}
	ref, err := ReadReference(ReferenceFile)
	if err != nil && os.Getenv(envRecord) != "1" {
		t.Fatal(err)
	}
	for _, f := range figs {
		want := ref.ratios(raceBuild)[f.Name]
		tab.Add(f.Name, fmt.Sprintf("%.0f %s", f.Daemon, f.Unit), fmt.Sprintf("%.0f %s", f.Baseline, f.Unit),
			fmt.Sprintf("%.3f", f.Ratio), fmt.Sprintf("%.3f", want), fmt.Sprintf("%.3f", want*(1-MaxDrop)))
	}
	tab.Note("%d CPUs, %s", runtime.NumCPU(), harness.LoadAvg())
	tab.Print(os.Stdout)
	if os.Getenv(envRecord) == "1" {
		// The other build's references stay; its own are replaced.
		measured := time.Now().UTC().Format("2006-01-02") + ", " + strconv.Itoa(runtime.NumCPU()) + " CPUs, " + harness.LoadAvg()
		if raceBuild {
			ref.RaceMeasured = measured
		} else {
			ref.Measured = measured
		}
		ref.Command = envRecord + "=1 go test [-race] -count=1 -run TestRegressions -v ./bench/regress"
		ratios := ref.ratios(raceBuild)
		for _, f := range figs {
			ratios[f.Name] = f.Ratio
		}
		if err := WriteReference(ReferenceFile, ref); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, f := range figs {
		if msg := f.Check(ref); msg != "" {
			t.Error(msg)
		}
	}
}

// buildBinaries builds each command of cmd/ (or the package at a relative path) into a
// temporary directory, without -race.
func buildBinaries(t *testing.T, pkgs ...string) map[string]string {
	dir := t.TempDir()
	out := map[string]string{}
	for _, pkg := range pkgs {
		name, src := filepath.Base(pkg), "../../cmd/"+pkg
		if pkg[0] == '.' {
			src = pkg
		}
		out[name] = filepath.Join(dir, name)
		if b, err := exec.Command("go", "build", "-o", out[name], src).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", src, err, b)
		}
	}
	return out
}

// startShop starts cloudsim and the daemon, pairs pushDevices devices and waits until the
// daemon holds a push connection to every one.
func startShop(ctx context.Context, t *testing.T, bin map[string]string) (string, []*devicesim.Device) {
	cloud, cloudURL, err := harness.StartCloud(ctx, harness.Cloud{Bin: bin["cloudsim"], Products: lookupProducts, Ready: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Kill)
	daemon, base, err := soak.StartDaemon(ctx, bin["storeedge"], filepath.Join(t.TempDir(), "data"), cloudURL, os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Stop(10 * time.Second) })
	devCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	devs := make([]*devicesim.Device, pushDevices)
	for i := range devs {
		devs[i] = devicesim.New(devicesim.Options{Server: base, Name: "regress-" + strconv.Itoa(i), Heartbeat: -1})
		if err := devs[i].Pair(ctx, "", soak.EnrollmentSecret); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { devs[i].Run(devCtx) })
	}
	waitConnected(ctx, t, base, len(devs))
	return base, devs
}

// waitConnected polls the daemon's status until n devices show a push connection.
func waitConnected(ctx context.Context, t *testing.T, base string, n int) {
	c := harness.NewClient(10*time.Second, true)
	deadline := time.Now().Add(time.Minute)
	for {
		connected, err := pushConnected(ctx, c, base)
		if err == nil && connected >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d devices connected for push after a minute (%v)", connected, n, err)
		}
		if err := backoff.Sleep(ctx, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

func pushConnected(ctx context.Context, c *http.Client, base string) (int, error) {
	var st struct {
		Devices struct {
			Devices []struct {
				Push string `json:"push"`
			} `json:"devices"`
		} `json:"devices"`
	}
	if err := harness.GetJSON(ctx, c, base+"/api/v1/status", &st); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range st.Devices.Devices {
		if d.Push == "connected" {
			n++
		}
	}
	return n, nil
}
