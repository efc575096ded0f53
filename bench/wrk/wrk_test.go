package wrk

import (
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

func TestParse(t *testing.T) {
	r, err := Parse(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.ReqPerSec != 9917.67 || r.Requests != 99456 || r.Non2xx != 5 {
		t.Errorf("rate %v, requests %d, non2xx %d", r.ReqPerSec, r.Requests, r.Non2xx)
	}
	if r.P50 != 812*time.Microsecond || r.P90 != 13380*time.Microsecond || r.P99 != 1020*time.Millisecond {
		t.Errorf("p50 %v p90 %v p99 %v", r.P50, r.P90, r.P99)
	}
	if r.SocketErrors == "" {
		t.Error("socket errors not seen")
	}
}

func TestParseWithoutLatencyFails(t *testing.T) {
	if _, err := Parse("Requests/sec:   9917.67\n"); err == nil {
		t.Fatal("a report without the latency distribution was accepted")
	}
}

func TestMedians(t *testing.T) {
	ms := time.Millisecond
	rounds := []Result{
		{ReqPerSec: 300, P50: 1 * ms, P99: 9 * ms, Requests: 10},
		{ReqPerSec: 100, P50: 3 * ms, P99: 5 * ms, Requests: 20},
		{ReqPerSec: 200, P50: 2 * ms, P99: 7 * ms, Requests: 30},
	}
	// The media benchmark reports the round with the median rate, whole.
	if got := MedianRound(rounds); got != rounds[2] {
		t.Errorf("MedianRound: got %+v, want the 200 req/s round", got)
	}
	// The http benchmark takes the median of each figure on its own, and sums the requests.
	even := append(rounds, Result{ReqPerSec: 400, P50: 4 * ms, P99: 1 * ms, Requests: 40})
	want := Result{ReqPerSec: 250, P50: 2500 * time.Microsecond, P99: 6 * ms, Requests: 100}
	if got := MedianEach(even); got != want {
		t.Errorf("MedianEach: got %+v, want %+v", got, want)
	}
	if rounds[0].ReqPerSec != 300 {
		t.Error("MedianRound reordered its argument")
	}
}
