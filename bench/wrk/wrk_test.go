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
