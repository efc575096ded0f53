package push

import (
	"bytes"
	"encoding/hex"
	"errors"
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
		if g.Type != f.Type || g.Seq != f.Seq || g.Time != f.Time || g.ID != f.ID || g.CommandType != f.CommandType || !bytes.Equal(g.Payload, f.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", g, f)
		}
	}
}

// The worked example of docs/push-protocol.md, byte for byte.
func TestWorkedExample(t *testing.T) {
	key := Key("hJ3k9Qm2Zr7Tw5Xy1Ab4Cd6Ef8Gh0Ij2Kl4Mn6Op8Q")
	if got := hex.EncodeToString(key); got != wantExampleKey {
		t.Errorf("key = %s, want %s", got, wantExampleKey)
	}
	nonce, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	f := Frame{Type: TypeCommand, Seq: 1, Time: 1764633600000, ID: "cmd_1", CommandType: "ping", Payload: []byte(`{}`)}
	b, err := f.Encode(key, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != wantExampleFrame {
		t.Errorf("frame =\n%s\nwant\n%s", got, wantExampleFrame)
	}
}

// Computed independently of this package (Python hmac/hashlib) and shown in docs/push-protocol.md.
const (
	wantExampleKey   = "1ff57649843bbf3baa7ade4092d59eac41cb27dba62c9466c4a53f2dd9a0dfb9"
	wantExampleFrame = "534501020000003d00000000000000010000019adc5be00005636d645f310470696e677b7dc9cc526a0884dbe94995bcd6fc4cc0413e5600c1d0b57febbeedccf5d1946b7c"
)

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
		{"version 2", mod(func(b []byte) []byte { b[2] = 2; return b }), testKey, ErrVersion},
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
		{"too large", Frame{Type: TypeCommand, ID: "a", CommandType: "print", Payload: make([]byte, MaxFrameSize)}, ErrTooLarge},
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
