package soak

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/internal/backoff"
)

// settleLimit bounds the wait, after the load, for the outbox, the streams and the push queues
// to catch up with the last orders.
const settleLimit = time.Minute

// soak is one run.
type soak struct {
	o        Options
	base     string
	cloudURL string
	daemon   *harness.Proc
	client   *http.Client
	t        *tally
	samples  []Sample
}

// status is the part of GET /api/v1/status the soak reads.
type status struct {
	Goroutines int `json:"goroutines"`
	Orders     struct {
		OutboxPending  int64 `json:"outbox_pending"`
		OutboxRejected int64 `json:"outbox_rejected"`
	} `json:"orders"`
	Devices struct {
		Paired        int `json:"paired"`
		Online        int `json:"online"`
		Queued        int `json:"queued"`
		StuckCommands int `json:"stuck_commands"`
	} `json:"devices"`
}

func (s *soak) status(ctx context.Context) (*status, error) {
	var st status
	if err := harness.GetJSON(ctx, s.client, s.base+"/api/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// run pairs the devices, runs the load for the duration while sampling the daemon, lets the
// last orders settle and checks everything.
func (s *soak) run(ctx context.Context) (*Result, error) {
	s.t = newTally(s.o.Followers)
	devs, err := s.pairDevices(ctx)
	if err != nil {
		return nil, err
	}
	total, warm := s.o.phases()
	fmt.Fprintf(s.o.Log, "soak: %d devices paired; load for %v (warm-up %v): %d orders/s, %d lookups/s, %d followers, catalog changes every %v\n",
		len(devs), total, warm, s.o.OrderRate, s.o.LookupRate, s.o.Followers, s.o.CatalogEvery)
	devCtx, stopDevices := context.WithCancel(ctx)
	var devWG sync.WaitGroup
	defer func() { stopDevices(); devWG.Wait() }()
	for _, d := range devs {
		devWG.Go(func() {
			if err := d.Run(devCtx); err != nil {
				s.t.done("device", err)
			}
		})
	}
	streamCtx, stopStreams := context.WithCancel(ctx)
	var streamWG sync.WaitGroup
	defer func() { stopStreams(); streamWG.Wait() }()
	ready := make(chan struct{}, s.o.Followers)
	for k := range s.o.Followers {
		streamWG.Go(func() { s.follow(streamCtx, k, devs[k], ready) })
	}
	for range s.o.Followers {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	started := time.Now()
	loadCtx, stopLoad := context.WithTimeout(ctx, total)
	defer stopLoad()
	var wg sync.WaitGroup
	wg.Go(func() { s.heartbeats(loadCtx, devs) })
	wg.Go(func() { s.paced(loadCtx, "lookup", s.o.LookupRate, s.lookup(loadCtx, devs)) })
	wg.Go(func() { s.paced(loadCtx, "order", s.o.OrderRate, s.order(devs)) })
	wg.Go(func() { s.catalog(loadCtx) })
	wg.Go(func() { s.sample(loadCtx, started) })
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fmt.Fprintf(s.o.Log, "soak: load done after %v; waiting for the last orders to settle\n", time.Since(started).Round(time.Second))
	r := s.settle(ctx, devs)
	r.Elapsed = time.Since(started)
	return r, ctx.Err()
}

// sample records the daemon's resources every SampleEvery until ctx ends.
func (s *soak) sample(ctx context.Context, started time.Time) {
	t := time.NewTicker(s.o.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sm, err := s.measure(ctx)
		if ctx.Err() != nil {
			return
		}
		s.t.done("sample", err)
		if err == nil {
			sm.At = time.Since(started)
			s.samples = append(s.samples, sm)
			fmt.Fprintf(s.o.Log, "soak: %4.0fs rss %s goroutines %d fds %d outbox %d queued %d\n",
				sm.At.Seconds(), harness.FmtMB(sm.RSSKB), sm.Goroutines, sm.FDs, sm.OutboxPending, sm.Queued)
		}
	}
}

// Sample is the daemon's resources at one moment of the load.
type Sample struct {
	At              time.Duration
	RSSKB           int64
	Goroutines, FDs int
	OutboxPending   int64
	Queued          int
}

func (s *soak) measure(ctx context.Context) (Sample, error) {
	pid := s.daemon.Pid()
	rss, err := harness.ProcStatus(pid, "VmRSS")
	if err != nil {
		return Sample{}, err
	}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return Sample{}, err
	}
	st, err := s.status(ctx)
	if err != nil {
		return Sample{}, err
	}
	return Sample{RSSKB: rss, Goroutines: st.Goroutines, FDs: len(fds), OutboxPending: st.Orders.OutboxPending, Queued: st.Devices.Queued}, nil
}

// settle waits until every order created reached the cloud and every stream, and the push
// queues are empty, or settleLimit passes; then it fills the result in.
func (s *soak) settle(ctx context.Context, devs []*devicesim.Device) *Result {
	r := &Result{Options: s.o, Samples: s.samples}
	s.t.mu.Lock()
	created := slices.Clone(s.t.created)
	s.t.mu.Unlock()
	deadline := time.Now().Add(settleLimit)
	for {
		r.MissingCloud, r.CloudErr = s.missingInCloud(ctx, created)
		r.MissingStream = s.missingOnStreams(created)
		st, err := s.status(ctx)
		r.Final, r.StatusErr = st, err
		done := r.CloudErr == nil && len(r.MissingCloud) == 0 && len(r.MissingStream) == 0 &&
			err == nil && st.Devices.Queued == 0 && st.Devices.StuckCommands == 0 && st.Orders.OutboxPending == 0
		if done || time.Now().After(deadline) || backoff.Sleep(ctx, 500*time.Millisecond) != nil {
			break
		}
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	r.Created = len(created)
	r.Counts, r.Errors, r.FirstErrors, r.Behind = s.t.counts, s.t.errors, s.t.firstErrs, s.t.behind
	r.Devices = len(devs)
	return r
}

// missingInCloud lists the orders created whose creation event cloudsim has not accepted.
func (s *soak) missingInCloud(ctx context.Context, created []string) ([]string, error) {
	var events []struct {
		Key string `json:"key"`
	}
	if err := harness.GetJSON(ctx, s.client, s.cloudURL+"/_sim/events", &events); err != nil {
		return nil, err
	}
	got := make(map[string]bool, len(events))
	for _, e := range events {
		if id, ok := strings.CutSuffix(strings.TrimPrefix(e.Key, "order:"), ":created"); ok {
			got[id] = true
		}
	}
	var missing []string
	for _, id := range created {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// missingOnStreams lists, per follower, the orders created it has not seen announced.
func (s *soak) missingOnStreams(created []string) []string {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	var missing []string
	for k, seen := range s.t.seen {
		for _, id := range created {
			if !seen[id] {
				missing = append(missing, fmt.Sprintf("follower %d: %s", k, id))
			}
		}
	}
	return missing
}
