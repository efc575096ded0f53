package push

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

var (
	testKey   = Key("s3cr3t-device-secret")
	testNonce = bytes.Repeat([]byte{0xA5}, NonceSize)
)

func TestRoundTrip(t *testing.T) {
	frames := []Frame{
		{Type: TypeHello, Seq: 0, Time: 1, ID: "dv_abc", Payload: testNonce},
		{Type: TypeCommand, Seq: 1, Time: 1764633600000, ID: "cmd_1", CommandType: "order.new", Payload: []byte(`{"id":"o1"}`)},
		{Type: TypeCommand, Seq: 2, Time: -5, ID: strings.Repeat("i", MaxIDLen), CommandType: strings.Repeat("t", MaxTypeLen)},
		{Type: TypeAck, Seq: 1 << 62, ID: "cmd_1"},
		{Type: TypeNack, Seq: 3, ID: "cmd_1", Payload: []byte("out of paper")},
		{Type: TypeError, Seq: 9, ID: "error", Payload: []byte("bad mac")},
		{Type: TypeCommand, Seq: 4, ID: "big", CommandType: "print", Payload: bytes.Repeat([]byte("x"), MaxFrameSize-headerSize-16-1-3-1-5-MACSize)},
	}
	for _, f := range frames {
		b, err := f.Encode(testKey, testNonce)
		if err != nil {
			t.Fatalf("%+v: %v", f.Type, err)
		}
		if n, err := FrameLen(b); err != nil || n != len(b) {
			t.Fatalf("FrameLen = %d, %v; frame is %d bytes", n, err, len(b))
		}
		g, err := Decode(b, testKey, testNonce)
		if err != nil {
			t.Fatalf("%s: decode: %v", f.Type, err)
		}
		if g.Version != Version || g.Type != f.Type || g.Seq != f.Seq || g.Time != f.Time || g.ID != f.ID || g.CommandType != f.CommandType || !bytes.Equal(g.Payload, f.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", g, f)
		}
	}
}

// The worked example of docs/push-protocol.md, byte for byte: the key and the five frames of a
// connection, read from the page itself.
func TestWorkedExample(t *testing.T) {
	key := Key("hJ3k9Qm2Zr7Tw5Xy1Ab4Cd6Ef8Gh0Ij2Kl4Mn6Op8Q")
	nd, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	ns, _ := hex.DecodeString("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
	const at = 1764633600000
	frames := []struct {
		name  string
		f     Frame
		nonce []byte // the receiver's
	}{
		{"device hello", Frame{Type: TypeHello, Time: at, ID: "dv_k3m9q2x7a4b5c6d7", Payload: nd}, nil},
		{"server hello", Frame{Type: TypeHello, Time: at, ID: "storeedge", Payload: ns}, nd},
		{"ack of the server hello", Frame{Type: TypeAck, Seq: 1, Time: at, ID: "storeedge"}, ns},
		{"command", Frame{Type: TypeCommand, Seq: 1, Time: at, ID: "cmd_1", CommandType: "ping", Payload: []byte(`{}`)}, nd},
		{"ack of the command", Frame{Type: TypeAck, Seq: 2, Time: at, ID: "cmd_1"}, ns},
	}
	blocks := exampleBlocks(t)
	if len(blocks) != 1+len(frames) {
		t.Fatalf("the worked example shows %d blocks of bytes, want the key and %d frames", len(blocks), len(frames))
	}
	if got := hex.EncodeToString(key); got != blocks[0] {
		t.Errorf("key = %s, the page says %s", got, blocks[0])
	}
	for i, x := range frames {
		b, err := x.f.Encode(key, x.nonce)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != blocks[1+i] {
			t.Errorf("%s =\n%s\nthe page says\n%s", x.name, got, blocks[1+i])
		}
	}
}

// exampleBlocks reads the byte blocks of the worked example in docs/push-protocol.md: each
// fenced block but the Python one, its lines' leading hex tokens joined.
func exampleBlocks(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/push-protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## Worked example")
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	parts := strings.Split(section, "```")
	for i := 1; i < len(parts); i += 2 { // inside the fences
		if strings.HasPrefix(parts[i], "python") {
			continue
		}
		var b strings.Builder
		for _, line := range strings.Split(parts[i], "\n") {
			for _, tok := range strings.Fields(line) {
				if _, err := hex.DecodeString(tok); err != nil || (len(tok) != 2 && len(tok) != 64) {
					break // the comment
				}
				b.WriteString(tok)
			}
		}
		blocks = append(blocks, b.String())
	}
	return blocks
}

func TestDecodeRefuses(t *testing.T) {
	good, err := (&Frame{Type: TypeCommand, Seq: 1, ID: "cmd_1", CommandType: "ping", Payload: []byte("{}")}).Encode(testKey, testNonce)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	resign := func(b []byte) []byte { // a frame whose MAC is right but whose fields are not
		return append(b[:len(b)-MACSize], mac(testKey, testNonce, b[:len(b)-MACSize])...)
	}
	cases := []struct {
		name string
		b    []byte
		key  []byte
		want error
	}{
		{"empty", nil, testKey, ErrMalformed},
		{"short header", good[:5], testKey, ErrMalformed},
		{"bad magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), testKey, ErrBadMagic},
		{"HTTP on the push port", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), testKey, ErrBadMagic},
		{"version 0", mod(func(b []byte) []byte { b[2] = 0; return b }), testKey, ErrVersion},
		{"version 3", mod(func(b []byte) []byte { b[2] = 3; return b }), testKey, ErrVersion},
		{"unknown type", mod(func(b []byte) []byte { b[3] = 9; return b }), testKey, ErrUnknownType},
		{"announced too large", mod(func(b []byte) []byte { b[4], b[5], b[6], b[7] = 0xff, 0xff, 0xff, 0xff; return b }), testKey, ErrTooLarge},
		{"announced too small", mod(func(b []byte) []byte { b[4], b[5], b[6], b[7] = 0, 0, 0, 3; return b }), testKey, ErrMalformed},
		{"truncated", good[:len(good)-1], testKey, ErrMalformed},
		{"trailing byte", append(append([]byte(nil), good...), 0), testKey, ErrMalformed},
		{"altered payload", mod(func(b []byte) []byte { b[len(b)-MACSize-1] ^= 1; return b }), testKey, ErrBadMAC},
		{"altered seq", mod(func(b []byte) []byte { b[15]++; return b }), testKey, ErrBadMAC},
		{"altered mac", mod(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), testKey, ErrBadMAC},
		{"forged: other key", good, Key("another device"), ErrBadMAC},
		{"id length zero", mod(func(b []byte) []byte { b[24] = 0; return resign(b) }), testKey, ErrMalformed},
		{"id length past the end", mod(func(b []byte) []byte { b[24] = 60; return resign(b) }), testKey, ErrMalformed},
		{"id not ASCII", mod(func(b []byte) []byte { b[25] = 0x01; return resign(b) }), testKey, ErrMalformed},
		{"type length past the end", mod(func(b []byte) []byte { b[30] = 31; return resign(b) }), testKey, ErrMalformed},
	}
	for _, c := range cases {
		_, err := Decode(c.b, c.key, testNonce)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// A device's nack whose reason is one byte over the limit (the MAC right) is read, as it
	// reads, with its fault named for the log; at the limit it has none.
	nack, err := (&Frame{Type: TypeNack, Seq: 2, ID: "cmd_1", Payload: bytes.Repeat([]byte("r"), MaxReason)}).Encode(testKey, testNonce)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := Decode(nack, testKey, testNonce); err != nil || f.PayloadFault() != "" {
		t.Errorf("a nack with a reason of %d bytes: %v %q", MaxReason, err, f.PayloadFault())
	}
	long := append(append(append([]byte(nil), nack[:len(nack)-MACSize]...), 'r'), make([]byte, MACSize)...)
	binary.BigEndian.PutUint32(long[4:8], uint32(len(long)-headerSize))
	if f, err := Decode(resign(long), testKey, testNonce); err != nil || len(f.Payload) != MaxReason+1 || !strings.Contains(f.PayloadFault(), "a reason of 513 bytes") {
		t.Errorf("a nack with a reason of %d bytes: %v, fault %q", MaxReason+1, err, f.PayloadFault())
	}
	// Bound to the receiver's nonce: the same bytes on another connection do not verify.
	if _, err := Decode(good, testKey, bytes.Repeat([]byte{1}, NonceSize)); !errors.Is(err, ErrBadMAC) {
		t.Errorf("frame replayed on a connection with another nonce: %v, want ErrBadMAC", err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	cases := []struct {
		name string
		f    Frame
		want error
	}{
		{"no id", Frame{Type: TypeAck}, ErrMalformed},
		{"long id", Frame{Type: TypeAck, ID: strings.Repeat("a", MaxIDLen+1)}, ErrFieldTooLong},
		{"id with space", Frame{Type: TypeAck, ID: "a b"}, ErrMalformed},
		{"long type", Frame{Type: TypeCommand, ID: "a", CommandType: strings.Repeat("t", MaxTypeLen+1)}, ErrFieldTooLong},
		{"command without type", Frame{Type: TypeCommand, ID: "a"}, ErrMalformed},
		{"ack with type", Frame{Type: TypeAck, ID: "a", CommandType: "ping"}, ErrMalformed},
		{"type 0", Frame{Type: 0, ID: "a"}, ErrUnknownType},
		{"version 3", Frame{Version: 3, Type: TypeAck, ID: "a"}, ErrVersion},
		{"too large", Frame{Type: TypeCommand, ID: "a", CommandType: "print", Payload: make([]byte, MaxFrameSize)}, ErrTooLarge},
		{"ack with a payload", Frame{Type: TypeAck, ID: "a", Payload: []byte("ok")}, ErrMalformed},
		{"long nack reason", Frame{Type: TypeNack, ID: "a", Payload: bytes.Repeat([]byte("r"), MaxReason+1)}, ErrMalformed},
		{"long error reason", Frame{Type: TypeError, ID: "error", Payload: bytes.Repeat([]byte("r"), MaxReason+1)}, ErrMalformed},
		{"nack reason not UTF-8", Frame{Type: TypeNack, ID: "a", Payload: []byte{0xff, 0xfe}}, ErrMalformed},
	}
	for _, c := range cases {
		if _, err := c.f.Encode(testKey, testNonce); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, fr := range []Frame{
		{Type: TypeHello, ID: "dv_x", Payload: testNonce},
		{Type: TypeCommand, Seq: 1, Time: 7, ID: "cmd_1", CommandType: "order.new", Payload: []byte(`{"id":"o1"}`)},
		{Type: TypeAck, Seq: 2, ID: "cmd_1"},
		{Type: TypeNack, Seq: 3, ID: "cmd_2", Payload: []byte("no paper")},
		{Version: 1, Type: TypeCommand, Seq: 1, Time: 7, ID: "cmd_1", CommandType: "ping", Payload: []byte(`{}`)},
	} {
		b, err := fr.Encode(testKey, testNonce)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("SE\x01\x02\x00\x00\x00\x00"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := FrameLen(b); err == nil && (n < minFrameSize || n > MaxFrameSize) {
			t.Fatalf("FrameLen accepted %d", n)
		}
		// Frames are authenticated before they are parsed; sign the input so the fuzzer
		// reaches the field parser too.
		for _, in := range [][]byte{b, signed(b)} {
			fr, err := Decode(in, testKey, testNonce)
			if err != nil {
				continue
			}
			again, err := fr.Encode(testKey, testNonce)
			if err != nil {
				t.Fatalf("decoded frame %+v does not encode: %v", fr, err)
			}
			if !bytes.Equal(again, in) {
				t.Fatalf("decode/encode not canonical:\n in %x\nout %x", in, again)
			}
		}
	})
}

func signed(b []byte) []byte {
	if len(b) < MACSize {
		return b
	}
	out := append([]byte(nil), b[:len(b)-MACSize]...)
	return append(out, mac(testKey, testNonce, out)...)
}
