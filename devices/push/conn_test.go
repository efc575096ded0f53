package push

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder keeps what is read from a connection: what the device sent, for a replay.
type recorder struct {
	net.Conn
	mu  sync.Mutex // protects the field below
	got bytes.Buffer
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.got.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.got.Bytes())
}

// handshake runs both sides over a pipe: the device in version, the server accepting minVersion
// and later. It returns the server's side and the device's, and what the server read.
func handshake(t *testing.T, version, minVersion int) (server, device *Conn, serverErr, deviceErr error, read []byte) {
	t.Helper()
	sc, dc := net.Pipe()
	t.Cleanup(func() { sc.Close(); dc.Close() })
	rec := &recorder{Conn: sc}
	done := make(chan struct{})
	go func() {
		defer close(done)
		device, deviceErr = DeviceHandshake(dc, testKey, "dv_1", version, time.Now(), 2*time.Second)
		if deviceErr != nil {
			dc.Close()
		}
	}()
	server, serverErr = ServerHandshake(rec, testKey, "srv", "dv_1", minVersion, time.Now(), 2*time.Second)
	if serverErr != nil {
		sc.Close()
	}
	<-done
	return server, device, serverErr, deviceErr, rec.bytes()
}

func TestHandshakeSpeaksTheDevicesVersion(t *testing.T) {
	for _, v := range []int{1, 2} {
		s, d, serr, derr, _ := handshake(t, v, MinVersion)
		if serr != nil || derr != nil {
			t.Fatalf("version %d: server %v, device %v", v, serr, derr)
		}
		if s.Version() != v || d.Version() != v {
			t.Fatalf("version %d: server speaks %d, device %d", v, s.Version(), d.Version())
		}
		// Frames flow both ways after it, in that version and with the sequence going on.
		go s.WriteFrame(Frame{Type: TypeCommand, ID: "cmd_1", CommandType: "ping", Payload: []byte(`{}`)}, time.Second)
		f, err := d.ReadFrame()
		if err != nil || f.Version != byte(v) || f.Seq != 1 {
			t.Fatalf("version %d: device read %+v, %v", v, f, err)
		}
		go d.WriteFrame(Frame{Type: TypeAck, ID: "cmd_1"}, time.Second)
		if f, err = s.ReadFrame(); err != nil || f.Type != TypeAck || f.Seq != uint64(v) {
			t.Fatalf("version %d: server read %+v, %v (the device's hello ack is seq 1 in version 2)", v, f, err)
		}
	}
}

// A frame's time is for information only (push-protocol.md): a device whose clock is decades
// off still connects, and its frames are read.
func TestFrameTimeIsNotChecked(t *testing.T) {
	sc, dc := net.Pipe()
	defer sc.Close()
	defer dc.Close()
	done := make(chan error, 1)
	var device *Conn
	go func() {
		var err error
		device, err = DeviceHandshake(dc, testKey, "dv_1", Version, time.UnixMilli(1), 2*time.Second) // 1970
		done <- err
	}()
	server, err := ServerHandshake(sc, testKey, "srv", "dv_1", MinVersion, time.Now(), 2*time.Second)
	if derr := <-done; err != nil || derr != nil {
		t.Fatalf("a device clock in 1970: server %v, device %v", err, derr)
	}
	go device.WriteFrame(Frame{Type: TypeAck, Time: 1, ID: "cmd_1"}, time.Second)
	if f, err := server.ReadFrame(); err != nil || f.Type != TypeAck || f.Time != 1 {
		t.Fatalf("the device's ack of 1970: %+v, %v", f, err)
	}
}

// A server that wants version 2 refuses a version 1 device, and tells it why.
func TestHandshakeRefusesAnOldVersion(t *testing.T) {
	_, _, serr, derr, _ := handshake(t, 1, 2)
	if !errors.Is(serr, ErrOldVersion) {
		t.Fatalf("server: %v, want ErrOldVersion", serr)
	}
	if derr == nil || !strings.Contains(derr.Error(), "wants 2 or later") {
		t.Fatalf("device: %v, want the server's reason", derr)
	}
}

// In version 2 the device's hello of an earlier connection, replayed with everything the device
// sent after it, gets the replayer nowhere: the server refuses the connection before any
// command. In version 1 it passes, as docs/push-protocol.md says.
func TestReplayedDeviceHello(t *testing.T) {
	for _, v := range []int{1, 2} {
		_, _, serr, derr, read := handshake(t, v, MinVersion)
		if serr != nil || derr != nil {
			t.Fatalf("version %d: %v, %v", v, serr, derr)
		}
		sc, attacker := net.Pipe()
		go func() {
			attacker.Write(read) // the device's hello, and in version 2 its ack of the old server hello
			var b [1 << 10]byte
			for { // drain what the server says
				if _, err := attacker.Read(b[:]); err != nil {
					return
				}
			}
		}()
		c, err := ServerHandshake(sc, testKey, "srv", "dv_1", MinVersion, time.Now(), 2*time.Second)
		sc.Close()
		attacker.Close()
		switch {
		case v == 1 && err != nil:
			t.Fatalf("version 1: the replayed hello was refused (%v); the page says it passes", err)
		case v == 2 && !errors.Is(err, ErrBadMAC):
			t.Fatalf("version 2: replayed hello: %v (connection %v), want ErrBadMAC", err, c)
		}
	}
}

// A hello that verifies but breaks a rule of the hello (its sequence number, its nonce's length)
// is refused with an error frame the device can verify: bound to the nonce it sent
// (push-protocol.md, step 6).
func TestRefusalOfAVerifiedHelloIsBoundToItsNonce(t *testing.T) {
	for _, c := range []struct {
		name  string
		seq   uint64
		nonce []byte
	}{
		{"sequence number 1", 1, bytes.Repeat([]byte{7}, NonceSize)},
		{"nonce of 8 bytes", 0, bytes.Repeat([]byte{7}, 8)},
	} {
		sc, dc := net.Pipe()
		hello := Frame{Version: Version, Type: TypeHello, Seq: c.seq, Time: 1, ID: "dv_1", Payload: c.nonce}
		b, err := hello.Encode(testKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte, 1)
		go func() {
			dc.Write(b)
			raw, err := readRaw(bufio.NewReader(dc), 0)
			if err != nil {
				t.Errorf("%s: the device read no refusal: %v", c.name, err)
			}
			got <- raw
		}()
		_, serr := ServerHandshake(sc, testKey, "srv", "dv_1", MinVersion, time.Now(), 2*time.Second)
		raw := <-got
		sc.Close()
		dc.Close()
		if !errors.Is(serr, ErrMalformed) {
			t.Errorf("%s: server: %v, want ErrMalformed", c.name, serr)
		}
		if f, err := Decode(raw, testKey, c.nonce); err != nil || f.Type != TypeError {
			t.Errorf("%s: the refusal does not verify over the device's nonce: %+v, %v", c.name, f, err)
		}
	}
}

// A device that answers the server's hello with something other than the ack of it, or with an
// ack numbered other than 1, is refused.
func TestHandshakeWantsTheHelloAck(t *testing.T) {
	for _, ack := range []Frame{
		{Type: TypeAck, ID: "cmd_1"},       // not the server's id
		{Type: TypeAck, ID: "srv", Seq: 2}, // not the device's first frame
	} {
		handshakeWithAck(t, ack)
	}
}

func handshakeWithAck(t *testing.T, ack Frame) {
	sc, dc := net.Pipe()
	defer sc.Close()
	go func() {
		defer dc.Close()
		c := &Conn{nc: dc, br: nil, version: 2, key: testKey, own: bytes.Repeat([]byte{7}, NonceSize)}
		hello := Frame{Version: 2, Type: TypeHello, ID: "dv_1", Payload: c.own}
		b, _ := hello.Encode(testKey, nil)
		dc.Write(b)
		raw := make([]byte, 1<<10)
		n, _ := dc.Read(raw)
		sh, _ := Decode(raw[:n], testKey, c.own)
		c.peer = sh.Payload
		if ack.Seq != 0 {
			c.sendSeq = ack.Seq - 1
		}
		c.WriteFrame(ack, time.Second)
		dc.Read(raw) // the error frame
	}()
	_, err := ServerHandshake(sc, testKey, "srv", "dv_1", MinVersion, time.Now(), 2*time.Second)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "ack of the server hello") {
		t.Errorf("device's first frame %s %q seq %d: err = %v", ack.Type, ack.ID, max(ack.Seq, 1), err)
	}
}

// A batch of commands larger than a slow link carries within the timeout still goes through
// while the device keeps reading: the timeout is for a write that makes no progress, not for the
// whole batch.
func TestBatchOverASlowLink(t *testing.T) {
	sc, dc := net.Pipe()
	t.Cleanup(func() { sc.Close(); dc.Close() })
	// The device reads at most 32 KiB every 100 ms: 320 KB/s, so the 800 KB batch below takes
	// 2.5 s against a timeout of 1 s.
	slow := &slowConn{Conn: dc, n: 32 << 10, every: 100 * time.Millisecond}
	var d *Conn
	var derr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		d, derr = DeviceHandshake(slow, testKey, "dv_1", 2, time.Now(), 5*time.Second)
	}()
	s, serr := ServerHandshake(sc, testKey, "srv", "dv_1", MinVersion, time.Now(), 5*time.Second)
	<-done
	if serr != nil || derr != nil {
		t.Fatalf("handshake: server %v, device %v", serr, derr)
	}
	payload := []byte(`{"data":"` + strings.Repeat("x", 100_000) + `"}`)
	frames := make([]Frame, 8)
	for i := range frames {
		frames[i] = Frame{Type: TypeCommand, ID: fmt.Sprintf("cmd_%d", i), CommandType: "show", Payload: payload}
	}
	got := make(chan error, 1)
	go func() {
		for i := range frames {
			f, err := d.ReadFrame()
			if err == nil && f.ID != frames[i].ID {
				err = fmt.Errorf("frame %d is %s", i, f.ID)
			}
			if err != nil {
				got <- err
				return
			}
		}
		got <- nil
	}()
	if err := s.WriteFrames(frames, time.Second); err != nil {
		t.Fatalf("writing 800 KB to a device reading 320 KB/s, 1 s without progress allowed: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// slowConn reads at most n bytes at a time, and waits every between reads: a slow link.
type slowConn struct {
	net.Conn
	n     int
	every time.Duration
	last  time.Time
}

func (c *slowConn) Read(b []byte) (int, error) {
	if wait := c.every - time.Since(c.last); !c.last.IsZero() && wait > 0 {
		time.Sleep(wait)
	}
	c.last = time.Now()
	return c.Conn.Read(b[:min(len(b), c.n)])
}

// A frame in another version than the connection's is refused from its header, before its body
// is read (push-protocol.md): a device cannot make the server read 256 KiB it will refuse.
func TestFrameOfAnotherVersionRefusedFromItsHeader(t *testing.T) {
	s, d, serr, derr, _ := handshake(t, 2, MinVersion)
	if serr != nil || derr != nil {
		t.Fatalf("handshake: server %v, device %v", serr, derr)
	}
	header := []byte{magic[0], magic[1], 1, byte(TypeAck), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(header[4:], MaxFrameSize-headerSize) // the body never comes
	go d.nc.Write(header)
	read := make(chan error, 1)
	go func() { _, err := s.ReadFrame(); read <- err }()
	select {
	case err := <-read:
		if !errors.Is(err, ErrVersion) {
			t.Fatalf("a version 1 frame on a version 2 connection: %v, want ErrVersion", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server waits for the body of a frame whose header has the wrong version")
	}
}
