package main

// End-to-end tests of the push channel: the storeedge binary pushes to simulated devices that
// run in the test process, over real loopback sockets.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/tools/testenv"
)

// pushSets make a shop retry devices quickly.
var pushSets = []string{"devices.push_retry_max=1s", "devices.push_timeout=5s"}

// simDevice is a simulated device paired with a shop and running until stopped.
type simDevice struct {
	*devicesim.Device
	o      devicesim.Options
	cancel context.CancelFunc
	done   chan error
}

func pairSim(t *testing.T, s *shop, o devicesim.Options) *simDevice {
	t.Helper()
	o.Server = s.base
	o.Heartbeat = time.Second
	d := &simDevice{Device: devicesim.New(o), o: o}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Pair(ctx, "", e2eEnrollment); err != nil {
		t.Fatalf("%v\n%s", err, s.log)
	}
	d.start()
	t.Cleanup(d.stop)
	return d
}

func (d *simDevice) start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan error, 1)
	go func() { d.done <- d.Run(ctx) }()
}

func (d *simDevice) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.cancel = nil
	}
}

// waitCommands waits until the device has done n commands; each one it does is the signal.
func (d *simDevice) waitCommands(t *testing.T, s *shop, n int, timeout time.Duration) []devicesim.Command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := d.WaitFor(ctx, func(d *devicesim.Device) bool { return len(d.Commands()) >= n }); err != nil {
		t.Fatalf("device has %d commands, want %d\n%s", len(d.Commands()), n, s.log)
	}
	return d.Commands()
}

// sendCommands queues n commands for one device through the admin API and returns their ids.
func (s *shop) sendCommands(t *testing.T, deviceID string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		body := fmt.Sprintf(`{"target":{"device_id":%q},"type":"print","payload":{"n":%d}}`, deviceID, i)
		req := s.request(t, http.MethodPost, "/api/v1/admin/commands", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil || len(out.Items) != 1 {
			t.Fatalf("send command: %s %s", resp.Status, b)
		}
		ids = append(ids, out.Items[0].ID)
	}
	return ids
}

func ids(cmds []devicesim.Command) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, c.ID)
	}
	return out
}

// TestPushSurvivesSIGKILL kills the daemon while commands wait for a device that is away, and
// again while it is delivering to a slow device: after each restart every command arrives, in
// order, the device does each id once, and each command's attempts count at least every time
// the device received it.
func TestPushSurvivesSIGKILL(t *testing.T) {
	cloud := startCloud(t, "-products", "10")
	opts := shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: pushSets}
	s := startShop(t, opts)
	d := pairSim(t, s, devicesim.Options{Kind: "printer", AckDelay: 20 * time.Millisecond})
	d.stop() // away

	want := s.sendCommands(t, d.ID(), 40)
	s.kill()
	s = startShop(t, opts)
	d.start()
	d.waitCommands(t, s, 10, time.Minute)
	// Delivering, with acks 20 ms apart: some are written and not yet acknowledged.
	s.kill()
	s = startShop(t, opts)
	got := d.waitCommands(t, s, len(want), time.Minute)
	if !slices.Equal(ids(got), want) {
		t.Fatalf("device did\n%v\nwant, in this order,\n%v", ids(got), want)
	}
	t.Logf("%d commands, %d received again after a restart and acknowledged without being done twice", len(got), d.Duplicates())
	// And the shop knows they were all acknowledged.
	waitFor(t, s, "every command acknowledged", time.Minute, func() bool {
		var st struct {
			Devices struct {
				Queued int64 `json:"queued"`
				Online int   `json:"online"`
			} `json:"devices"`
		}
		s.get(t, "/api/v1/status", &st)
		return st.Devices.Queued == 0 && st.Devices.Online == 1
	})
	extra := 0
	for _, id := range want {
		var c struct {
			State    string `json:"state"`
			Attempts int    `json:"attempts"`
		}
		s.get(t, "/api/v1/admin/commands/"+id, &c)
		if n := d.Received(id); c.Attempts < n || c.State != "acknowledged" {
			t.Errorf("command %s: %s after %d attempts; the device received it %d times", id, c.State, c.Attempts, n)
		} else {
			extra += c.Attempts - n
		}
	}
	t.Logf("%d attempts written but cut off by a kill before the device read them", extra)
	s.stop(t)
}

// TestNewOrdersArePushed creates an order on the LAN and another arrives over Service Bus: both
// reach the device that handles orders as order.new commands, and their ledgers say so; the
// device without the orders capability gets neither.
func TestNewOrdersArePushed(t *testing.T) {
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	cloud := startCloud(t, "-products", "20")
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: append([]string{
		"servicebus.enabled=true", "servicebus.connection_string=" + peer.ConnectionString(), "servicebus.queue=orders", "servicebus.transport=amqp",
	}, pushSets...)})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	kitchen := pairSim(t, s, devicesim.Options{Kind: "tablet", Name: "kitchen", Capabilities: []string{"orders"}})
	signage := pairSim(t, s, devicesim.Options{Kind: "signage", Name: "window"})
	waitFor(t, s, "both devices connected", time.Minute, func() bool {
		var st struct {
			Devices struct {
				Devices []struct {
					Push string `json:"push"`
				} `json:"devices"`
			} `json:"devices"`
		}
		s.get(t, "/api/v1/status", &st)
		return len(st.Devices.Devices) == 2 && st.Devices.Devices[0].Push == "connected" && st.Devices.Devices[1].Push == "connected"
	})

	lan, _, _, err := s.postOrder("till", "k1", "P0000001", 2)
	if err != nil {
		t.Fatal(err)
	}
	peer.Send(t, "orders", testenv.SBMessage{MessageID: "web-1", ContentType: "application/json",
		Body: []byte(`{"order_id":"web-1","created_at":"2026-11-23T10:00:00Z","currency":"EUR","lines":[{"product_id":"P0000001","name":"Tea","quantity":1,"unit_price":250}],"total":250}`)})

	got := kitchen.waitCommands(t, s, 2, time.Minute)
	var web string
	for _, c := range got {
		var o struct {
			ID         string `json:"id"`
			Source     string `json:"source"`
			ExternalID string `json:"external_id"`
		}
		if c.Type != "order.new" || json.Unmarshal(c.Payload, &o) != nil {
			t.Fatalf("command %+v", c)
		}
		switch o.Source {
		case "lan":
			if o.ID != lan {
				t.Errorf("LAN order pushed as %s, want %s", o.ID, lan)
			}
		case "servicebus":
			web = o.ID
			if o.ExternalID != "web-1" {
				t.Errorf("Service Bus order pushed with external id %q", o.ExternalID)
			}
		default:
			t.Errorf("order from %q", o.Source)
		}
	}
	if web == "" {
		t.Fatal("the Service Bus order was not pushed")
	}
	for _, id := range []string{lan, web} {
		waitFor(t, s, "the pushed stage in the ledger of "+id, time.Minute, func() bool {
			var a struct {
				Ledger []struct {
					Stage  string `json:"stage"`
					Detail string `json:"detail"`
				} `json:"ledger"`
			}
			s.get(t, "/api/v1/orders/"+id, &a)
			for _, e := range a.Ledger {
				if e.Stage == "pushed" && strings.Contains(e.Detail, kitchen.ID()) {
					return true
				}
			}
			return false
		})
	}
	if n := len(signage.Commands()); n != 0 {
		t.Fatalf("the signage got %d commands", n)
	}
	s.stop(t)
}

// envInt reads a positive integer from the environment, def when unset or invalid.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestMixedPushLoad runs the shop's mix against the daemon: many devices (devicesim, the
// reference device) holding their push connections, a few of them taking orders, orders posted
// on the LAN 20 times a second and a command to every device 5 times a second, so that fan-outs
// and order.new commands are stored for the same devices at the same moments. Every device must
// do every command the shop stored for it, in the order it stored them, and at the end the
// status must show none queued and none found left behind. STOREEDGE_PUSH_LOAD_DEVICES and
// STOREEDGE_PUSH_LOAD_SECONDS make it shop-sized (200 devices for 300 s).
func TestMixedPushLoad(t *testing.T) {
	n := envInt("STOREEDGE_PUSH_LOAD_DEVICES", 40)
	seconds := envInt("STOREEDGE_PUSH_LOAD_SECONDS", 4)
	cloud := startCloud(t, "-products", "10")
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: pushSets})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	sims := make([]*simDevice, n)
	for i := range sims {
		o := devicesim.Options{Kind: "tablet", Name: fmt.Sprintf("tablet-%d", i)}
		if i%10 == 0 {
			o.Capabilities = []string{"orders"}
		}
		sims[i] = pairSim(t, s, o)
	}
	waitFor(t, s, "every device connected", time.Minute, func() bool { return s.pushConnected(t) == n })
	// The orders come from one of them (a till that also shows orders), so that a command to
	// all reaches only devices that are there.
	e2eDevices.Store(s.dataDir+"\x00till", sims[1].Token())

	orders, fanouts := s.pushLoad(t, time.Duration(seconds)*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, d := range sims {
		want := fanouts
		if len(d.o.Capabilities) > 0 {
			want += orders
		}
		d.WaitFor(ctx, func(d *devicesim.Device) bool { return len(d.Commands()) >= want })
	}
	for _, d := range sims {
		want := s.storedCommands(t, d.ID())
		if got := ids(d.Commands()); !slices.Equal(got, want) {
			t.Errorf("device %s did %d of the %d commands stored for it, or not in their order", d.ID(), len(got), len(want))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	var st struct {
		Devices struct {
			Queued        int64 `json:"queued"`
			StuckCommands int64 `json:"stuck_commands"`
		} `json:"devices"`
	}
	waitFor(t, s, "no command queued or sent", time.Minute, func() bool {
		s.get(t, "/api/v1/status", &st)
		return st.Devices.Queued == 0
	})
	if st.Devices.StuckCommands != 0 {
		t.Fatalf("status: %d commands found left behind connected devices\n%s", st.Devices.StuckCommands, s.log)
	}
	t.Logf("%d devices, %d orders, %d commands to all: every command delivered in order", n, orders, fanouts)
	s.stop(t)
}

// pushConnected counts the devices whose push connection is up.
func (s *shop) pushConnected(t *testing.T) int {
	var st struct {
		Devices struct {
			Devices []struct {
				Push string `json:"push"`
			} `json:"devices"`
		} `json:"devices"`
	}
	s.get(t, "/api/v1/status", &st)
	n := 0
	for _, d := range st.Devices.Devices {
		if d.Push == "connected" {
			n++
		}
	}
	return n
}

// pushLoad posts orders 20 times a second and sends a command to every device 5 times a second
// for d, and returns how many of each it made.
func (s *shop) pushLoad(t *testing.T, d time.Duration) (orders, fanouts int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	stop := time.After(d)
	done := make(chan struct{})
	every := func(interval time.Duration, count *int, do func(i int) error) {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for ; ; *count++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if err := do(*count); err != nil {
				errs <- err
				return
			}
		}
	}
	wg.Go(func() {
		every(50*time.Millisecond, &orders, func(i int) error {
			_, _, _, err := s.postOrder("till", fmt.Sprintf("load-%d", i), "P0000001", 1)
			return err
		})
	})
	wg.Go(func() {
		every(200*time.Millisecond, &fanouts, func(i int) error {
			body := fmt.Sprintf(`{"target":{"all":true},"type":"print","payload":{"n":%d}}`, i)
			req := s.request(t, http.MethodPost, "/api/v1/admin/commands", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("send a command to all: %s", resp.Status)
			}
			return nil
		})
	})
	<-stop
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("%v\n%s", err, s.log)
	default:
	}
	return orders, fanouts
}

// storedCommands lists the ids of a device's commands as the shop stored them, oldest first.
func (s *shop) storedCommands(t *testing.T, deviceID string) []string {
	t.Helper()
	var out []string
	next := ""
	for {
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			Next string `json:"next"`
		}
		path := "/api/v1/admin/commands?limit=500&device=" + deviceID
		if next != "" {
			path += "&before=" + next
		}
		s.get(t, path, &page)
		for _, c := range page.Items {
			out = append(out, c.ID)
		}
		if next = page.Next; next == "" {
			break
		}
	}
	slices.Reverse(out)
	return out
}
