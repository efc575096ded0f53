package syncbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Status polling during a daemon sync: a call every slowPoll until the daemon's log says the last
// collection caught up, then every fastPoll, so that the time caught up is read closely. The
// status is a target of its own during a first sync (p99 ≤ 10 ms); a call costs about a
// millisecond, and a first sync of 20 s gives about 200 calls, enough for a p99 that is not
// simply the slowest call or the next one.
const (
	slowPoll   = 100 * time.Millisecond
	printEvery = 10 * time.Second // a line of progress
	fastPoll   = 20 * time.Millisecond
)

// daemonSync is one daemon first sync.
type daemonSync struct {
	pageSize int
	dir      string
	caughtUp time.Duration // exec until the first status that showed it caught up was sent
	collDone map[string]time.Duration
	rows     map[string]int64
	total    int64
	peakKB   int64
	cpu      float64
	// statusTimes are the times of the GET /api/v1/status made while the sync ran.
	statusTimes []time.Duration
	// failed passes the daemon logged ("feed: sync failed, will retry"; repeats of one message
	// are logged once a minute), and the first one's error
	failures     int
	firstFailure string
}

func (d *daemonSync) rate() float64 { return float64(d.total) / d.caughtUp.Seconds() }

// runDaemonSync starts storeedge on a fresh data directory against the cloud and waits until its
// status shows it caught up. run numbers the runs of one command: each has its own directory,
// so that runs of the same page size do not replace each other's database.
func runDaemonSync(ctx context.Context, o *harness.Options, cloudURL string, pageSize, run int, w io.Writer) (*daemonSync, error) {
	d := &daemonSync{pageSize: pageSize, dir: filepath.Join(o.WorkDir, fmt.Sprintf("run-%d-page-size-%d", run, pageSize)), collDone: map[string]time.Duration{}}
	if err := os.RemoveAll(d.dir); err != nil {
		return nil, err
	}
	front, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := harness.DaemonConfig{DataDir: d.dir, CloudURL: cloudURL, FrontDoor: front,
		Extra: append([]string{"cloud.page_size=" + strconv.Itoa(pageSize), "cloud.poll_interval=1h"}, o.Sets...)}
	fmt.Fprintf(w, "\ndaemon sync, page_size %d:\n", pageSize)
	log := &syncLog{hint: make(chan struct{}, 1), doneAt: map[string]time.Time{}}
	p, err := cfg.Start(o.StoreedgeBin, log.read)
	if err != nil {
		return d, err
	}
	defer p.Kill()
	st, err := waitCaughtUp(ctx, p, harness.LocalURL(front), o.SyncLimit, log, w, &d.statusTimes)
	if err != nil {
		return d, err
	}
	d.caughtUp = st.sent.Sub(p.Started())
	return d, d.finish(p, st.Status, log, w)
}

// syncLog follows the daemon's log: when each collection caught up, and the failed passes.
type syncLog struct {
	hint chan struct{} // a collection caught up

	mu           sync.Mutex // protects the fields below
	lastSeen     bool       // the last collection caught up
	doneAt       map[string]time.Time
	failures     int
	firstFailure string
}

var lastCollection = cloudapi.Collections[len(cloudapi.Collections)-1]

// read is the daemon's output hook.
func (l *syncLog) read(line string, at time.Time) {
	if strings.Contains(line, `msg="feed: sync failed, will retry"`) {
		l.mu.Lock()
		if l.failures++; l.firstFailure == "" {
			l.firstFailure = harness.LogField(line, "error")
		}
		l.mu.Unlock()
		return
	}
	if !strings.Contains(line, `msg="feed: pages applied"`) || !strings.Contains(line, "caught_up=true") {
		return
	}
	coll := harness.LogField(line, "collection")
	l.mu.Lock()
	if _, ok := l.doneAt[coll]; !ok {
		l.doneAt[coll] = at
	}
	if coll == lastCollection {
		l.lastSeen = true
	}
	l.mu.Unlock()
	select {
	case l.hint <- struct{}{}:
	default:
	}
}

// lastCaughtUp tells that the log said the last collection caught up.
func (l *syncLog) lastCaughtUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeen
}

// sentStatus is a status and when its request was sent.
type sentStatus struct {
	*harness.Status
	sent time.Time
}

// waitCaughtUp polls the daemon's status, slowly until the log says the last collection caught
// up and then fast, until the status shows every collection caught up.
func waitCaughtUp(ctx context.Context, p *harness.Proc, base string, limit time.Duration, log *syncLog, w io.Writer, times *[]time.Duration) (sentStatus, error) {
	c := harness.NewClient(30*time.Second, true)
	deadline := p.Started().Add(limit)
	var st *harness.Status
	var printed time.Time
	for {
		fast := log.lastCaughtUp()
		wait := slowPoll
		if fast {
			wait = fastPoll
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return sentStatus{}, ctx.Err()
		case <-p.Done():
			t.Stop()
			return sentStatus{}, p.ExitErr()
		case <-log.hint:
			t.Stop()
		case <-t.C:
		}
		if time.Now().After(deadline) {
			last := "none"
			if st != nil {
				last = st.Brief()
			}
			return sentStatus{}, fmt.Errorf("storeedge did not catch up within %v (-sync-timeout); last status: %s; its last output:\n%s", limit, last, p.Tail())
		}
		send := time.Now()
		s, err := harness.GetStatus(ctx, c, base)
		if err == nil {
			*times = append(*times, time.Since(send))
		}
		if err != nil {
			if ctx.Err() != nil {
				return sentStatus{}, ctx.Err()
			}
			fmt.Fprintf(w, "  %6.1f s  status: %v\n", time.Since(p.Started()).Seconds(), err)
			continue
		}
		st = s
		if st.CaughtUp() {
			return sentStatus{st, send}, nil
		}
		if !fast && time.Since(printed) >= printEvery {
			printed = time.Now()
			fmt.Fprintf(w, "  %6.1f s  %s\n", time.Since(p.Started()).Seconds(), st.Brief())
		}
	}
}

// finish takes the figures of a daemon that caught up: its peak memory, the rows, what its log
// said; then stops it and takes its CPU time.
func (d *daemonSync) finish(p *harness.Proc, st *harness.Status, log *syncLog, w io.Writer) error {
	var err error
	if d.peakKB, err = harness.ProcStatus(p.Pid(), "VmHWM"); err != nil {
		return err
	}
	log.mu.Lock()
	for coll, at := range log.doneAt {
		d.collDone[coll] = at.Sub(p.Started())
	}
	d.failures, d.firstFailure = log.failures, log.firstFailure
	log.mu.Unlock()
	d.rows = map[string]int64{}
	for _, c := range st.Collections {
		d.rows[c.Name] = c.Rows
		d.total += c.Rows
		if c.Quarantined > 0 {
			fmt.Fprintf(w, "  warning: %d %s lines quarantined\n", c.Quarantined, c.Name)
		}
	}
	if err := p.Stop(30 * time.Second); err != nil {
		return err
	}
	d.cpu = p.CPUSeconds()
	if d.failures > 0 {
		fmt.Fprintf(w, "  warning: the daemon logged %d failed sync passes; first: %s\n", d.failures, d.firstFailure)
	}
	fmt.Fprintf(w, "  caught up after %.2f s: %s rows, %.0f rows/s, peak RSS %s, CPU %.1f s; %s\n",
		d.caughtUp.Seconds(), harness.FmtInt(d.total), d.rate(), harness.FmtMB(d.peakKB), d.cpu, st.Brief())
	return nil
}
