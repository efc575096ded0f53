//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// wrkResult is what the bench reads from wrk's report.
type wrkResult struct {
	reqPerSec     float64
	p50, p90, p99 time.Duration
	requests      int64
	non2xx        int64
	socketErrors  string // wrk's "Socket errors" line, "" when none
}

// parseWrk reads the report wrk prints with --latency.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRate, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "Requests/sec:" && len(f) >= 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk: Requests/sec %q: %w", f[1], err)
			}
			r.reqPerSec, haveRate = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "90%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, err
			}
			switch f[0] {
			case "50%":
				r.p50 = d
			case "90%":
				r.p90 = d
			case "99%":
				r.p99, haveP99 = d, true
			}
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk: request count %q: %w", f[0], err)
			}
			r.requests = n
		case strings.HasPrefix(sc.Text(), "  Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk: non-2xx count %q: %w", f[len(f)-1], err)
			}
			r.non2xx = n
		case f[0] == "Socket" && len(f) > 1 && f[1] == "errors:":
			r.socketErrors = strings.TrimSpace(sc.Text())
		}
	}
	if !haveRate || !haveP99 {
		return r, fmt.Errorf("wrk: no Requests/sec or 99%% latency in its output (was --latency given?):\n%s", out)
	}
	return r, nil
}

// parseWrkDuration reads wrk's latency values: 812.00us, 5.86ms, 1.02s, 1.50m.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				break
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("wrk: latency %q not understood", s)
}

// wrkRun is one wrk invocation.
type wrkRun struct {
	threads, connections int
	duration             time.Duration
	script               string
	url                  string
	timeout              time.Duration // wrk --timeout, 0: wrk's default (2 s)
}

// args gives wrk the bench device's credential too: the baseline servers ignore it, and the
// requests stay the same size for both.
func (w wrkRun) args() []string {
	args := []string{"-t" + strconv.Itoa(w.threads), "-c" + strconv.Itoa(w.connections), "-d" + durationArg(w.duration), "--latency"}
	if w.timeout > 0 {
		args = append(args, "--timeout", durationArg(w.timeout))
	}
	if v := authHeader("/api/v1/catalog/"); v != "" {
		args = append(args, "-H", "Authorization: "+v)
	}
	return append(args, "-s", w.script, w.url)
}

// durationArg writes a duration the way wrk reads it: whole seconds as "15s".
func durationArg(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// runWrk runs wrk and parses its report. A run with failed answers or socket errors is an error:
// a fast 404 is no measurement.
func runWrk(ctx context.Context, wrkBin string, run wrkRun) (wrkResult, string, error) {
	if !strings.HasPrefix(run.url, "http://127.0.0.1:") {
		return wrkResult{}, "", fmt.Errorf("wrk target %q: %w", run.url, errNotLoopback)
	}
	var mu sync.Mutex
	var out strings.Builder
	p, err := startProc("wrk", wrkBin, run.args(), nil, func(line string, _ time.Time) {
		mu.Lock()
		out.WriteString(line + "\n")
		mu.Unlock()
	})
	if err != nil {
		return wrkResult{}, "", err
	}
	defer p.kill()
	limit := run.duration + 30*time.Second
	select {
	case <-p.done:
	case <-ctx.Done():
		return wrkResult{}, "", ctx.Err()
	case <-time.After(limit):
		return wrkResult{}, "", fmt.Errorf("wrk did not finish within %v", limit)
	}
	mu.Lock()
	text := out.String()
	mu.Unlock()
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return wrkResult{}, text, fmt.Errorf("wrk exited %d:\n%s", code, text)
	}
	r, err := parseWrk(text)
	if err != nil {
		return r, text, err
	}
	if r.non2xx > 0 {
		return r, text, fmt.Errorf("wrk: %d answers were not 2xx/3xx against %s:\n%s", r.non2xx, run.url, text)
	}
	if r.socketErrors != "" {
		return r, text, fmt.Errorf("wrk: %s against %s:\n%s", r.socketErrors, run.url, text)
	}
	return r, text, nil
}

// findWrk returns the wrk executable.
func findWrk() (string, error) {
	p, err := exec.LookPath("wrk")
	if err != nil {
		return "", fmt.Errorf("wrk not found: run scripts/install-test-deps.sh (scripts/bench.sh does)")
	}
	return p, nil
}

// wrk Lua scripts. Each thread seeds its own generator from its number, so runs are repeatable
// and threads do not ask for the same sequence.
const luaSeed = `local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  math.randomseed(7919 * (tid or 1))
end
`

// writeIDScript writes a script asking for random product ids P0000001..P{n}.
func writeIDScript(dir string, n int) (string, error) {
	path := filepath.Join(dir, "products.lua")
	s := "-- GET /api/v1/catalog/products/{id}, id uniform in P0000001..P" + fmt.Sprintf("%07d", n) + "\n" + luaSeed +
		"function request()\n  return wrk.format(\"GET\", string.format(\"/api/v1/catalog/products/P%07d\", math.random(1, " + strconv.Itoa(n) + ")))\nend\n"
	return path, os.WriteFile(path, []byte(s), 0o644)
}

// writeBarcodeScript writes a script asking for random barcodes of the list in codesFile.
func writeBarcodeScript(dir, codesFile string) (string, error) {
	path := filepath.Join(dir, "barcodes.lua")
	s := "-- GET /api/v1/catalog/barcodes/{code}, code uniform in the list\n" + luaSeed +
		"local codes = {}\nfor line in io.lines(" + strconv.Quote(codesFile) + ") do codes[#codes + 1] = line end\n" +
		"function request()\n  return wrk.format(\"GET\", \"/api/v1/catalog/barcodes/\" .. codes[math.random(1, #codes)])\nend\n"
	return path, os.WriteFile(path, []byte(s), 0o644)
}
