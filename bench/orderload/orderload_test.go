// Package orderload measures the order paths against the targets of docs/PERFORMANCE.md, each
// next to a baseline measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/orderload
//
// BenchmarkLANOrders (lan_test.go) has 50 devices post 500 orders a second over HTTP/1.1 to the
// LAN server while 200 follow the event stream; the baseline is a bare handler doing one INSERT.
// BenchmarkServiceBusLatency sends orders over Service Bus (the real SDK against the test peer)
// at a steady rate and reports enqueue→stored, enqueue→event-delivered and enqueue→order.new
// pushed to a simulated order-handling device; the baseline is a bare SDK receiver that
// completes each message as it arrives.
// BenchmarkOutboxDrain queues orders while "offline", then drains them to the cloud simulator;
// the baseline uploads the same events in the same batches with no database.
//
// STOREEDGE_BENCH_SECONDS (default 60) sets the duration of the load, STOREEDGE_BENCH_ORDERS
// (default 100000) the size of the outage backlog.
package orderload

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/server"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
	"github.com/storeedge/storeedge/sync/outbox"
	"github.com/storeedge/storeedge/sync/servicebus"
	"github.com/storeedge/storeedge/tools/testenv"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func openDB(b *testing.B) *storage.DB {
	b.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(b.TempDir(), "shop.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func orderBody(i int) []byte {
	return fmt.Appendf(nil, `{"order_id":"web-%d","created_at":"2026-11-23T10:00:00Z","currency":"EUR","lines":[{"product_id":"P0000001","name":"Tea","quantity":1,"unit_price":250}],"total":250}`, i)
}

func percentiles(d []time.Duration) (p50, p99, max time.Duration) {
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.99), d[len(d)-1]
}

// send enqueues n orders at rate per second and records when each was handed to Service Bus.
func send(b *testing.B, peer *testenv.SBPeer, prefix string, n, rate int) map[string]time.Time {
	sent := make(map[string]time.Time, n)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; i < n; i++ {
		<-tick.C
		id := fmt.Sprintf("%s-%d", prefix, i)
		sent[id] = time.Now()
		peer.Send(b, "orders", testenv.SBMessage{MessageID: id, Body: orderBody(i), ContentType: "application/json"})
	}
	return sent
}

func BenchmarkServiceBusLatency(b *testing.B) {
	seconds := envInt("STOREEDGE_BENCH_SECONDS", 60)
	const rate = 50
	n := seconds * rate
	peer := testenv.StartServiceBusPeer(b, testenv.SBPeerOptions{})
	baseline := bareReceiverLatency(b, peer, min(n, 10*rate), rate)

	// The shop: receiver → storage → event stream, and order.new pushed to the device that
	// handles orders.
	shop := startShop(b, peer)
	events := watchEvents(b, shop.url, shop.token, n)
	shop.pushed.expect(n)
	b.ResetTimer()
	sent := send(b, peer, "shop", n, rate)
	events.wait(time.Minute)
	shop.pushed.wait(time.Minute)
	b.StopTimer()
	toStored, toEvent := events.latencies(sent, n)
	if len(toEvent) < n {
		b.Fatalf("%d of %d orders announced within a minute of the last send", len(toEvent), n)
	}
	toPushed := shop.pushed.latencies(sent, n)
	if len(toPushed) < n {
		b.Fatalf("%d of %d orders pushed to the order device within a minute of the last send", len(toPushed), n)
	}
	bp50, bp99, _ := percentiles(baseline)
	sp50, sp99, _ := percentiles(toStored)
	ep50, ep99, emax := percentiles(toEvent)
	pp50, pp99, pmax := percentiles(toPushed)
	b.ReportMetric(ms(sp99), "stored-p99-ms")
	b.ReportMetric(ms(ep99), "event-p99-ms")
	b.ReportMetric(ms(pp99), "pushed-p99-ms")
	fmt.Printf("\nService Bus orders, %d/s for %ds (%d orders)\n", rate, seconds, n)
	fmt.Printf("  %-40s p50 %7.1f ms   p99 %7.1f ms\n", "baseline: enqueue → bare SDK receive", ms(bp50), ms(bp99))
	fmt.Printf("  %-40s p50 %7.1f ms   p99 %7.1f ms\n", "enqueue → stored (order created_at)", ms(sp50), ms(sp99))
	fmt.Printf("  %-40s p50 %7.1f ms   p99 %7.1f ms   max %.1f ms\n", "enqueue → SSE event delivered", ms(ep50), ms(ep99), ms(emax))
	fmt.Printf("  %-40s p50 %7.1f ms   p99 %7.1f ms   max %.1f ms\n", "enqueue → order.new at the order device", ms(pp50), ms(pp99), ms(pmax))
	fmt.Printf("  target stored and pushed p99 ≤ 100 ms: %v (event p99 ≤ 250 ms: %v)\n", pp99 <= 100*time.Millisecond, ep99 <= 250*time.Millisecond)
}

// bareReceiverLatency is the baseline: a bare SDK receiver that completes what it gets. It
// returns the latency of each of count orders sent at rate, from enqueue to receipt.
func bareReceiverLatency(b *testing.B, peer *testenv.SBPeer, count, rate int) []time.Duration {
	client, err := azservicebus.NewClientFromConnectionString(peer.ConnectionString(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close(context.Background())
	rcv, err := client.NewReceiverForQueue("orders", nil)
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			msgs, err := rcv.ReceiveMessages(ctx, 4, nil)
			if err != nil {
				return
			}
			for _, m := range msgs {
				rcv.CompleteMessage(ctx, m, nil)
				mu.Lock()
				got[m.MessageID] = time.Now()
				mu.Unlock()
			}
		}
	}()
	sent := send(b, peer, "base", count, rate)
	peer.WaitStats(b, "orders", time.Minute, func(s testenv.SBQueueStats) bool { return s.Completed >= count })
	cancel()
	<-done
	var lat []time.Duration
	for id, t0 := range sent {
		lat = append(lat, got[id].Sub(t0))
	}
	return lat
}

// shop is the shop's side of BenchmarkServiceBusLatency.
type shop struct {
	url, token string     // the LAN server, and a paired device's token
	pushed     *pushWatch // what the order-handling device was pushed
}

// startShop runs the shop's side: the Service Bus receiver storing orders, the LAN server
// announcing them, and the device manager pushing each as order.new to a simulated device that
// handles orders, over its push connection. It returns once the receiver's link is up and the
// device was pushed a warm-up order.
func startShop(b *testing.B, peer *testenv.SBPeer) shop {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	db := openDB(b)
	dm, err := devices.New(ctx, devices.Options{DB: db, EnrollmentSecret: benchEnrollment})
	if err != nil {
		b.Fatal(err)
	}
	device, err := dm.Pair(ctx, devices.PairRequest{EnrollmentSecret: benchEnrollment, Kind: "other"}, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	pushed := startOrderDevice(b, ctx, cancel, dm)
	srv, err := server.New(server.Options{DB: db, Devices: dm})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	b.Cleanup(ts.Close)
	r := servicebus.NewReceiver(servicebus.Options{DB: db, ConnectionString: peer.ConnectionString(), Queue: "orders"})
	go r.Run(ctx)
	// Steady state: the link is up before the first order is sent.
	for r.Status().State != servicebus.LinkConnected {
		peer.Send(b, "orders", testenv.SBMessage{MessageID: "warm-up", Body: orderBody(-1)})
		peer.WaitStats(b, "orders", time.Minute, func(s testenv.SBQueueStats) bool { return s.Active == 0 })
	}
	pushed.waitWarm(b)
	return shop{url: ts.URL, token: device.Token, pushed: pushed}
}

// startOrderDevice pairs a simulated device that handles orders, runs it and the manager, and
// records when each order.new reached it.
func startOrderDevice(b *testing.B, ctx context.Context, cancel context.CancelFunc, dm *devices.Manager) *pushWatch {
	pw := &pushWatch{at: map[string]time.Time{}, all: make(chan struct{}), warm: make(chan struct{})}
	sim := devicesim.New(devicesim.Options{Heartbeat: -1, Handle: pw.handle})
	addr, err := sim.Listen()
	if err != nil {
		b.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	creds, err := dm.Pair(ctx, devices.PairRequest{EnrollmentSecret: benchEnrollment, Kind: "pos", PushPort: p, Capabilities: []string{devices.CapOrders}}, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	sim.SetCredentials(creds.DeviceID, creds.Secret)
	var wg sync.WaitGroup
	wg.Go(func() { sim.Run(ctx) })
	wg.Go(func() { dm.Run(ctx) })
	b.Cleanup(func() { cancel(); wg.Wait() }) // before the database closes
	return pw
}

// pushWatch records when each order.new command reached the order device, by external id.
type pushWatch struct {
	warm chan struct{} // closed at the warm-up order
	all  chan struct{} // closed once want orders came

	mu   sync.Mutex // protects the fields below
	at   map[string]time.Time
	want int
}

func (pw *pushWatch) handle(c devicesim.Command) error {
	now := time.Now()
	if c.Type != devices.CmdOrderNew {
		return nil
	}
	var o orders.Order
	if err := json.Unmarshal(c.Payload, &o); err != nil {
		return err
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if o.ExternalID == "web--1" {
		if pw.warm != nil {
			close(pw.warm)
			pw.warm = nil
		}
		return nil
	}
	pw.at[o.ExternalID] = now
	if pw.want > 0 && len(pw.at) == pw.want {
		close(pw.all)
	}
	return nil
}

func (pw *pushWatch) waitWarm(b *testing.B) {
	pw.mu.Lock()
	warm := pw.warm
	pw.mu.Unlock()
	if warm == nil {
		return
	}
	select {
	case <-warm:
	case <-time.After(time.Minute):
		b.Fatal("the order device was not pushed the warm-up order within a minute")
	}
}

// expect sets how many orders the run sends.
func (pw *pushWatch) expect(n int) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.want = n
}

// wait returns once the device had every order of the run, or after limit.
func (pw *pushWatch) wait(limit time.Duration) {
	select {
	case <-pw.all:
	case <-time.After(limit):
	}
}

// latencies are, for each of the n orders sent that reached the device, the time from its
// enqueue to its arrival.
func (pw *pushWatch) latencies(sent map[string]time.Time, n int) []time.Duration {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var lat []time.Duration
	for i := 0; i < n; i++ {
		if at, ok := pw.at[fmt.Sprintf("web-%d", i)]; ok {
			lat = append(lat, at.Sub(sent[fmt.Sprintf("shop-%d", i)]))
		}
	}
	return lat
}

// eventWatch follows the event stream: when each order was announced, and when it was stored.
type eventWatch struct {
	all chan struct{} // closed once n orders were announced

	mu        sync.Mutex // protects the fields below
	stored    map[string]time.Time
	delivered map[string]time.Time
}

// watchEvents reads GET /api/v1/events as the device with token, until the benchmark ends.
func watchEvents(b *testing.B, url, token string, n int) *eventWatch {
	ew := &eventWatch{all: make(chan struct{}), stored: map[string]time.Time{}, delivered: map[string]time.Time{}}
	req, _ := http.NewRequest(http.MethodGet, url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { resp.Body.Close() })
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "data: ") {
				continue
			}
			now := time.Now()
			var o orders.Order
			if json.Unmarshal([]byte(line[6:]), &o) != nil || o.ExternalID == "web--1" { // the warm-up
				continue
			}
			ew.mu.Lock()
			before := len(ew.delivered)
			ew.delivered[o.ExternalID] = now
			ew.stored[o.ExternalID] = o.CreatedAt
			if before < n && len(ew.delivered) >= n {
				close(ew.all)
			}
			ew.mu.Unlock()
		}
	}()
	return ew
}

// wait returns once every order was announced, or after limit.
func (ew *eventWatch) wait(limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-ew.all:
	case <-t.C:
	}
}

// latencies are, for each of the n orders sent that was announced, the time from its enqueue
// to its being stored, and to its announcement.
func (ew *eventWatch) latencies(sent map[string]time.Time, n int) (toStored, toEvent []time.Duration) {
	ew.mu.Lock()
	defer ew.mu.Unlock()
	for i := 0; i < n; i++ {
		ext := fmt.Sprintf("web-%d", i)
		t0 := sent[fmt.Sprintf("shop-%d", i)]
		if d, ok := ew.delivered[ext]; ok {
			toEvent = append(toEvent, d.Sub(t0))
			toStored = append(toStored, ew.stored[ext].Sub(t0))
		}
	}
	return toStored, toEvent
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func BenchmarkOutboxDrain(b *testing.B) {
	n := envInt("STOREEDGE_BENCH_ORDERS", 100000)
	const batch = 500
	db := openDB(b)
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < n; i++ {
		o := orders.Order{Source: orders.SourceLAN, DeviceID: fmt.Sprintf("pos-%d", i%8), Status: orders.StatusNew, Currency: "EUR",
			Lines: []orders.Line{{ProductID: "P0000001", Name: "Tea", Quantity: 1, UnitPrice: 250, LineTotal: 250}}, Total: 250}
		if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: strconv.Itoa(i), RequestHash: "h"}); err != nil {
			b.Fatal(err)
		}
	}
	queued := time.Since(start)

	// Baseline: the same events, the same batches, straight from memory to a fresh cloud.
	pending, err := db.PendingOutbox(ctx, n)
	if err != nil {
		b.Fatal(err)
	}
	events := make([]cloudapi.Event, len(pending))
	for i, e := range pending {
		events[i] = cloudapi.Event{Key: e.Key, Type: e.Type, At: e.At.Format(time.RFC3339Nano), Data: e.Data}
	}
	newCloud := func() *cloud.Client {
		sim := cloudsim.New(cloudsim.Options{Products: 1, StoreKey: "k"})
		ts := httptest.NewServer(sim.Handler())
		b.Cleanup(ts.Close)
		c, err := cloud.New(ts.URL, "k", ts.Client(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	raw := newCloud()
	t0 := time.Now()
	for i := 0; i < len(events); i += batch {
		if _, err := raw.Upload(ctx, events[i:min(i+batch, len(events))]); err != nil {
			b.Fatal(err)
		}
	}
	rawTime := time.Since(t0)

	w := outbox.New(outbox.Options{DB: db, Cloud: newCloud(), Batch: batch})
	b.ResetTimer()
	t0 = time.Now()
	settled, err := w.Drain(ctx)
	drainTime := time.Since(t0)
	b.StopTimer()
	if err != nil || settled != n {
		b.Fatalf("drained %d of %d: %v", settled, n, err)
	}
	b.ReportMetric(float64(n)/drainTime.Seconds(), "orders/s")
	fmt.Printf("\nOutbox drain after an outage: %d orders queued (in %.1f s), batches of %d\n", n, queued.Seconds(), batch)
	fmt.Printf("  %-44s %8.0f orders/s  (%.2f s)\n", "baseline: same batches uploaded from memory", float64(n)/rawTime.Seconds(), rawTime.Seconds())
	fmt.Printf("  %-44s %8.0f orders/s  (%.2f s)   ratio %.2f\n", "outbox drain (read, upload, mark delivered)", float64(n)/drainTime.Seconds(), drainTime.Seconds(), rawTime.Seconds()/drainTime.Seconds())
}
