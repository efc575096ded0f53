package push

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// deviceStream is the device's end of a connection the server dialed, played from fuzz input:
// the frames the device sends, each re-signed (when sign is set) with the nonce it would be
// bound to, so that the fuzzer reaches past the MAC: the first frame (the hello) with the zero
// nonce, the others with the nonce of the server's hello, known once the server wrote it.
type deviceStream struct {
	frames  [][]byte
	sign    bool
	in      bytes.Buffer // what the server reads next
	written []byte       // what the server wrote
	sent    int          // frames of frames moved to in
}

// splitFrames cuts a stream where its headers say frames end; what cannot be cut is one last
// piece.
func splitFrames(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n, err := FrameLen(b)
		if err != nil || n > len(b) {
			return append(out, b)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func (d *deviceStream) resign(frame, nonce []byte) []byte {
	if !d.sign || len(frame) < MACSize {
		return frame
	}
	out := bytes.Clone(frame[:len(frame)-MACSize])
	return append(out, mac(testKey, nonce, out)...)
}

// serverNonce is the nonce of the server's hello, once the server wrote one.
func (d *deviceStream) serverNonce() []byte {
	hello, err := Decode(d.resign(d.frames[0], nil), testKey, nil)
	if err != nil {
		return nil
	}
	written := splitFrames(d.written)
	if len(written) == 0 {
		return nil
	}
	f, err := Decode(written[0], testKey, hello.Payload)
	if err != nil || f.Type != TypeHello {
		return nil
	}
	return f.Payload
}

func (d *deviceStream) Read(b []byte) (int, error) {
	if d.in.Len() == 0 && d.sent < len(d.frames) {
		if d.sent == 0 {
			d.in.Write(d.resign(d.frames[0], nil))
			d.sent = 1
		} else if nonce := d.serverNonce(); nonce != nil {
			for ; d.sent < len(d.frames); d.sent++ {
				d.in.Write(d.resign(d.frames[d.sent], nonce))
			}
		}
	}
	if d.in.Len() == 0 {
		return 0, io.EOF
	}
	return d.in.Read(b)
}

func (d *deviceStream) Write(b []byte) (int, error) {
	d.written = append(d.written, b...)
	return len(b), nil
}

func (d *deviceStream) Close() error                     { return nil }
func (d *deviceStream) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (d *deviceStream) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (d *deviceStream) SetDeadline(time.Time) error      { return nil }
func (d *deviceStream) SetReadDeadline(time.Time) error  { return nil }
func (d *deviceStream) SetWriteDeadline(time.Time) error { return nil }

// FuzzServerHandshake feeds the server's side of a connection what a device sends: the hello,
// its acknowledgement and the frames after it. The server must never panic, must accept the
// connection only from the device it meant to reach after a valid exchange, and then read only
// authenticated frames in order.
func FuzzServerHandshake(f *testing.F) {
	now := time.UnixMilli(1_764_000_000_000)
	encode := func(fr Frame, nonce []byte) []byte {
		b, err := fr.Encode(testKey, nonce)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	for _, version := range []byte{1, 2} {
		stream := encode(Frame{Version: version, Type: TypeHello, Time: 1, ID: "dv_x", Payload: testNonce}, nil)
		seq := uint64(1)
		// The harness re-signs the frames after the hello with the server's nonce.
		if version == 2 {
			stream = append(stream, encode(Frame{Version: version, Type: TypeAck, Seq: seq, Time: 2, ID: "srv_1"}, testNonce)...)
			seq++
		}
		nack := Frame{Version: version, Type: TypeNack, Seq: seq, Time: 3, ID: "cmd_1", Payload: []byte("no paper")}
		stream = append(stream, encode(nack, testNonce)...)
		// The harness must let a valid exchange through, or the fuzzer would test refusals only.
		d := &deviceStream{frames: splitFrames(stream), sign: true}
		if c, err := ServerHandshake(d, testKey, "srv_1", "dv_x", MinVersion, now, time.Second); err != nil {
			f.Fatalf("version %d: the harness's valid exchange was refused: %v", version, err)
		} else if fr, err := c.ReadFrame(); err != nil || fr.Type != TypeNack {
			f.Fatalf("version %d: after the exchange, read %+v, %v", version, fr, err)
		}
		f.Add(stream, true)
	}
	f.Add(encode(Frame{Version: 2, Type: TypeHello, Time: 1, ID: "dv_other", Payload: testNonce}, nil), true)
	f.Add([]byte("SE\x02\x01\x00\x00\x00\x00"), false)
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, stream []byte, sign bool) {
		if len(stream) == 0 {
			return
		}
		d := &deviceStream{frames: splitFrames(stream), sign: sign}
		c, err := ServerHandshake(d, testKey, "srv_1", "dv_x", MinVersion, now, time.Second)
		if (c == nil) == (err == nil) {
			t.Fatalf("ServerHandshake returned %v and %v", c, err)
		}
		if err != nil {
			// A refusal of what the device sent (not a connection that ended) is told in an error
			// frame, the last thing the server wrote, bound to the device's nonce when its hello
			// verified and to zero bytes otherwise (docs/push-protocol.md).
			if IsConnError(err) {
				return
			}
			written := splitFrames(d.written)
			if len(written) == 0 {
				t.Fatalf("refusal (%v) not told to the device", err)
			}
			if fr, derr := decodeAny(written[len(written)-1], d.resign(d.frames[0], nil)); derr != nil || fr.Type != TypeError {
				t.Fatalf("refusal (%v) sent as %+v (%v), not an error frame the device can verify", err, fr, derr)
			}
			return
		}
		hello, herr := Decode(d.resign(d.frames[0], nil), testKey, nil)
		if herr != nil || hello.Type != TypeHello || hello.ID != "dv_x" || hello.Seq != 0 || len(hello.Payload) != NonceSize {
			t.Fatalf("accepted the connection after a first frame %+v (%v)", hello, herr)
		}
		if c.Version() != int(hello.Version) || c.PeerID != "dv_x" {
			t.Fatalf("connection of version %d from %q after a hello %+v", c.Version(), c.PeerID, hello)
		}
		nonce := d.serverNonce()
		if nonce == nil {
			t.Fatalf("accepted without a server hello the device can verify: %x", d.written)
		}
		if c.Version() >= 2 {
			if len(d.frames) < 2 {
				t.Fatal("version 2 accepted without the acknowledgement of the server hello")
			}
			ack, aerr := Decode(d.resign(d.frames[1], nonce), testKey, nonce)
			if aerr != nil || ack.Type != TypeAck || ack.ID != "srv_1" || ack.Seq != 1 {
				t.Fatalf("version 2 accepted after %+v (%v)", ack, aerr)
			}
		}
		last := uint64(0)
		if c.Version() >= 2 {
			last = 1
		}
		for range len(d.frames) {
			fr, err := c.ReadFrame()
			if err != nil {
				return
			}
			if fr.Type == TypeHello || fr.Seq <= last {
				t.Fatalf("read %+v after sequence number %d", fr, last)
			}
			last = fr.Seq
		}
	})
}

// decodeAny decodes a frame the server wrote, bound to the nonce of the device's hello when
// that verified, else to the zero nonce.
func decodeAny(frame, hello []byte) (Frame, error) {
	if h, err := Decode(hello, testKey, nil); err == nil {
		if fr, err := Decode(frame, testKey, h.Payload); err == nil {
			return fr, nil
		}
	}
	return Decode(frame, testKey, nil)
}
