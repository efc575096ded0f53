package devices_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/devices/push"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

func send(t *testing.T, e *env, target devices.Target, typ, payload string, ttl time.Duration) []storage.Command {
	t.Helper()
	cmds, err := e.m.Send(context.Background(), target, typ, json.RawMessage(payload), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

func TestCommandIsPushedAndAcknowledged(t *testing.T) {
	e := newEnv(t)
	d := e.device(t, devicesim.Options{})
	cmds := send(t, e, devices.Target{DeviceID: d.creds.DeviceID}, "print", `{"text":"hello"}`, 0)
	got := d.waitCommands(t, 1)
	if got[0].ID != cmds[0].ID || got[0].Type != "print" || string(got[0].Payload) != `{"text":"hello"}` || !got[0].Time.Equal(epoch) {
		t.Fatalf("device got %+v, want %+v", got[0], cmds[0])
	}
	c := e.waitState(t, cmds[0].ID, storage.CommandAcknowledged)
	if c.Attempts != 1 || c.SentAt == nil || c.DoneAt == nil {
		t.Fatalf("command %+v", c)
	}
	dev, err := e.m.Get(context.Background(), d.creds.DeviceID)
	if err != nil || dev.Push != devices.PushConnected || !dev.Online || dev.QueueDepth != 0 {
		t.Fatalf("device %+v, %v", dev, err)
	}
}

// A command is recorded as sent, with its attempt, before the device can have it: the admin
// never sees queued a command the device already has, and an attempt cut off by a crash still
// counts.
func TestCommandIsRecordedSentBeforeTheDeviceHasIt(t *testing.T) {
	e := newEnv(t)
	seen := make(chan storage.Command, 3)
	d := e.device(t, devicesim.Options{Handle: func(c devicesim.Command) error {
		stored, err := e.db.GetCommand(context.Background(), c.ID)
		if err != nil {
			return err
		}
		seen <- stored
		return nil
	}})
	for i := range 3 {
		send(t, e, devices.Target{DeviceID: d.creds.DeviceID}, "print", fmt.Sprintf(`{"n":%d}`, i), 0)
	}
	for range 3 {
		c := <-seen
		if c.State != storage.CommandSent || c.Attempts != 1 || c.SentAt == nil {
			t.Errorf("command %s as stored when the device had it: %s, %d attempts, sent at %v; want sent, 1 attempt",
				c.ID, c.State, c.Attempts, c.SentAt)
		}
	}
}

// A command stored without its link knowing, as a defect would leave it (behind a later command
// the link wrote, or never handed to the link at all), is found by the connection's check,
// counted in the status, logged, and delivered while the device stays connected.
func TestCheckDeliversCommandsLeftBehind(t *testing.T) {
	e := newEnv(t, func(o *devices.Options) { o.CheckEvery = 20 * time.Millisecond })
	d := e.device(t, devicesim.Options{})
	target := devices.Target{DeviceID: d.creds.DeviceID}
	send(t, e, target, "ping", `{}`, 0)
	d.waitCommands(t, 1) // connected
	ctx := context.Background()
	behind := func(id string) {
		c := storage.Command{ID: id, DeviceID: d.creds.DeviceID, Type: "print", Payload: []byte(`{}`), CreatedAt: epoch, ExpiresAt: epoch.Add(time.Hour)}
		if err := e.db.EnqueueCommands(ctx, []storage.Command{c}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, step := range []struct {
		name  string
		after func() // what follows the command left behind
	}{
		{"behind a later command", func() { send(t, e, target, "ping", `{}`, 0) }},
		{"never handed to the link", func() {}},
	} {
		id := fmt.Sprintf("cmd_behind_%d", i)
		behind(id)
		step.after()
		e.waitState(t, id, storage.CommandAcknowledged)
		if !slices.Contains(ids(d.Commands()), id) {
			t.Fatalf("%s: acknowledged, but the device does not have it", step.name)
		}
		s, err := e.m.Summary(ctx)
		if err != nil || s.StuckCommands != int64(i+1) {
			t.Fatalf("%s: status counts %d commands left behind, want %d (%v)", step.name, s.StuckCommands, i+1, err)
		}
	}
	if !strings.Contains(e.logs.String(), "level=WARN msg=\"devices: commands left behind while the device is connected") {
		t.Fatalf("no warning in the log:\n%s", e.logs)
	}
}

// A device that is away gets everything queued meanwhile, in order, when it is back; what
// expired meanwhile is not delivered and is reported expired.
func TestAwayDeviceGetsItsQueueInOrder(t *testing.T) {
	e := newEnv(t)
	d := e.device(t, devicesim.Options{})
	target := devices.Target{DeviceID: d.creds.DeviceID}
	first := send(t, e, target, "ping", `{}`, 0)
	d.waitCommands(t, 1)
	e.waitState(t, first[0].ID, storage.CommandAcknowledged)

	const closed = "devices: push connection closed"
	before := strings.Count(e.logs.String(), closed)
	d.stop()
	// The server sees the connection closed before the commands are sent: sent while it still
	// thought it open, a command would be written to it (an attempt) and lost with it.
	if !e.logs.WaitUntil(func(out string) bool { return strings.Count(out, closed) > before }, 30*time.Second, nil) {
		t.Fatalf("the server did not see the device go\n%s", e.logs)
	}
	var want []string
	var short string
	for i := range 30 {
		ttl := time.Hour
		if i == 10 {
			ttl = time.Minute
		}
		c := send(t, e, target, "print", fmt.Sprintf(`{"n":%d}`, i), ttl)[0]
		if i == 10 {
			short = c.ID
		} else {
			want = append(want, c.ID)
		}
	}
	if dev, _ := e.m.Get(context.Background(), d.creds.DeviceID); dev.QueueDepth != 30 {
		t.Fatalf("queue depth %d while away, want 30", dev.QueueDepth)
	}
	e.clock.Advance(2 * time.Minute)

	d.start(t)
	got := d.waitCommands(t, 1+len(want))
	for i, id := range want {
		if got[1+i].ID != id {
			t.Fatalf("command %d delivered is %s, want %s (all: %v)", i, got[1+i].ID, id, got)
		}
	}
	e.waitState(t, want[len(want)-1], storage.CommandAcknowledged)
	c, err := e.db.GetCommand(context.Background(), short)
	if err != nil || c.State != storage.CommandExpired || !strings.Contains(c.Reason, "time to live") || c.Attempts != 0 {
		t.Fatalf("the expired command: %+v, %v", c, err)
	}
	for _, x := range d.Commands() {
		if x.ID == short {
			t.Fatal("the expired command was delivered")
		}
	}
}

func TestRevokedDeviceGetsNothing(t *testing.T) {
	e := newEnv(t)
	d := e.device(t, devicesim.Options{})
	send(t, e, devices.Target{All: true}, "ping", `{}`, 0)
	d.waitCommands(t, 1)
	d.stop()
	queued := send(t, e, devices.Target{DeviceID: d.creds.DeviceID}, "reload", `{}`, 0)[0]
	if _, err := e.m.Revoke(context.Background(), d.creds.DeviceID); err != nil {
		t.Fatal(err)
	}
	c, _ := e.db.GetCommand(context.Background(), queued.ID)
	if c.State != storage.CommandFailed || c.Reason != "device revoked" {
		t.Fatalf("queued command after revoke: %+v", c)
	}
	if _, err := e.m.Send(context.Background(), devices.Target{DeviceID: d.creds.DeviceID}, "ping", nil, 0); err == nil {
		t.Fatal("a command for a revoked device was accepted")
	}
	if _, err := e.m.Authenticate(d.creds.Token); err != devices.ErrRevoked {
		t.Fatalf("Authenticate after revoke: %v", err)
	}
}

// A revocation closes the device's push connection before it is stored, so that a batch of
// commands stored as sent just before its commit is not written to the device after it: with
// the database held by another writer, the connection is closed while the revocation waits.
func TestRevokeClosesThePushConnectionFirst(t *testing.T) {
	e := newEnv(t)
	d := e.device(t, devicesim.Options{})
	send(t, e, devices.Target{All: true}, "ping", `{}`, 0)
	d.waitCommands(t, 1)
	if !d.Connected() {
		t.Fatal("the device is not connected after its command")
	}
	other, err := sql.Open("sqlite", "file:"+e.db.Path()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	held, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	revoked := make(chan error, 1)
	go func() {
		_, err := e.m.Revoke(ctx, d.creds.DeviceID)
		revoked <- err
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.WaitFor(wctx, func(d *devicesim.Device) bool { return !d.Connected() }); err != nil {
		t.Fatalf("the push connection stayed open while the revocation waited for the database: %v", err)
	}
	select {
	case err := <-revoked:
		t.Fatalf("the revocation ended while the database was held: %v", err)
	default:
	}
	if _, err := held.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Authenticate(d.creds.Token); err != devices.ErrRevoked {
		t.Fatalf("Authenticate after revoke: %v", err)
	}
}

// A revocation right after the device acknowledged a command leaves that command acknowledged:
// the acknowledgements the link read are stored before the revocation fails what is left open.
func TestRevokeKeepsTheAcknowledgementsRead(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		d := e.device(t, devicesim.Options{})
		acked, _ := e.m.PushAnswers()
		cmd := send(t, e, devices.Target{DeviceID: d.creds.DeviceID}, "ping", `{}`, 0)[0]
		// The server has read the acknowledgement (counted as it is read, before it is stored).
		deadline := time.Now().Add(10 * time.Second)
		for n, _ := e.m.PushAnswers(); n == acked; n, _ = e.m.PushAnswers() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no acknowledgement read within 10 s\n%s", i, e.logs)
			}
			time.Sleep(time.Millisecond) // the count has no signal of its own
		}
		if _, err := e.m.Revoke(context.Background(), d.creds.DeviceID); err != nil {
			t.Fatal(err)
		}
		c, err := e.db.GetCommand(context.Background(), cmd.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c.State != storage.CommandAcknowledged {
			t.Fatalf("round %d: the command the device acknowledged is %s (%s) after the revocation", i, c.State, c.Reason)
		}
	}
}

// A device that sends garbage, or a frame larger than the limit, loses its connection with the
// reason logged; the other devices are served all the while.
func TestBadDevicesDoNotDisturbTheOthers(t *testing.T) {
	e := newEnv(t)
	good := e.device(t, devicesim.Options{})

	for _, bad := range []struct {
		name   string
		reason string
		act    func(nc net.Conn, key []byte, id string)
	}{
		{"garbage", "bad magic", func(nc net.Conn, _ []byte, _ string) {
			nc.Write([]byte("GET / HTTP/1.1\r\nHost: device\r\n\r\n"))
		}},
		{"oversized after hello", "larger than the maximum", func(nc net.Conn, key []byte, id string) {
			c, err := push.DeviceHandshake(nc, key, id, push.Version, time.Now(), 5*time.Second)
			if err != nil {
				return
			}
			// A header announcing 16 MiB; the server must not wait for, or buffer, the body.
			c.NetConn().Write([]byte{'S', 'E', push.Version, byte(push.TypeAck), 0x01, 0, 0, 0})
		}},
		{"forged ack", "authentication failed", func(nc net.Conn, _ []byte, id string) {
			push.DeviceHandshake(nc, push.Key("not the device's secret"), id, push.Version, time.Now(), 5*time.Second)
		}},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		creds := e.pair(t, ln.Addr().String())
		key := push.Key(creds.Secret)
		served := make(chan struct{})
		go func() {
			defer close(served)
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
			bad.act(nc, key, creds.DeviceID)
			// Wait for the server to give up on the connection.
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			var b [1 << 10]byte
			for {
				if _, err := nc.Read(b[:]); err != nil {
					return
				}
			}
		}()
		<-served
		ln.Close()
		if !e.logs.WaitFor(bad.reason, 10*time.Second, nil) {
			t.Fatalf("%s: no log of %q:\n%s", bad.name, bad.reason, e.logs)
		}
		dev, _ := e.m.Get(context.Background(), creds.DeviceID)
		if dev.Push == devices.PushConnected {
			t.Errorf("%s: device still connected: %+v", bad.name, dev)
		}
		// Meanwhile the good device is served.
		n := len(good.Commands())
		cmds := send(t, e, devices.Target{DeviceID: good.creds.DeviceID}, "ping", `{}`, 0)
		good.waitCommands(t, n+1)
		e.waitState(t, cmds[0].ID, storage.CommandAcknowledged)
	}
	if !strings.Contains(e.logs.String(), "push connection closed") && !strings.Contains(e.logs.String(), "cannot reach device") {
		t.Fatalf("no connection failure logged:\n%s", e.logs)
	}
}

// A command larger than a frame holds is refused when it is sent, not when it is pushed.
// At most 260 966 bytes (push-protocol.md) are taken, with the longest type, and reach the
// device.
func TestOversizedCommandIsRefused(t *testing.T) {
	e := newEnv(t)
	d := e.device(t, devicesim.Options{})
	payload := func(n int) json.RawMessage { return json.RawMessage(`{"text":"` + strings.Repeat("x", n-11) + `"}`) }
	longest := "t" + strings.Repeat("y", 31)
	target := devices.Target{DeviceID: d.creds.DeviceID}
	var inv *devices.InvalidError
	if _, err := e.m.Send(context.Background(), target, longest, payload(260_967), 0); !errors.As(err, &inv) || !strings.Contains(err.Error(), "260966") {
		t.Fatalf("a payload of 260 967 bytes: %v, want it refused with the limit", err)
	}
	cmds, err := e.m.Send(context.Background(), target, longest, payload(260_966), 0)
	if err != nil {
		t.Fatalf("a payload of 260 966 bytes: %v", err)
	}
	// The simulator refuses a type it does not know: it read the whole frame to say so.
	e.waitState(t, cmds[0].ID, storage.CommandFailed)
	if c, _ := e.db.GetCommand(context.Background(), cmds[0].ID); !strings.Contains(c.Reason, "unknown command type") {
		t.Fatalf("the command of 260 966 bytes: %+v", c)
	}
}

// A ttl outside 1s to 720h is refused with the field named; none (0) takes the default.
func TestCommandTTLBounds(t *testing.T) {
	e := newEnv(t)
	d := e.device(t, devicesim.Options{})
	target := devices.Target{DeviceID: d.creds.DeviceID}
	for _, ttl := range []time.Duration{-time.Second, time.Millisecond, 999 * time.Millisecond, 721 * time.Hour} {
		_, err := e.m.Send(context.Background(), target, "ping", nil, ttl)
		var inv *devices.InvalidError
		if !errors.As(err, &inv) || !strings.Contains(inv.Error(), "ttl") {
			t.Errorf("ttl %v: %v, want it refused", ttl, err)
		}
	}
	for _, ttl := range []time.Duration{0, time.Second, 720 * time.Hour} {
		if _, err := e.m.Send(context.Background(), target, "ping", nil, ttl); err != nil {
			t.Errorf("ttl %v: %v", ttl, err)
		}
	}
}

// A device that refuses a command (a printer out of paper, a type it does not know) gets it
// recorded as failed with its reason, in the device's words, and the next commands still come.
func TestRefusedCommandFails(t *testing.T) {
	e := newEnv(t)
	d := e.device(t, devicesim.Options{Handle: func(c devicesim.Command) error {
		if c.Type == "print" {
			return fmt.Errorf("à court de papier\r\n")
		}
		return nil
	}})
	target := devices.Target{DeviceID: d.creds.DeviceID}
	p := send(t, e, target, "print", `{}`, 0)[0]
	u := send(t, e, target, "shelf.blink", `{}`, 0)[0]
	r := send(t, e, target, "reload", `{}`, 0)[0]
	for _, want := range []struct{ id, reason string }{
		{p.ID, `refused by the device: "à court de papier\r\n"`},
		{u.ID, `refused by the device: "unknown command type"`},
	} {
		if c := e.waitState(t, want.id, storage.CommandFailed); c.Reason != want.reason {
			t.Errorf("refused command %s: reason %s, want %s", c.ID, c.Reason, want.reason)
		}
	}
	e.waitState(t, r.ID, storage.CommandAcknowledged)
	// Counted as the answers arrive, before their states are written.
	if acked, refused := e.m.PushAnswers(); acked != 1 || refused != 2 {
		t.Errorf("push answers: %d acked, %d refused; want 1 and 2", acked, refused)
	}
}

// New orders, from any source, become order.new commands for the devices that handle orders,
// and the order's ledger records the push once the device acknowledges it.
func TestNewOrdersArePushedToOrderDevices(t *testing.T) {
	e := newEnv(t)
	kitchen := e.device(t, devicesim.Options{}, devices.CapOrders)
	signage := e.device(t, devicesim.Options{})
	var ids []string
	for i, src := range []string{orders.SourceLAN, orders.SourceServiceBus} {
		o, _, err := e.db.CreateOrder(context.Background(), storage.NewOrder{
			Order:     orders.Order{Source: src, Status: orders.StatusNew, Currency: "EUR", Total: 250},
			MessageID: "m" + strconv.Itoa(i),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID)
	}
	got := kitchen.waitCommands(t, 2)
	for i, id := range ids {
		if got[i].Type != devices.CmdOrderNew || !bytes.Contains(got[i].Payload, []byte(id)) {
			t.Fatalf("command %d: %+v, want order.new of %s", i, got[i], id)
		}
	}
	for _, id := range ids {
		deadline := time.Now().Add(10 * time.Second)
		for {
			ch := e.wait()
			ledger, _ := e.db.OrderLedger(context.Background(), id)
			if last := ledger[len(ledger)-1]; last.Stage == orders.StagePushed && strings.Contains(last.Detail, kitchen.creds.DeviceID) {
				break
			}
			select {
			case <-ch:
			case <-time.After(time.Until(deadline)):
				t.Fatalf("order %s ledger %+v: no pushed stage", id, ledger)
			}
		}
	}
	if n := len(signage.Commands()); n != 0 {
		t.Fatalf("the device without the orders capability got %d commands", n)
	}
}

// A device that answers with acks for commands it was never sent, and never for the ones it was,
// loses its connection after the timeout, and the command is written again on the next one.
func TestDeviceThatNeverAcksTimesOut(t *testing.T) {
	logs := &testenv.Buffer{} // without the DEBUG line of each stray ack
	e := newEnv(t, func(o *devices.Options) {
		o.Timeout = 300 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	creds := e.pair(t, ln.Addr().String())
	cmd := send(t, e, devices.Target{DeviceID: creds.DeviceID}, "print", `{}`, 0)[0]
	writes := make(chan int, 2)
	go func() {
		for range 2 {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c, err := push.DeviceHandshake(nc, push.Key(creds.Secret), creds.DeviceID, push.Version, time.Now(), 5*time.Second)
			if err != nil {
				nc.Close()
				return
			}
			got := make(chan int, 1)
			go func() { // read the frames, count the command's
				n := 0
				for {
					f, err := c.ReadFrame()
					if err != nil {
						got <- n
						return
					}
					if f.Type == push.TypeCommand && f.ID == cmd.ID {
						n++
					}
				}
			}()
			for i := 0; ; i++ { // flood acks of other ids until the server hangs up
				if err := c.WriteFrame(push.Frame{Type: push.TypeAck, ID: fmt.Sprintf("cmd_other_%d", i)}, time.Second); err != nil {
					break
				}
			}
			nc.Close()
			writes <- <-got
		}
	}()
	for conn := range 2 {
		select {
		case n := <-writes:
			if n != 1 {
				t.Fatalf("connection %d carried the command %d times, want once", conn+1, n)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("the server kept the connection of a device that never acknowledges\n%s", logs)
		}
	}
	if !strings.Contains(logs.String(), "no acknowledgement of command "+cmd.ID) {
		t.Fatalf("no log of the timeout:\n%s", logs)
	}
	c, _ := e.db.GetCommand(context.Background(), cmd.ID)
	if c.State != storage.CommandSent || c.Attempts < 2 {
		t.Fatalf("command after two timeouts: %+v", c)
	}
}

// A device not yet updated to protocol version 2 is served, logged once at WARN, and shown with
// its version; a server that wants version 2 refuses it, and the device reads why.
func TestVersion1Devices(t *testing.T) {
	e := newEnv(t)
	old := e.device(t, devicesim.Options{PushVersion: 1})
	for range 2 {
		send(t, e, devices.Target{DeviceID: old.creds.DeviceID}, "ping", `{}`, 0)
	}
	old.waitCommands(t, 2)
	if dev, err := e.m.Get(context.Background(), old.creds.DeviceID); err != nil || dev.PushVersion != 1 {
		t.Fatalf("device %+v, %v; want push_version 1", dev, err)
	}
	// Revoked, it is still shown with the version it last connected in (openapi.yaml).
	if dev, err := e.m.Revoke(context.Background(), old.creds.DeviceID); err != nil || dev.PushVersion != 1 {
		t.Fatalf("revoked device %+v, %v; want push_version 1", dev, err)
	}
	if dev, err := e.m.Get(context.Background(), old.creds.DeviceID); err != nil || !dev.Revoked || dev.PushVersion != 1 {
		t.Fatalf("revoked device read again %+v, %v; want push_version 1", dev, err)
	}
	if n := strings.Count(e.logs.String(), "device speaks push protocol version 1"); n != 1 {
		t.Fatalf("%d warnings about version 1, want 1:\n%s", n, e.logs)
	}

	strict := newEnv(t, func(o *devices.Options) { o.MinPushVersion = 2 })
	refused := strict.device(t, devicesim.Options{PushVersion: 1})
	current := strict.device(t, devicesim.Options{})
	queued := send(t, strict, devices.Target{All: true}, "ping", `{}`, 0)
	current.waitCommands(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := refused.WaitFor(ctx, func(d *devicesim.Device) bool { return len(d.Rejections()) > 0 }); err != nil {
		t.Fatal("the version 1 device was not refused")
	}
	if r := refused.Rejections()[0]; !strings.Contains(r.Reason, "wants 2 or later") {
		t.Fatalf("the device was refused with %q", r.Reason)
	}
	for _, c := range queued {
		if c.DeviceID == refused.creds.DeviceID {
			if got, _ := strict.db.GetCommand(context.Background(), c.ID); got.State != storage.CommandQueued || len(refused.Commands()) != 0 {
				t.Fatalf("the refused device's command: %+v", got)
			}
		}
	}
}

// A device that cannot be reached is dialled again on the backoff's schedule (push-protocol.md),
// not at every command stored for it meanwhile; a heartbeat from it makes the server dial at once.
func TestUnreachableDeviceKeepsItsBackoff(t *testing.T) {
	e := newEnv(t, func(o *devices.Options) { o.RetryMin, o.RetryMax = time.Hour, time.Hour })
	// The device's push port accepts and hangs up at once: every dial fails after connecting.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dials := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			dials <- struct{}{}
		}
	}()
	creds := e.pair(t, ln.Addr().String())
	<-dials // the first dial, at pairing
	for range 5 {
		send(t, e, devices.Target{DeviceID: creds.DeviceID}, "ping", `{}`, 0)
	}
	select {
	case <-dials:
		t.Fatal("a command for a device that cannot be reached made the server dial it before its backoff ran out")
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := e.m.Heartbeat(context.Background(), creds.DeviceID, devices.Heartbeat{}, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dials:
	case <-time.After(30 * time.Second):
		t.Fatal("a heartbeat did not make the server dial the device at once")
	}
}

// readRecorder keeps the bytes read from a connection until the test reads them.
type readRecorder struct {
	net.Conn
	got []byte
}

func (r *readRecorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.got = append(r.got, b[:n]...)
	return n, err
}

// rawFrame lays out a frame as push-protocol.md describes it, in version 2, whatever its
// payload: push.Conn refuses to write one that breaks the payload rules.
func rawFrame(key, peerNonce []byte, seq uint64, typ push.Type, id string, payload []byte) []byte {
	b := []byte{'S', 'E', 2, byte(typ), 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(time.Now().UnixMilli()))
	b = append(append(append(b, byte(len(id))), id...), 0)
	b = append(b, payload...)
	binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8+32))
	m := hmac.New(sha256.New, key)
	m.Write(peerNonce)
	m.Write(b)
	return m.Sum(b)
}

// pairedListener is a listener on loopback paired as a device's push address, for a device
// the test plays itself (rawDevice); it is closed at the test's end.
func pairedListener(t *testing.T, e *env) (net.Listener, devices.Credentials) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, e.pair(t, ln.Addr().String())
}

// rawDevice is a device whose answers the test lays out byte by byte (rawFrame): it accepts the
// server's connection on ln, makes the handshake, and gives the connection, the push key and
// the server's nonce its frames are bound to. ok is false when the server never came.
func rawDevice(ln net.Listener, creds devices.Credentials) (nc net.Conn, c *push.Conn, key, serverNonce []byte, ok bool) {
	nc, err := ln.Accept()
	if err != nil {
		return nil, nil, nil, nil, false
	}
	rec := &readRecorder{Conn: nc}
	key = push.Key(creds.Secret)
	c, err = push.DeviceHandshake(rec, key, creds.DeviceID, push.Version, time.Now(), 5*time.Second)
	if err != nil {
		nc.Close()
		return nil, nil, nil, nil, false
	}
	// The server's hello came first: its nonce is its payload, before the MAC.
	hello := rec.got[:8+binary.BigEndian.Uint32(rec.got[4:8])]
	return nc, c, key, hello[len(hello)-32-16 : len(hello)-32], true
}

// An ack that carries a payload, and a nack whose reason is too long, are read all the same
// (push-protocol.md): the command is done, the nack's reason recorded cut, and the first fault of
// the connection logged with the size the device sent.
func TestAnswersBreakingThePayloadRulesAreReadAllTheSame(t *testing.T) {
	e := newEnv(t)
	ln, creds := pairedListener(t, e)
	target := devices.Target{DeviceID: creds.DeviceID}
	acked := send(t, e, target, "print", `{}`, 0)[0]
	nacked := send(t, e, target, "print", `{}`, 0)[0]
	go func() {
		nc, c, key, serverNonce, ok := rawDevice(ln, creds)
		if !ok {
			return
		}
		defer nc.Close()
		seq := uint64(2) // after the device's hello (0) and its ack of the server's (1)
		for {
			f, err := c.ReadFrame()
			if err != nil {
				return
			}
			answer := rawFrame(key, serverNonce, seq, push.TypeAck, f.ID, bytes.Repeat([]byte("a"), 200_000))
			if f.ID == nacked.ID {
				answer = rawFrame(key, serverNonce, seq, push.TypeNack, f.ID, bytes.Repeat([]byte("n"), 100_000))
			}
			seq++
			if _, err := nc.Write(answer); err != nil {
				return
			}
		}
	}()
	e.waitState(t, acked.ID, storage.CommandAcknowledged)
	e.waitState(t, nacked.ID, storage.CommandFailed)
	c, _ := e.db.GetCommand(context.Background(), nacked.ID)
	if want := "refused by the device: " + strconv.Quote(strings.Repeat("n", 200)) + "…"; c.Reason != want {
		t.Errorf("the nack's reason recorded %.80q…, want the first 200 bytes", c.Reason)
	}
	if !e.logs.WaitFor("this one has 200000 bytes", 10*time.Second, nil) {
		t.Fatalf("no log of the ack's payload:\n%s", e.logs)
	}
	if strings.Count(e.logs.String(), "breaks the push protocol") != 1 {
		t.Errorf("the faults of one connection logged other than once:\n%s", e.logs)
	}
}

// A device that acknowledges its commands and closes the connection at once (an app restarting
// after a reload): the server read the acks before it saw the end of the connection, and every
// command is acknowledged, none written again or left to expire (push-protocol.md).
func TestAcksBeforeTheDeviceClosesAreRecorded(t *testing.T) {
	e := newEnv(t)
	ln, creds := pairedListener(t, e)
	const n = 50
	var cmds []storage.Command
	for range n {
		cmds = append(cmds, send(t, e, devices.Target{DeviceID: creds.DeviceID}, "print", `{}`, 0)[0])
	}
	go func() {
		nc, c, key, serverNonce, ok := rawDevice(ln, creds)
		if !ok {
			return
		}
		defer nc.Close()
		var acks []byte
		for seq := uint64(2); seq < 2+n; seq++ {
			f, err := c.ReadFrame()
			if err != nil {
				return
			}
			acks = append(acks, rawFrame(key, serverNonce, seq, push.TypeAck, f.ID, nil)...)
		}
		nc.Write(acks) // all in one write, and the connection closed after it
	}()
	for _, cmd := range cmds {
		e.waitState(t, cmd.ID, storage.CommandAcknowledged)
	}
}

// A slow device acknowledges a command after its time to live ran out, on the connection it was
// written on: the command is acknowledged all the same, the reason saying it came late.
func TestLateAcknowledgementOnTheSameConnection(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(release) }) }
	defer done()
	d := e.device(t, devicesim.Options{Handle: func(devicesim.Command) error { <-release; return nil }})
	cmd := send(t, e, devices.Target{DeviceID: d.creds.DeviceID}, "print", `{}`, time.Second)[0]
	e.waitState(t, cmd.ID, storage.CommandSent)
	e.clock.Advance(2 * time.Second)
	if !e.logs.WaitFor("devices: commands expired", 10*time.Second, nil) {
		t.Fatalf("the command did not expire:\n%s", e.logs)
	}
	done() // the device is done with it, and acknowledges it
	if c := e.waitState(t, cmd.ID, storage.CommandAcknowledged); c.Reason != "acknowledged after its time to live ran out" {
		t.Fatalf("the command acknowledged late: %+v", c)
	}
}
