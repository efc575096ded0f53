package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/internal/backoff"
)

// loadWorkers is how many requests of one kind (lookups, orders) may be in flight at once.
const loadWorkers = 8

// tally counts what happened during a soak; it is safe for concurrent use.
type tally struct {
	mu        sync.Mutex
	counts    map[string]int64
	errors    map[string]int64
	firstErrs []string
	created   []string          // order ids, in order of creation
	seen      []map[string]bool // per follower: order ids announced on its stream
	behind    map[string]int64  // by kind, ticks the load generator could not send in time
}

func newTally(followers int) *tally {
	t := &tally{counts: map[string]int64{}, errors: map[string]int64{}, behind: map[string]int64{}, seen: make([]map[string]bool, followers)}
	for i := range t.seen {
		t.seen[i] = map[string]bool{}
	}
	return t
}

// done counts one request of a kind, or its error.
func (t *tally) done(kind string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.counts[kind]++
		return
	}
	t.errors[kind]++
	if len(t.firstErrs) < 10 {
		t.firstErrs = append(t.firstErrs, kind+": "+err.Error())
	}
}

// pairDevices pairs n in-process devices with the daemon; every tenth takes the "orders"
// capability, so that each order is pushed to some devices and the push queues work.
func (s *soak) pairDevices(ctx context.Context) ([]*devicesim.Device, error) {
	devs := make([]*devicesim.Device, s.o.Devices)
	errs := make(chan error, len(devs))
	idx := make(chan int)
	var wg sync.WaitGroup
	for range loadWorkers {
		wg.Go(func() {
			for i := range idx {
				var caps []string
				if i%10 == 0 {
					caps = []string{"orders"}
				}
				d := devicesim.New(devicesim.Options{Server: s.base, Kind: "tablet", Name: "soak-" + strconv.Itoa(i+1),
					AppVersion: "soak/1", Capabilities: caps, Heartbeat: -1, HTTPClient: s.client})
				if err := d.Pair(ctx, "", EnrollmentSecret); err != nil {
					errs <- err
					continue
				}
				devs[i] = d
			}
		})
	}
	for i := range devs {
		idx <- i
	}
	close(idx)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("soak: pair devices: %w", err)
	}
	return devs, nil
}

// heartbeats sends each device's heartbeat every interval, the devices spread over it.
func (s *soak) heartbeats(ctx context.Context, devs []*devicesim.Device) {
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() {
			offset := s.o.Heartbeat * time.Duration(i) / time.Duration(len(devs))
			if backoff.Sleep(ctx, offset) != nil {
				return
			}
			t := time.NewTicker(s.o.Heartbeat)
			defer t.Stop()
			for {
				err := d.Heartbeat(ctx)
				if ctx.Err() != nil {
					return
				}
				s.t.done("heartbeat", err)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
}

// paced calls fn rate times a second on loadWorkers workers until ctx ends; a tick that finds
// every worker busy is counted as behind, not queued, so the rate never bunches up.
func (s *soak) paced(ctx context.Context, kind string, rate int, fn func(ctx context.Context, n int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range loadWorkers {
		wg.Go(func() {
			for n := range work {
				fn(ctx, n)
			}
		})
	}
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer func() { t.Stop(); close(work); wg.Wait() }()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case work <- n:
		default:
			s.t.mu.Lock()
			s.t.behind[kind]++
			s.t.mu.Unlock()
		}
	}
}

// lookup reads one product, as a random device.
func (s *soak) lookup(ctx context.Context, devs []*devicesim.Device) func(context.Context, int) {
	return func(ctx context.Context, n int) {
		d := devs[rand.IntN(len(devs))]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, productURL(s.base, rand.IntN(s.o.Products)), nil)
		if err != nil {
			s.t.done("lookup", err)
			return
		}
		req.Header.Set("Authorization", "Bearer "+d.Token())
		resp, err := s.client.Do(req)
		if err == nil {
			err = drain(resp, http.StatusOK)
		}
		if ctx.Err() == nil {
			s.t.done("lookup", err)
		}
	}
}

// order creates one order of one to three lines, as device n mod N. An order cut short by the
// end of the load is sent again with the same key after it, so that every order the soak
// meant to make is made exactly once.
func (s *soak) order(devs []*devicesim.Device) func(context.Context, int) {
	return func(ctx context.Context, n int) {
		d := devs[n%len(devs)]
		var lines []string
		for j := range 1 + n%3 {
			lines = append(lines, fmt.Sprintf(`{"product_id":"P%07d","quantity":%d}`, 1+(n*7+j*13)%s.o.Products, 1+j))
		}
		body := []byte(`{"lines":[` + strings.Join(lines, ",") + `],"note":"soak"}`)
		key := "soak-" + strconv.Itoa(n)
		id, err := s.postOrder(ctx, d.Token(), key, body)
		if err != nil && ctx.Err() != nil {
			id, err = s.postOrder(context.WithoutCancel(ctx), d.Token(), key, body)
		}
		s.t.done("order", err)
		if err == nil {
			s.t.mu.Lock()
			s.t.created = append(s.t.created, id)
			s.t.mu.Unlock()
		}
	}
}

func (s *soak) postOrder(ctx context.Context, token, key string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/v1/orders", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var a struct {
		Order struct {
			ID string `json:"id"`
		} `json:"order"`
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", drain(resp, http.StatusCreated)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.Order.ID == "" {
		return "", fmt.Errorf("POST /api/v1/orders: answer without an order id (%v)", err)
	}
	return a.Order.ID, nil
}

// catalog changes the cloud's catalog: prices, stock and a rename, as a shop's back office does
// all day; the daemon picks them up at its next poll.
func (s *soak) catalog(ctx context.Context) {
	t := time.NewTicker(s.o.CatalogEvery)
	defer t.Stop()
	body := []byte(`{"price_changes":20,"stock_changes":50,"renames":2,"adds":1}`)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cloudURL+"/_sim/mutate", bytes.NewReader(body))
		if err != nil {
			s.t.done("catalog change", err)
			continue
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.client.Do(req)
		if err == nil {
			err = drain(resp, http.StatusOK)
		}
		if ctx.Err() == nil {
			s.t.done("catalog change", err)
		}
	}
}

// follow reads the event stream as device d until ctx ends, noting each order announced. A
// stream that ends early is an error; the follower reconnects after the last event it saw, as
// EventSource does.
func (s *soak) follow(ctx context.Context, k int, d *devicesim.Device, ready chan<- struct{}) {
	c := &http.Client{Transport: s.client.Transport} // no timeout: the stream lasts the whole soak
	last := ""
	for ctx.Err() == nil {
		err := s.stream(ctx, c, k, d.Token(), &last, ready)
		ready = nil
		if ctx.Err() != nil {
			return
		}
		s.t.done("event stream", fmt.Errorf("stream ended: %v", err))
		if backoff.Sleep(ctx, time.Second) != nil {
			return
		}
	}
}

func (s *soak) stream(ctx context.Context, c *http.Client, k int, token string, last *string, ready chan<- struct{}) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/v1/events?types=order.created", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return drain(resp, http.StatusOK)
	}
	if ready != nil {
		ready <- struct{}{}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "id: "); ok {
			*last = id
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var o struct {
			ID string `json:"id"`
		}
		if json.Unmarshal([]byte(data), &o) == nil && o.ID != "" {
			s.t.mu.Lock()
			s.t.seen[k][o.ID] = true
			s.t.mu.Unlock()
		}
	}
	return sc.Err()
}
