// Package wrk runs wrk, the HTTP load generator of the benchmarks, reads its report and writes
// the Lua scripts that choose its requests.
package wrk

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// Result is what the bench reads from wrk's report.
type Result struct {
	ReqPerSec     float64
	P50, P90, P99 time.Duration
	Requests      int64
	Non2xx        int64
	SocketErrors  string // wrk's "Socket errors" line, "" when none
}

// Parse reads the report wrk prints with --latency.
func Parse(out string) (Result, error) {
	var r Result
	var haveRate, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch {
		case f[0] == "Requests/sec:" && len(f) >= 2:
			r.ReqPerSec, err = strconv.ParseFloat(f[1], 64)
			err, haveRate = wrapErr(err, "Requests/sec", f[1]), true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "90%" || f[0] == "99%"):
			haveP99 = haveP99 || f[0] == "99%"
			err = r.setPercentile(f[0], f[1])
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.Requests, err = strconv.ParseInt(f[0], 10, 64)
			err = wrapErr(err, "request count", f[0])
		case strings.HasPrefix(sc.Text(), "  Non-2xx or 3xx responses:"):
			r.Non2xx, err = strconv.ParseInt(f[len(f)-1], 10, 64)
			err = wrapErr(err, "non-2xx count", f[len(f)-1])
		case f[0] == "Socket" && len(f) > 1 && f[1] == "errors:":
			r.SocketErrors = strings.TrimSpace(sc.Text())
		}
		if err != nil {
			return r, err
		}
	}
	if !haveRate || !haveP99 {
		return r, fmt.Errorf("wrk: no Requests/sec or 99%% latency in its output (was --latency given?):\n%s", out)
	}
	return r, nil
}

func wrapErr(err error, what, value string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("wrk: %s %q: %w", what, value, err)
}

// setPercentile sets the latency of the 50%, 90% or 99% line.
func (r *Result) setPercentile(pct, value string) error {
	d, err := parseDuration(value)
	if err != nil {
		return err
	}
	switch pct {
	case "50%":
		r.P50 = d
	case "90%":
		r.P90 = d
	case "99%":
		r.P99 = d
	}
	return nil
}

// parseDuration reads wrk's latency values: 812.00us, 5.86ms, 1.02s, 1.50m.
func parseDuration(s string) (time.Duration, error) {
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

// MedianEach is the median of each figure over the rounds, taken separately; Requests is the
// sum.
func MedianEach(rs []Result) Result {
	rates := make([]float64, len(rs))
	var p50, p99 []time.Duration
	var requests int64
	for i, r := range rs {
		rates[i] = r.ReqPerSec
		p50 = append(p50, r.P50)
		p99 = append(p99, r.P99)
		requests += r.Requests
	}
	m := Result{ReqPerSec: harness.Median(rates), Requests: requests}
	_, m.P50, _ = harness.MinMedMax(p50)
	_, m.P99, _ = harness.MinMedMax(p99)
	return m
}

// MedianRound is the round with the median request rate (of an even number, the upper one),
// whole.
func MedianRound(rs []Result) Result {
	sorted := slices.Clone(rs)
	slices.SortStableFunc(sorted, func(a, b Result) int { return cmpFloat(a.ReqPerSec, b.ReqPerSec) })
	return sorted[len(sorted)/2]
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Options is one wrk invocation.
type Options struct {
	Threads, Connections int
	Duration             time.Duration
	Script               string
	URL                  string
	Timeout              time.Duration // wrk --timeout, 0: wrk's default (2 s)
}

// args gives wrk the bench device's credential too: the baseline servers ignore it, and the
// requests stay the same size for both.
func (o Options) args() []string {
	args := []string{"-t" + strconv.Itoa(o.Threads), "-c" + strconv.Itoa(o.Connections), "-d" + DurationArg(o.Duration), "--latency"}
	if o.Timeout > 0 {
		args = append(args, "--timeout", DurationArg(o.Timeout))
	}
	if v := harness.AuthHeader("/api/v1/catalog/"); v != "" {
		args = append(args, "-H", "Authorization: "+v)
	}
	return append(args, "-s", o.Script, o.URL)
}

// DurationArg writes a duration the way wrk reads it: whole seconds as "15s".
func DurationArg(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// Run runs wrk and parses its report; it also returns the report's text. A run with failed
// answers or socket errors is an error: a fast 404 is no measurement.
func Run(ctx context.Context, bin string, o Options) (Result, string, error) {
	if !strings.HasPrefix(o.URL, "http://127.0.0.1:") {
		return Result{}, "", fmt.Errorf("wrk target %q: %w", o.URL, harness.ErrNotLoopback)
	}
	var mu sync.Mutex
	var out strings.Builder
	p, err := harness.Start("wrk", bin, o.args(), nil, func(line string, _ time.Time) {
		mu.Lock()
		out.WriteString(line + "\n")
		mu.Unlock()
	})
	if err != nil {
		return Result{}, "", err
	}
	defer p.Kill()
	if err := p.Wait(ctx, o.Duration+30*time.Second); err != nil {
		return Result{}, "", err
	}
	mu.Lock()
	text := out.String()
	mu.Unlock()
	if code := p.ExitCode(); code != 0 {
		return Result{}, text, fmt.Errorf("wrk exited %d:\n%s", code, text)
	}
	r, err := Parse(text)
	if err != nil {
		return r, text, err
	}
	if r.Non2xx > 0 {
		return r, text, fmt.Errorf("wrk: %d answers were not 2xx/3xx against %s:\n%s", r.Non2xx, o.URL, text)
	}
	if r.SocketErrors != "" {
		return r, text, fmt.Errorf("wrk: %s against %s:\n%s", r.SocketErrors, o.URL, text)
	}
	return r, text, nil
}

// Find returns the wrk executable.
func Find() (string, error) {
	p, err := exec.LookPath("wrk")
	if err != nil {
		return "", fmt.Errorf("wrk not found: run scripts/install-test-deps.sh (scripts/bench.sh does)")
	}
	return p, nil
}
