package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/storeedge/storeedge/tools/testenv"
)

// wanLink is a TCP relay between the shop and the cloud that the test can cut and restore on the
// same port: a real outage as the shop sees it (connection refused, connections reset).
type wanLink struct {
	addr   string
	target string

	mu    sync.Mutex // protects the fields below
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newWANLink(t *testing.T, target string) *wanLink {
	t.Helper()
	ln := testenv.ListenOutsideEphemeral(t) // down and up again on it
	l := &wanLink{addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	l.serve(ln)
	t.Cleanup(l.down)
	return l
}

func (l *wanLink) serve(ln net.Listener) {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", l.target)
			if err != nil {
				c.Close()
				continue
			}
			l.mu.Lock()
			l.conns[c], l.conns[up] = true, true
			l.mu.Unlock()
			l.wg.Add(2)
			go func() { defer l.wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer l.wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
}

// down cuts the link: nothing listens and every open connection is reset.
func (l *wanLink) down() {
	l.mu.Lock()
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for c := range l.conns {
		c.Close()
	}
	l.conns = map[net.Conn]bool{}
	l.mu.Unlock()
	l.wg.Wait()
}

// up restores the link on the same port.
func (l *wanLink) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	l.serve(ln)
}

type orderStatus struct {
	Orders struct {
		ByStatus      map[string]int64 `json:"by_status"`
		OutboxPending int64            `json:"outbox_pending"`
	} `json:"orders"`
	Upload *struct {
		LastError string `json:"last_error"`
	} `json:"upload"`
}

func (s *shop) outboxPending(t *testing.T) int64 {
	var st orderStatus
	s.get(t, "/api/v1/status", &st)
	return st.Orders.OutboxPending
}

// postOrder creates an order as a device does; it returns the order's id and number.
func (s *shop) postOrder(device, key string, product string, qty int) (id string, number int64, status int, err error) {
	body := fmt.Sprintf(`{"lines":[{"product_id":%q,"quantity":%d}]}`, product, qty)
	token, err := s.deviceToken(device)
	if err != nil {
		return "", 0, 0, err
	}
	req, _ := http.NewRequest(http.MethodPost, s.base+"/api/v1/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, 0, err
	}
	defer resp.Body.Close()
	var a struct {
		Order struct {
			ID     string `json:"id"`
			Number int64  `json:"number"`
		} `json:"order"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", 0, resp.StatusCode, fmt.Errorf("POST order: %s %s", resp.Status, b)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return "", 0, resp.StatusCode, err
	}
	return a.Order.ID, a.Order.Number, resp.StatusCode, nil
}

type cloudEvent struct {
	Key  string `json:"key"`
	Type string `json:"type"`
	Data struct {
		ID       string `json:"id"`
		Number   int64  `json:"number"`
		DeviceID string `json:"device_id"`
	} `json:"data"`
}

func (c *cloudProc) events(t *testing.T) []cloudEvent {
	t.Helper()
	resp, err := http.Get(c.url + "/_sim/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []cloudEvent
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// createdOrders returns the cloud's order.created events in the order it accepted them, failing
// the test on an order that reached it twice.
func createdOrders(t *testing.T, c *cloudProc) []cloudEvent {
	t.Helper()
	seen := map[string]bool{}
	var out []cloudEvent
	for _, e := range c.events(t) {
		if e.Type != "order.created" {
			continue
		}
		if seen[e.Data.ID] {
			t.Fatalf("order %s reached the cloud twice", e.Data.ID)
		}
		seen[e.Data.ID] = true
		out = append(out, e)
	}
	return out
}

// deviceID is the id of the test device with that name.
func (s *shop) deviceID(t *testing.T, name string) string {
	token, err := s.deviceToken(name)
	if err != nil {
		t.Error(err)
	}
	id, _, _ := strings.Cut(token, ".")
	return id
}

// assertCloudOrders checks that the cloud holds exactly the orders made, each once, in creation
// order per device.
func assertCloudOrders(t *testing.T, c *cloudProc, made map[string][]string) {
	t.Helper()
	next := map[string]int{}
	created := createdOrders(t, c)
	total := len(created)
	for _, e := range created {
		want := made[e.Data.DeviceID]
		i := next[e.Data.DeviceID]
		if i >= len(want) || want[i] != e.Data.ID {
			t.Fatalf("device %s: the cloud got order %s in place %d", e.Data.DeviceID, e.Data.ID, i)
		}
		next[e.Data.DeviceID]++
	}
	n := 0
	for d, ids := range made {
		n += len(ids)
		if next[d] != len(ids) {
			t.Errorf("device %s: %d orders made, %d reached the cloud", d, len(ids), next[d])
		}
	}
	if total != n {
		t.Fatalf("the cloud has %d orders, the devices made %d", total, n)
	}
}

// TestThousandOrdersReachTheCloudOnce creates 1,000 orders from five devices, retrying some POSTs,
// while the WAN goes down for part of the run and the cloud fails a fifth of the uploads.
func TestThousandOrdersReachTheCloudOnce(t *testing.T) {
	cloud := startCloud(t, "-products", "50", "-upload-error-rate", "0.2")
	link := newWANLink(t, strings.TrimPrefix(cloud.url, "http://"))
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: "http://" + link.addr, sets: []string{"orders.outbox_batch=25"}})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })

	const devices, each = 5, 200
	var mu sync.Mutex
	made := map[string][]string{}
	created := 0
	outage := make(chan struct{})
	restore := make(chan struct{})
	var g errgroup.Group
	for d := 0; d < devices; d++ {
		device := fmt.Sprintf("pos-%d", d)
		rnd := rand.New(rand.NewPCG(uint64(d), 1))
		g.Go(func() error {
			for i := 0; i < each; i++ {
				key := fmt.Sprintf("%s-%d", device, i)
				product, qty := fmt.Sprintf("P%07d", 1+rnd.IntN(50)), 1+rnd.IntN(3)
				id, _, _, err := s.postOrder(device, key, product, qty)
				if err != nil {
					return err
				}
				if rnd.IntN(5) == 0 { // the answer was "lost": the device sends the same order again
					again, _, code, err := s.postOrder(device, key, product, qty)
					if err != nil {
						return err
					}
					if again != id || code != http.StatusOK {
						return fmt.Errorf("%s: retry of %s answered %d with order %s, first was %s", device, key, code, again, id)
					}
				}
				mu.Lock()
				dev := s.deviceID(t, device)
				made[dev] = append(made[dev], id)
				created++
				if created == 300 {
					close(outage)
				}
				if created == 700 {
					close(restore)
				}
				mu.Unlock()
			}
			return nil
		})
	}
	<-outage
	link.down()
	<-restore
	if p := s.outboxPending(t); p == 0 {
		t.Fatal("nothing queued during the outage")
	}
	var during orderStatus
	s.get(t, "/api/v1/status", &during)
	if during.Upload == nil || during.Upload.LastError == "" {
		t.Fatalf("status does not say why uploads fail during the outage: %+v", during.Upload)
	}
	link.up(t)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "the outbox to drain", 3*time.Minute, func() bool { return s.outboxPending(t) == 0 })
	assertCloudOrders(t, cloud, made)
	var after orderStatus
	s.get(t, "/api/v1/status", &after)
	if after.Upload == nil || after.Upload.LastError != "" {
		t.Fatalf("status still reports an upload error after the drain: %+v", after.Upload)
	}
	s.stop(t)
}

// TestKilledDuringUpload queues orders while the WAN is down, then kills the daemon with SIGKILL
// ten times while it uploads them: in the end the cloud and the shop hold each order once.
func TestKilledDuringUpload(t *testing.T) {
	cloud := startCloud(t, "-products", "20", "-latency", "100ms")
	link := newWANLink(t, strings.TrimPrefix(cloud.url, "http://"))
	dir := t.TempDir()
	opts := shopOptions{dataDir: dir, cloud: "http://" + link.addr, sets: []string{"orders.outbox_batch=5"}}
	s := startShop(t, opts)
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	link.down()
	made := map[string][]string{}
	for i := 0; i < 300; i++ {
		device := fmt.Sprintf("kiosk-%d", i%3)
		id, _, _, err := s.postOrder(device, fmt.Sprint(i), fmt.Sprintf("P%07d", 1+i%20), 1)
		if err != nil {
			t.Fatal(err)
		}
		dev := s.deviceID(t, device)
		made[dev] = append(made[dev], id)
	}
	link.up(t)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	last := s.outboxPending(t)
	for kill := 1; kill <= 10; kill++ {
		waitFor(t, s, "upload progress", time.Minute, func() bool { return s.outboxPending(t) < last })
		// Let the next batch get under way: with the cloud's 100 ms latency, the kill lands
		// before, during or after an upload.
		time.Sleep(time.Duration(rnd.IntN(150)) * time.Millisecond)
		last = s.outboxPending(t)
		if last == 0 {
			t.Fatalf("the outbox drained after %d kills; it must still be uploading", kill-1)
		}
		s.kill()
		t.Logf("kill %d: %d entries pending", kill, last)
		s = startShop(t, opts)
	}
	waitFor(t, s, "the outbox to drain", 2*time.Minute, func() bool { return s.outboxPending(t) == 0 })
	var st orderStatus
	s.get(t, "/api/v1/status", &st)
	if st.Orders.ByStatus["new"] != 300 {
		t.Fatalf("the shop holds %v orders, want 300 new", st.Orders.ByStatus)
	}
	assertCloudOrders(t, cloud, made)
	s.stop(t)
}

// TestKilledDuringServiceBusReceive kills the daemon with SIGKILL ten times while it takes orders
// off its Service Bus queue: every order ends in the shop and in the cloud exactly once.
func TestKilledDuringServiceBusReceive(t *testing.T) {
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{LockDuration: 2 * time.Second})
	cloud := startCloud(t, "-products", "20")
	const total = 1500
	for i := 0; i < total; i++ {
		body := fmt.Sprintf(`{"order_id":"web-%d","created_at":"2026-11-23T10:00:00Z","currency":"EUR","lines":[{"product_id":"P0000001","name":"Tea","quantity":1,"unit_price":250}],"total":250}`, i)
		peer.Send(t, "orders", testenv.SBMessage{MessageID: fmt.Sprintf("msg-%d", i), Body: []byte(body), ContentType: "application/json"})
	}
	dir := t.TempDir()
	exportDir := t.TempDir()
	opts := shopOptions{dataDir: dir, cloud: cloud.url, sets: []string{
		"servicebus.enabled=true", "servicebus.connection_string=" + peer.ConnectionString(), "servicebus.queue=orders",
		"servicebus.transport=amqp", "servicebus.max_concurrent=1",
		"shop.mode=production", "backoffice.export.dir=" + exportDir, "backoffice.schedule=@every 1s",
	}}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	last := 0
	for kill := 1; kill <= 10; kill++ {
		s := startShop(t, opts)
		st := peer.WaitStats(t, "orders", time.Minute, func(st testenv.SBQueueStats) bool { return st.Completed > last })
		time.Sleep(time.Duration(rnd.IntN(50)) * time.Millisecond)
		s.kill()
		st = peer.Stats(t, "orders")
		if st.Completed >= total {
			t.Fatalf("all messages done after %d kills; the queue must be longer", kill)
		}
		last = st.Completed
		t.Logf("kill %d: %d completed", kill, last)
	}
	s := startShop(t, opts)
	// Messages locked by a killed daemon come back when their locks expire.
	peer.WaitStats(t, "orders", 3*time.Minute, func(st testenv.SBQueueStats) bool { return st.Completed == total && st.Active == 0 && st.Locked == 0 })
	waitFor(t, s, "the outbox to drain", 2*time.Minute, func() bool { return s.outboxPending(t) == 0 })
	var st orderStatus
	s.get(t, "/api/v1/status", &st)
	if st.Orders.ByStatus["new"] != total {
		t.Fatalf("the shop holds %v orders, want %d new", st.Orders.ByStatus, total)
	}
	if dl := peer.DeadLetters(t, "orders"); len(dl) != 0 {
		t.Fatalf("%d messages dead-lettered", len(dl))
	}
	if n := len(createdOrders(t, cloud)); n != total {
		t.Fatalf("the cloud has %d orders, want %d", n, total)
	}
	// And in the back office's drop folder: every order in exactly one file.
	waitFor(t, s, "every order exported", 2*time.Minute, func() bool { return exportedOrders(t, exportDir) >= total })
	if got := exportedOrders(t, exportDir); got != total {
		t.Fatalf("the export folder holds %d orders, want %d", got, total)
	}
	s.stop(t)
}

// exportedOrders counts the orders in the JSON files of a drop folder, failing on one that
// appears twice or on a temporary file left visible.
func exportedOrders(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // being written: the ERP ignores dot files
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var orders []struct {
			ExternalID string `json:"external_id"`
		}
		if err := json.Unmarshal(b, &orders); err != nil {
			t.Fatalf("%s is not a complete JSON export: %v", e.Name(), err)
		}
		for _, o := range orders {
			if seen[o.ExternalID] {
				t.Fatalf("order %s exported twice", o.ExternalID)
			}
			seen[o.ExternalID] = true
		}
	}
	return len(seen)
}

// TestTestOrdersStayOutOfProductionExports runs a shop in test mode, then in production: test
// orders carry the TEST note and reach only the test folder, never the production one.
func TestTestOrdersStayOutOfProductionExports(t *testing.T) {
	cloud := startCloud(t, "-products", "10")
	dir, prodDir, testDir := t.TempDir(), t.TempDir(), t.TempDir()
	sets := []string{"backoffice.export.dir=" + prodDir, "backoffice.export.test_dir=" + testDir, "backoffice.schedule=@hourly"}
	exportNow := func(s *shop) {
		t.Helper()
		resp, err := http.DefaultClient.Do(s.request(t, http.MethodPost, "/api/v1/admin/backoffice/run", nil))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("export now: %s %s", resp.Status, b)
		}
	}
	notes := func(folder string) (n int, allTest bool) {
		allTest = true
		entries, _ := os.ReadDir(folder)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue // not order files, as back-office.md tells an ERP
			}
			b, _ := os.ReadFile(filepath.Join(folder, e.Name()))
			var orders []struct {
				Note string `json:"note"`
				Test bool   `json:"test"`
			}
			if err := json.Unmarshal(b, &orders); err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			for _, o := range orders {
				n++
				allTest = allTest && o.Test && strings.HasPrefix(o.Note, "TEST")
			}
		}
		return n, allTest
	}

	s := startShop(t, shopOptions{dataDir: dir, cloud: cloud.url, sets: sets})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	for i := 0; i < 5; i++ {
		if _, _, _, err := s.postOrder("pos", fmt.Sprint("test-", i), "P0000001", 1); err != nil {
			t.Fatal(err)
		}
	}
	exportNow(s)
	if n, allTest := notes(testDir); n != 5 || !allTest {
		t.Fatalf("test folder: %d orders, all marked TEST: %v", n, allTest)
	}
	if n, _ := notes(prodDir); n != 0 {
		t.Fatalf("%d test orders reached the production folder", n)
	}
	s.stop(t)

	s = startShop(t, shopOptions{dataDir: dir, cloud: cloud.url, sets: append(sets, "shop.mode=production")})
	for i := 0; i < 3; i++ {
		if _, _, _, err := s.postOrder("pos", fmt.Sprint("real-", i), "P0000001", 1); err != nil {
			t.Fatal(err)
		}
	}
	exportNow(s)
	if n, allTest := notes(prodDir); n != 3 || allTest {
		t.Fatalf("production folder: %d orders (want the 3 real ones only)", n)
	}
	if n, _ := notes(testDir); n != 5 {
		t.Fatalf("test folder changed to %d orders", n)
	}
	s.stop(t)
}
