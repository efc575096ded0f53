package doctor

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Clock skew limits: Azure accepts SAS and Service Bus tokens with a few minutes of skew at
// most, and a certificate check needs the right date.
const (
	skewWarn = time.Minute
	skewFail = 5 * time.Minute
)

// dateLog keeps the Date header of every answer from a WAN server, with this machine's time
// when it arrived.
type dateLog struct {
	now func() time.Time

	mu    sync.Mutex // protects the field below
	skews map[string]time.Duration
}

// dateRecorder is the HTTP transport of doctor's WAN checks: the WAN dialer's, noting dates.
type dateRecorder struct {
	base http.RoundTripper
	log  *dateLog
}

func (d *dateRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := d.log.now()
	resp, err := d.base.RoundTrip(req)
	if err == nil {
		d.log.note(req.URL.Host, resp.Header.Get("Date"), sent)
	}
	return resp, err
}

// note records the skew of host's clock: its Date (whole seconds) against the middle of the
// request on this machine. Positive: this machine is ahead.
func (l *dateLog) note(host, date string, sent time.Time) {
	t, err := http.ParseTime(date)
	if err != nil {
		return
	}
	now := l.now()
	mid := sent.Add(now.Sub(sent) / 2)
	skew := mid.Sub(t.Add(500 * time.Millisecond)) // Date is truncated to the second
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.skews == nil {
		l.skews = map[string]time.Duration{}
	}
	l.skews[host] = skew
}

// result is the clock check: the largest skew against any server that answered.
func (l *dateLog) result(wanOK bool) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	const check = "clock skew"
	if len(l.skews) == 0 {
		if !wanOK {
			return warn("clock", check, "not measured: no WAN server answered", "fix the WAN failures above; doctor then compares this machine's clock with the servers'")
		}
		return warn("clock", check, "not measured: the servers sent no Date header", "make sure this machine's clock is synchronised (NTP)")
	}
	var host string
	var worst time.Duration
	for h, s := range l.skews {
		if abs(s) >= abs(worst) {
			host, worst = h, s
		}
	}
	dir := "ahead of"
	if worst < 0 {
		dir = "behind"
	}
	detail := fmt.Sprintf("this machine's clock is %s %s %s's", abs(worst).Round(time.Second), dir, host)
	const fix = "synchronise the clock with NTP (Linux: timedatectl set-ntp true; Windows: w32tm /resync), or fix the time zone setting if the hour is off"
	switch {
	case abs(worst) >= skewFail:
		return fail("clock", check, detail+": signed Service Bus and Blob requests are refused with that much skew", fix)
	case abs(worst) >= skewWarn:
		return warn("clock", check, detail, fix)
	}
	return pass("clock", check, detail)
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
