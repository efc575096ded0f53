package devices_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

// envInt reads a positive integer from the environment, def when unset or invalid.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestMixedLoadDeliversEveryCommandInOrder runs the shop's mix: many connected devices, a few
// of them taking orders, new orders arriving steadily and a command to every device at short
// intervals, so that fan-outs and order.new commands are stored for the same devices at the
// same moments. Every device must get every command meant for it, in the order they were
// stored, none may be left queued or sent, and the check for commands left behind, run every
// 500 ms, must have found none. STOREEDGE_PUSH_LOAD_DEVICES and
// STOREEDGE_PUSH_LOAD_SECONDS make it heavier (200 devices for 300 s is the shop-sized run).
func TestMixedLoadDeliversEveryCommandInOrder(t *testing.T) {
	n := envInt("STOREEDGE_PUSH_LOAD_DEVICES", 60)
	seconds := envInt("STOREEDGE_PUSH_LOAD_SECONDS", 3)
	logs := &testenv.Buffer{} // warnings only
	e := newEnv(t, func(o *devices.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		o.CheckEvery = 500 * time.Millisecond
	})
	var sims []*sim
	for i := range n {
		var caps []string
		if i%15 == 0 {
			caps = []string{devices.CapOrders}
		}
		sims = append(sims, e.device(t, devicesim.Options{}, caps...))
	}
	ctx := context.Background()
	stop := time.After(time.Duration(seconds) * time.Second)
	orderTick, fanouts := time.NewTicker(20*time.Millisecond), time.NewTicker(50*time.Millisecond)
	defer orderTick.Stop()
	defer fanouts.Stop()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	done := make(chan struct{})
	var nOrders, nFanouts int
	wg.Go(func() { // 50 orders a second, each an order.new for the order-taking devices
		for i := 0; ; i++ {
			select {
			case <-done:
				nOrders = i
				return
			case <-orderTick.C:
			}
			o := orders.Order{Source: orders.SourceLAN, Status: orders.StatusNew, Currency: "EUR", Total: 250, DeviceID: sims[1].creds.DeviceID}
			if _, _, err := e.db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: "k" + strconv.Itoa(i), RequestHash: "h"}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() { // 20 commands a second to every device
		for i := 0; ; i++ {
			select {
			case <-done:
				nFanouts = i
				return
			case <-fanouts.C:
			}
			if _, err := e.m.Send(ctx, devices.Target{All: true}, devices.CmdPrint, fmt.Appendf(nil, `{"n":%d}`, i), 0); err != nil {
				errs <- err
				return
			}
		}
	})
	<-stop
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	// Each device waits for its share; a command left behind shows as a device that never
	// gets there.
	deadline, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, s := range sims {
		want := nFanouts
		if slices.Contains(s.creds.Device.Capabilities, devices.CapOrders) {
			want += nOrders
		}
		s.WaitFor(deadline, func(d *devicesim.Device) bool { return len(d.Commands()) >= want })
	}
	checkEveryCommandDelivered(t, e, sims)
	if s, err := e.m.Summary(ctx); err != nil || s.StuckCommands != 0 {
		t.Fatalf("status: %d commands found left behind connected devices (%v)\n%s", s.StuckCommands, err, logs)
	}
}

// checkEveryCommandDelivered checks that each device did exactly the commands stored for it,
// in the order they were stored, and that the shop recorded every one as acknowledged.
func checkEveryCommandDelivered(t *testing.T, e *env, sims []*sim) {
	t.Helper()
	ctx := context.Background()
	total := 0
	for _, s := range sims {
		stored, err := e.db.ListCommands(ctx, storage.CommandFilter{DeviceID: s.creds.DeviceID, Limit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		slices.Reverse(stored) // oldest first
		want := make([]string, len(stored))
		for i, c := range stored {
			want[i] = c.ID
		}
		got := ids(s.Commands())
		if !slices.Equal(got, want) {
			missing := 0
			for _, id := range want {
				if !slices.Contains(got, id) {
					missing++
				}
			}
			t.Errorf("device %s (capabilities %v) did %d of the %d commands stored for it: %d never came, out of order: %v",
				s.creds.DeviceID, s.creds.Device.Capabilities, len(got), len(want), missing, outOfOrder(got, want))
		}
		total += len(want)
	}
	if t.Failed() {
		t.FailNow()
	}
	deadline := time.After(20 * time.Second)
	for {
		ch := e.wait()
		depths, err := e.db.QueueDepths(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(depths) == 0 {
			break
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("commands still queued or sent after every device did them: %v", depths)
		}
	}
	t.Logf("%d devices, %d commands delivered in order and acknowledged", len(sims), total)
}

// outOfOrder tells whether got, the commands a device did, breaks the order of want.
func outOfOrder(got, want []string) bool {
	pos := make(map[string]int, len(want))
	for i, id := range want {
		pos[id] = i
	}
	last := -1
	for _, id := range got {
		if pos[id] < last {
			return true
		}
		last = pos[id]
	}
	return false
}

func ids(cmds []devicesim.Command) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.ID
	}
	return out
}
