package devicesim_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/devices/push"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	deviceID = "dv_aaaaaaaaaaaaaaaa"
	secret   = "hJ3k9Qm2Zr7Tw5Xy1Ab4Cd6Ef8Gh0Ij2Kl4Mn6Op8Q"
)

var key = push.Key(secret)

// runDevice runs a device with known credentials and no server: the test plays the server.
func runDevice(t *testing.T) *devicesim.Device {
	t.Helper()
	return runDeviceWith(t, devicesim.Options{}, true)
}

// runDeviceWith runs a device with o, paired (given its credentials) or not yet.
func runDeviceWith(t *testing.T, o devicesim.Options, paired bool) *devicesim.Device {
	t.Helper()
	o.Heartbeat = -1
	d := devicesim.New(o)
	if paired {
		d.SetCredentials(deviceID, secret)
	}
	if _, err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return d
}

// connect plays the server's side of the hello exchange with k.
func connect(t *testing.T, d *devicesim.Device, k []byte) (*push.Conn, error) {
	t.Helper()
	nc, err := net.Dial("tcp", d.PushAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return push.ServerHandshake(nc, k, "srv-test", deviceID, push.MinVersion, time.Now(), 5*time.Second)
}

func command(id string) push.Frame {
	return push.Frame{Type: push.TypeCommand, Time: time.Now().UnixMilli(), ID: id, CommandType: "print", Payload: []byte(`{"text":"x"}`)}
}

// waitRejected waits until the device has refused n connections and returns the last reason.
func waitRejected(t *testing.T, d *devicesim.Device, n int) devicesim.Rejection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitFor(ctx, func(d *devicesim.Device) bool { return len(d.Rejections()) >= n }); err != nil {
		t.Fatalf("device refused %d connections, want %d", len(d.Rejections()), n)
	}
	r := d.Rejections()
	return r[n-1]
}

// readAck reads the device's answer to a command.
func readAck(t *testing.T, c *push.Conn) push.Frame {
	t.Helper()
	c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("no ack: %v", err)
	}
	return f
}

func TestDeviceAcksGenuineCommandsOnce(t *testing.T) {
	d := runDevice(t)
	c, err := connect(t, d, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"cmd_1", "cmd_2", "cmd_1"} { // cmd_1 again: its ack was lost, say
		if err := c.WriteFrame(command(id), time.Second); err != nil {
			t.Fatal(err)
		}
		if a := readAck(t, c); a.Type != push.TypeAck || a.ID != id {
			t.Fatalf("answer %+v, want an ack of %s", a, id)
		}
	}
	if got := d.Commands(); len(got) != 2 || got[0].ID != "cmd_1" || got[1].ID != "cmd_2" || d.Duplicates() != 1 {
		t.Fatalf("device did %+v (%d duplicates)", got, d.Duplicates())
	}
}

func TestDeviceRejectsForgedAlteredReplayedAndOversized(t *testing.T) {
	d := runDevice(t)
	rejections := 0
	expect := func(what string, want error) {
		t.Helper()
		rejections++
		r := waitRejected(t, d, rejections)
		if !errors.Is(r.Err, want) {
			t.Fatalf("%s: device refused with %v, want %v", what, r.Err, want)
		}
	}

	// A rogue server that does not hold the device's key cannot even say hello.
	connectRaw(t, d, push.Key("guessed secret"))
	expect("rogue server", push.ErrBadMAC)

	// Forged: the frame's MAC is made with a wrong key.
	c2, nonce := connectRaw(t, d, key)
	b, _ := (&push.Frame{Type: push.TypeCommand, Seq: 1, ID: "cmd_forged", CommandType: "print", Payload: []byte("{}")}).Encode(push.Key("wrong"), nonce)
	c2.Write(b)
	expect("forged", push.ErrBadMAC)

	// Altered: a genuine frame with one payload byte changed.
	c3, nonce := connectRaw(t, d, key)
	b, _ = (&push.Frame{Type: push.TypeCommand, Seq: 1, ID: "cmd_altered", CommandType: "print", Payload: []byte(`{"amount":100}`)}).Encode(key, nonce)
	b[len(b)-push.MACSize-3] = '9'
	c3.Write(b)
	expect("altered", push.ErrBadMAC)

	// Replayed on the same connection: accepted once, refused the second time.
	c4, nonce := connectRaw(t, d, key)
	b, _ = (&push.Frame{Type: push.TypeCommand, Seq: 1, ID: "cmd_once", CommandType: "print", Payload: []byte("{}")}).Encode(key, nonce)
	c4.Write(b)
	c4.Write(b)
	expect("replayed on its connection", push.ErrReplay)

	// Replayed on another connection: bound to the old connection's nonce, it does not verify.
	c5, _ := connectRaw(t, d, key)
	c5.Write(b)
	expect("replayed on a new connection", push.ErrBadMAC)

	// Oversized: refused from its header, without reading the body.
	c6, _ := connectRaw(t, d, key)
	c6.Write([]byte{'S', 'E', push.Version, byte(push.TypeCommand), 0x10, 0, 0, 0})
	expect("oversized", push.ErrTooLarge)

	if got := d.Commands(); len(got) != 1 || got[0].ID != "cmd_once" {
		t.Fatalf("device did %+v, want only cmd_once", got)
	}
	for _, r := range d.Rejections() {
		if r.Reason == "" || !strings.Contains(r.Reason, "push:") {
			t.Errorf("rejection without a reason: %+v", r)
		}
	}
}

// connectRaw runs the server's hello by hand, signed with k, and returns the connection and the
// device's nonce, so that the test can write frames of its own making.
func connectRaw(t *testing.T, d *devicesim.Device, k []byte) (net.Conn, []byte) {
	t.Helper()
	nc, err := net.Dial("tcp", d.PushAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	header, err := br.Peek(8)
	if err != nil {
		t.Fatal(err)
	}
	n, err := push.FrameLen(header)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(br, raw); err != nil {
		t.Fatal(err)
	}
	// The nonce ends the hello, before its MAC.
	nonce := raw[n-push.MACSize-push.NonceSize : n-push.MACSize]
	own := make([]byte, push.NonceSize)
	b, _ := (&push.Frame{Type: push.TypeHello, ID: "srv-test", Payload: own}).Encode(k, nonce)
	nc.Write(b)
	return nc, nonce
}

// The server keeps one connection per device: once a newer one is up, the device closes the
// older and does nothing more that comes on it, so that commands are done in their order.
func TestDeviceKeepsOneConnection(t *testing.T) {
	d := runDevice(t)
	old, err := connect(t, d, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := connect(t, d, key)
	if err != nil {
		t.Fatal(err)
	}
	old.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := old.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("older connection: %v, want it closed by the device", err)
	}
	old.WriteFrame(command("cmd_stale"), time.Second)
	if err := c.WriteFrame(command("cmd_1"), time.Second); err != nil {
		t.Fatal(err)
	}
	if a := readAck(t, c); a.ID != "cmd_1" {
		t.Fatalf("answer %+v", a)
	}
	if got := d.Commands(); len(got) != 1 || got[0].ID != "cmd_1" {
		t.Fatalf("device did %+v, want only cmd_1", got)
	}
}

// The server may dial a device before it has read the answer to its pairing request: the
// device holds the connection and says hello once it has its credentials.
func TestDeviceWaitsForItsPairingAnswer(t *testing.T) {
	d := runDeviceWith(t, devicesim.Options{}, false)
	nc, err := net.Dial("tcp", d.PushAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	done := make(chan error, 1)
	go func() {
		_, err := push.ServerHandshake(nc, key, "srv-test", deviceID, push.MinVersion, time.Now(), 5*time.Second)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the device answered before it had its credentials: %v", err)
	case <-time.After(300 * time.Millisecond): // it holds the connection meanwhile
	}
	d.SetCredentials(deviceID, secret)
	if err := <-done; err != nil {
		t.Fatalf("hello after pairing: %v", err)
	}
}

// A device not yet updated speaks version 1, and a server that accepts it serves it.
func TestDeviceSpeaksVersion1(t *testing.T) {
	d := runDeviceWith(t, devicesim.Options{PushVersion: 1}, true)
	c, err := connect(t, d, key)
	if err != nil || c.Version() != 1 {
		t.Fatalf("connection %v, %v; want version 1", c, err)
	}
	if err := c.WriteFrame(command("cmd_1"), time.Second); err != nil {
		t.Fatal(err)
	}
	if a := readAck(t, c); a.ID != "cmd_1" || a.Seq != 1 || a.Version != 1 {
		t.Fatalf("answer %+v", a)
	}
}

func TestDeviceNacksUnknownTypesAndRefusalsStayRefused(t *testing.T) {
	long := strings.Repeat("é", 400) // 800 bytes: the reason must be cut on a character boundary
	d := runDeviceWith(t, devicesim.Options{Handle: func(c devicesim.Command) error {
		if string(c.Payload) == `{"text":"jam"}` {
			return errors.New(long)
		}
		return nil
	}}, true)
	c, err := connect(t, d, key)
	if err != nil {
		t.Fatal(err)
	}
	jam := command("cmd_jam")
	jam.Payload = []byte(`{"text":"jam"}`)
	odd := command("cmd_odd")
	odd.CommandType = "shelf.blink"
	for _, tc := range []struct {
		f      push.Frame
		answer push.Type
		reason string
	}{
		{odd, push.TypeNack, push.UnknownType},
		{command("cmd_ok"), push.TypeAck, ""},
		{jam, push.TypeNack, push.Reason(long)},
		{odd, push.TypeNack, push.UnknownType}, // sent again (its nack was lost): refused again
		{jam, push.TypeNack, push.Reason(long)},
	} {
		if err := c.WriteFrame(tc.f, time.Second); err != nil {
			t.Fatal(err)
		}
		a := readAck(t, c)
		if a.Type != tc.answer || a.ID != tc.f.ID || string(a.Payload) != tc.reason {
			t.Fatalf("answer to %s (%s): %s %s %q, want %s %q", tc.f.ID, tc.f.CommandType, a.Type, a.ID, a.Payload, tc.answer, tc.reason)
		}
		if len(a.Payload) > push.MaxReason || !utf8.Valid(a.Payload) {
			t.Fatalf("reason of %d bytes, valid UTF-8 %v", len(a.Payload), utf8.Valid(a.Payload))
		}
	}
	if got := d.Commands(); len(got) != 1 || got[0].ID != "cmd_ok" {
		t.Fatalf("device did %+v, want cmd_ok only", got)
	}
	if got := d.Refused(); len(got) != 2 || got[0].ID != "cmd_odd" || got[1].ID != "cmd_jam" {
		t.Fatalf("device refused %+v, want cmd_odd and cmd_jam", got)
	}

	// A device that declares more types does them.
	d2 := runDeviceWith(t, devicesim.Options{Types: append(slices.Clone(devicesim.DefaultTypes), "shelf.blink")}, true)
	c2, err := connect(t, d2, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.WriteFrame(odd, time.Second); err != nil {
		t.Fatal(err)
	}
	if a := readAck(t, c2); a.Type != push.TypeAck {
		t.Fatalf("answer %s %q, want an ack of a declared type", a.Type, a.Payload)
	}
}

// Pairing takes only the answer devices.md gives: 201, the id and secret of their shapes, and
// the token as the two joined by a dot. Any other answer fails the pairing, so that a server
// answering otherwise fails the tests that pair.
func TestPairTakesOnlyTheDocumentedAnswer(t *testing.T) {
	const secret = "hJ3k9Qm2Zr7Tw5Xy1Ab4Cd6Ef8Gh0Ij2Kl4Mn6Op8Qr" // 43 characters, as a real one (the page's example has 42)
	good := `{"device_id":"` + deviceID + `","secret":"` + secret + `","token":"` + deviceID + "." + secret + `"}`
	for _, tc := range []struct {
		name   string
		status int
		body   string
		ok     bool
	}{
		{"as devices.md gives it", http.StatusCreated, good, true},
		{"200 instead of 201", http.StatusOK, good, false},
		{"another token", http.StatusCreated, strings.Replace(good, `"token":"dv_`, `"token":"xx_`, 1), false},
		{"no token", http.StatusCreated, `{"device_id":"` + deviceID + `","secret":"` + secret + `"}`, false},
		{"a secret of another shape", http.StatusCreated, strings.ReplaceAll(good, secret, "short"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			d := devicesim.New(devicesim.Options{Server: srv.URL, Heartbeat: -1})
			defer func() { // Pair opened the push listener; a Run that is over closes it
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				d.Run(ctx)
			}()
			err := d.Pair(context.Background(), "", "enrollment")
			if (err == nil) != tc.ok {
				t.Fatalf("pairing: %v, want success %v", err, tc.ok)
			}
			if tc.ok && d.Token() != deviceID+"."+secret {
				t.Fatalf("token %q", d.Token())
			}
		})
	}
}
