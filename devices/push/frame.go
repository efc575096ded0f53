package push

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Wire format constants; docs/push-protocol.md is their specification.
const (
	// Version is the protocol version this side speaks; MinVersion the oldest it still
	// understands. Version 2 binds the device's side of the hello exchange to the connection
	// (the device acknowledges the server's hello); version 1 does not.
	Version    = 2
	MinVersion = 1

	// MaxFrameSize bounds a whole frame, header and MAC included. A receiver reads the length
	// field first and refuses a larger frame before reading its body.
	MaxFrameSize = 256 << 10

	// MaxIDLen bounds the id field; MaxTypeLen the command type.
	MaxIDLen   = 64
	MaxTypeLen = 32

	// NonceSize is the size of each side's per-connection nonce.
	NonceSize = 16

	// MACSize is the size of the HMAC-SHA256 that ends every frame.
	MACSize = sha256.Size

	// headerSize is magic, version, type and length: the bytes read before the body.
	headerSize = 8
	// minFrameSize is a frame with a one-byte id, no command type and no payload.
	minFrameSize = headerSize + 8 + 8 + 1 + 1 + 1 + MACSize
	// MaxPayload is the largest payload that fits a frame with the longest id and type.
	MaxPayload = MaxFrameSize - headerSize - 8 - 8 - 1 - MaxIDLen - 1 - MaxTypeLen - MACSize

	// MaxReason bounds the reason a nack or an error frame carries, in bytes.
	MaxReason = 512
)

// Command types with a meaning docs/push-protocol.md documents. Others may come (an admin
// chooses the type); a device nacks one it does not know with UnknownType.
const (
	CommandOrderNew       = "order.new"
	CommandPrint          = "print"
	CommandCatalogChanged = "catalog.changed"
	CommandReload         = "reload"
	CommandPing           = "ping"

	UnknownType = "unknown command type"
)

// Reason cuts the reason of a nack or an error frame to MaxReason bytes on a character
// boundary, so that the frame carries valid UTF-8 as docs/push-protocol.md asks.
// (The package stays a leaf, readable alone: hence not internal/clip, which does the same.)
func Reason(s string) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) <= MaxReason {
		return s
	}
	cut := MaxReason - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

var magic = [2]byte{'S', 'E'}

// Type is the kind of a frame.
type Type byte

// Frame types.
const (
	TypeHello   Type = 1 // each side's first frame: its id and its nonce
	TypeCommand Type = 2 // server → device: a command to carry out
	TypeAck     Type = 3 // device → server: the command with this id is done
	TypeNack    Type = 4 // device → server: the command with this id was refused; payload says why
	TypeError   Type = 5 // either side, just before closing: payload says why
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeCommand:
		return "command"
	case TypeAck:
		return "ack"
	case TypeNack:
		return "nack"
	case TypeError:
		return "error"
	}
	return fmt.Sprintf("type(%d)", byte(t))
}

// Frame is one message on a push connection.
type Frame struct {
	// Version is the protocol version of the connection the frame belongs to; 0 is Version.
	Version byte
	Type    Type
	// Seq is the sender's frame counter on this connection: 0 for the hello, then 1, 2, 3… A
	// receiver refuses a frame whose Seq is not greater than the last one it accepted.
	Seq uint64
	// Time is when the frame was made, Unix milliseconds; for commands, when the command was
	// created (it is informational: replay protection rests on the nonces and Seq).
	Time int64
	// ID is the device or server id in a hello, the command id in a command, ack or nack.
	ID string
	// CommandType is the command's type (order.new, print, …); empty in other frames.
	CommandType string
	// Payload is the command's JSON document, a hello's nonce, a nack's or error's reason.
	Payload []byte
}

// Decoding errors. Every error of Decode and ReadFrame wraps one of them.
var (
	ErrBadMagic     = errors.New("push: not a storeedge push frame (bad magic)")
	ErrVersion      = errors.New("push: unsupported protocol version")
	ErrTooLarge     = errors.New("push: frame larger than the maximum")
	ErrMalformed    = errors.New("push: malformed frame")
	ErrBadMAC       = errors.New("push: frame authentication failed")
	ErrReplay       = errors.New("push: frame sequence number not increasing (replay)")
	ErrUnknownType  = errors.New("push: unknown frame type")
	ErrFieldTooLong = errors.New("push: field too long")
)

// Key derives the push key of a device from its secret: HMAC-SHA256 keyed with the secret's
// ASCII bytes over the label "storeedge/push/v1". The server stores this key, not the secret,
// so the stored push keys cannot be turned into API credentials.
func Key(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("storeedge/push/v1"))
	return m.Sum(nil)
}

// checkFields checks what Encode would otherwise have to refuse.
func (f *Frame) checkFields() error {
	switch {
	case f.Version != 0 && (f.Version < MinVersion || f.Version > Version):
		return fmt.Errorf("%w %d (this side speaks %d to %d)", ErrVersion, f.Version, MinVersion, Version)
	case f.Type < TypeHello || f.Type > TypeError:
		return fmt.Errorf("%w %d", ErrUnknownType, f.Type)
	case len(f.ID) == 0:
		return fmt.Errorf("%w: empty id", ErrMalformed)
	case len(f.ID) > MaxIDLen:
		return fmt.Errorf("%w: id of %d bytes, at most %d", ErrFieldTooLong, len(f.ID), MaxIDLen)
	case !printable(f.ID):
		return fmt.Errorf("%w: id holds bytes other than visible ASCII", ErrMalformed)
	case len(f.CommandType) > MaxTypeLen:
		return fmt.Errorf("%w: command type of %d bytes, at most %d", ErrFieldTooLong, len(f.CommandType), MaxTypeLen)
	case !printable(f.CommandType):
		return fmt.Errorf("%w: command type holds bytes other than visible ASCII", ErrMalformed)
	case (f.Type == TypeCommand) != (f.CommandType != ""):
		return fmt.Errorf("%w: a command frame, and only a command frame, has a command type", ErrMalformed)
	}
	if n := f.size(); n > MaxFrameSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, n, MaxFrameSize)
	}
	return nil
}

// PayloadFault says how f's payload breaks the protocol's rules for its type (an ack's is empty,
// a nack's or an error's reason is UTF-8 of at most MaxReason bytes), or "". This side never
// sends such a frame; one received is read all the same, as it reads (a device would otherwise
// have its command written again at every reconnection, never answered), and the receiver
// tells its log.
func (f *Frame) PayloadFault() string {
	switch {
	case f.Type == TypeAck && len(f.Payload) != 0:
		return fmt.Sprintf("an ack has no payload, this one has %d bytes", len(f.Payload))
	case (f.Type == TypeNack || f.Type == TypeError) && len(f.Payload) > MaxReason:
		return fmt.Sprintf("a reason of %d bytes, at most %d", len(f.Payload), MaxReason)
	case (f.Type == TypeNack || f.Type == TypeError) && !utf8.Valid(f.Payload):
		return "a reason that is not UTF-8"
	}
	return ""
}

func (f *Frame) version() byte {
	if f.Version == 0 {
		return Version
	}
	return f.Version
}

func (f *Frame) size() int {
	return headerSize + 8 + 8 + 1 + len(f.ID) + 1 + len(f.CommandType) + len(f.Payload) + MACSize
}

// Append encodes f, authenticated with key for the receiver whose nonce is peerNonce, onto b.
func (f *Frame) Append(b []byte, key, peerNonce []byte) ([]byte, error) {
	if err := f.checkFields(); err != nil {
		return b, err
	}
	if msg := f.PayloadFault(); msg != "" {
		return b, fmt.Errorf("%w: %s", ErrMalformed, msg)
	}
	start := len(b)
	b = append(b, magic[0], magic[1], f.version(), byte(f.Type))
	b = binary.BigEndian.AppendUint32(b, uint32(f.size()-headerSize))
	b = binary.BigEndian.AppendUint64(b, f.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(f.Time))
	b = append(b, byte(len(f.ID)))
	b = append(b, f.ID...)
	b = append(b, byte(len(f.CommandType)))
	b = append(b, f.CommandType...)
	b = append(b, f.Payload...)
	return append(b, mac(key, peerNonce, b[start:])...), nil
}

// Encode is Append to a new slice.
func (f *Frame) Encode(key, peerNonce []byte) ([]byte, error) {
	return f.Append(make([]byte, 0, f.size()), key, peerNonce)
}

// mac is HMAC-SHA256(key, peerNonce ‖ frame bytes before the MAC). A nil peerNonce counts as
// NonceSize zero bytes (a hello sent before the peer's nonce is known).
func mac(key, peerNonce, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	if peerNonce == nil {
		peerNonce = make([]byte, NonceSize)
	}
	m.Write(peerNonce)
	m.Write(body)
	return m.Sum(nil)
}

// FrameLen reads the header of a frame and returns the frame's total size, so that a reader
// knows how much to read, or refuses it, before reading the body.
func FrameLen(header []byte) (int, error) {
	if len(header) < headerSize {
		return 0, fmt.Errorf("%w: %d header bytes, want %d", ErrMalformed, len(header), headerSize)
	}
	if header[0] != magic[0] || header[1] != magic[1] {
		return 0, fmt.Errorf("%w: % x", ErrBadMagic, header[:2])
	}
	if header[2] < MinVersion || header[2] > Version {
		return 0, fmt.Errorf("%w %d (this side speaks %d to %d)", ErrVersion, header[2], MinVersion, Version)
	}
	if t := Type(header[3]); t < TypeHello || t > TypeError {
		return 0, fmt.Errorf("%w %d", ErrUnknownType, header[3])
	}
	n := uint64(binary.BigEndian.Uint32(header[4:8])) + headerSize
	if n > MaxFrameSize {
		return 0, fmt.Errorf("%w: %d bytes announced, at most %d", ErrTooLarge, n, MaxFrameSize)
	}
	if n < minFrameSize {
		return 0, fmt.Errorf("%w: %d bytes announced, at least %d", ErrMalformed, n, minFrameSize)
	}
	return int(n), nil
}

// Decode parses one whole frame and checks its MAC with key for this side's nonce (nil: the
// zero nonce of a hello). It never keeps b: the Payload is a copy.
func Decode(b, key, ownNonce []byte) (Frame, error) {
	var f Frame
	n, err := FrameLen(b)
	if err != nil {
		return f, err
	}
	if n != len(b) {
		return f, fmt.Errorf("%w: length field says %d bytes, frame has %d", ErrMalformed, n, len(b))
	}
	body, sum := b[:n-MACSize], b[n-MACSize:]
	if !hmac.Equal(sum, mac(key, ownNonce, body)) {
		return f, ErrBadMAC
	}
	f.Version, f.Type = b[2], Type(b[3])
	p := body[headerSize:]
	f.Seq = binary.BigEndian.Uint64(p)
	f.Time = int64(binary.BigEndian.Uint64(p[8:]))
	p = p[16:]
	idLen := int(p[0])
	p = p[1:]
	if idLen == 0 || idLen > MaxIDLen || idLen+1 > len(p) {
		return f, fmt.Errorf("%w: id length %d", ErrMalformed, idLen)
	}
	f.ID = string(p[:idLen])
	p = p[idLen:]
	typeLen := int(p[0])
	p = p[1:]
	if typeLen > MaxTypeLen || typeLen > len(p) {
		return f, fmt.Errorf("%w: command type length %d", ErrMalformed, typeLen)
	}
	f.CommandType = string(p[:typeLen])
	if len(p) > typeLen {
		f.Payload = append([]byte(nil), p[typeLen:]...)
	}
	if err := f.checkFields(); err != nil {
		return Frame{}, err
	}
	return f, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
