package discovery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The datagram format, specified for device makers in docs/discovery.md:
//
//	offset size  field
//	0      4     magic "SEDP"
//	4      1     version (1)
//	5      1     type: 1 probe, 2 answer, 3 announce, 4 hello
//	6      …     fields, each: tag (1 byte, not 0), length (1 byte), value (length bytes)
//	…      …     padding: zero bytes up to the end of the datagram (a tag byte of 0 starts it)
//
// Numbers are big-endian. Unknown tags are skipped, so fields can be added within a version;
// the version changes only for an incompatible change, and a datagram of another version is
// dropped.

// Magic starts every discovery datagram.
const Magic = "SEDP"

// Version is the version of the datagram format this package speaks.
const Version = 1

// Size limits, in bytes of UDP payload.
const (
	// HeaderSize is the magic, version and type.
	HeaderSize = 6
	// MaxDatagramSize bounds every datagram: it fits an Ethernet frame (1500 bytes less the IPv4
	// and UDP headers), so nothing is fragmented. A receiver drops anything larger.
	MaxDatagramSize = 1472
	// MinProbeSize is the smallest probe the server answers. A probe is padded up to it so that
	// an answer, which is at most MaxAnswerSize, is never larger than the probe that asked for
	// it: a spoofed probe cannot make the server an amplifier.
	MinProbeSize = 1024
	// MaxAnswerSize bounds an answer and an announcement. The field limits below keep every
	// answer under it; the encoder checks.
	MaxAnswerSize = MinProbeSize
)

// Type is the kind of a datagram.
type Type byte

// The datagram types.
const (
	TypeProbe    Type = 1 // device → broadcast or server: who serves this shop?
	TypeAnswer   Type = 2 // server → device, unicast: the answer to one probe
	TypeAnnounce Type = 3 // server → broadcast: the same facts, unasked
	TypeHello    Type = 4 // device → server or broadcast: I am here, push to me on this port
)

func (t Type) String() string {
	switch t {
	case TypeProbe:
		return "probe"
	case TypeAnswer:
		return "answer"
	case TypeAnnounce:
		return "announce"
	case TypeHello:
		return "hello"
	}
	return fmt.Sprintf("type %d", byte(t))
}

// Field tags. One tag means the same thing in every datagram type.
const (
	tagServerID    = 0x01 // text
	tagShopID      = 0x02 // text
	tagName        = 0x03 // text: the shop's name (answer, announce) or the device's (hello)
	tagVersion     = 0x04 // text: software version of the sender
	tagURL         = 0x05 // text: the front-door URL
	tagPorts       = 0x06 // list of (service code: 1 byte, port: 2 bytes)
	tagPairing     = 0x07 // 1 byte: 1 pairing open, 0 closed
	tagTLS         = 0x08 // 32 bytes: SHA-256 of the server's TLS certificate (DER)
	tagNonce       = 0x09 // 8 bytes: chosen by the device, echoed in the answer
	tagDeviceID    = 0x0A // text
	tagDeviceKind  = 0x0B // text
	tagPushPort    = 0x0C // 2 bytes
	maxFieldLength = 255
)

// Limits of the text fields, in bytes of UTF-8.
const (
	MaxIDLen      = 64  // server id, device id
	MaxShopIDLen  = 128 // shop id
	MaxNameLen    = 255 // shop or device name; a longer shop name is cut at a character boundary
	MaxVersionLen = 64
	MaxURLLen     = 128
	MaxKindLen    = 32
	NonceSize     = 8
	TLSHashSize   = 32
)

// Service codes in the ports field.
var serviceCodes = []string{1: "front_door", 2: "catalog", 3: "media", 4: "orders", 5: "devices", 6: "events", 7: "admin"}

// Port is one TCP service the server offers, by the service's name in lan.services (or
// "front_door", which carries every service, admin only while lan.front_door_admin is true).
type Port struct {
	Service string `json:"service"`
	Port    int    `json:"port"`
}

// ProbeRequest asks the servers on the LAN who they are.
type ProbeRequest struct {
	// Nonce is echoed in the answer, so a device can tell the answers to its probe from others.
	Nonce [NonceSize]byte
	// ShopID, when not empty, asks only the server of that shop to answer.
	ShopID string
}

// ServerInfo is what an answer or an announcement says about a server.
type ServerInfo struct {
	ServerID string `json:"server_id"`
	ShopID   string `json:"shop_id"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	// URL is the front door as seen from the device's network, e.g. "http://192.168.1.10:80".
	URL         string `json:"url"`
	Ports       []Port `json:"ports"`
	PairingOpen bool   `json:"pairing_open"`
	// TLSFingerprint is the SHA-256 of the server's certificate; nil when TLS is off.
	TLSFingerprint []byte `json:"tls_fingerprint,omitempty"`
}

// Answer is a server's reply to one probe.
type Answer struct {
	ServerInfo
	Nonce [NonceSize]byte `json:"-"`
}

// Hello is a device saying it is on the LAN, so that shop IT can pair it.
type Hello struct {
	DeviceID string // required
	Kind     string // tablet, kiosk, pos, signage, printer…; free text
	Name     string
	Version  string
	PushPort int // the TCP port the device takes pushed commands on, usually 8081
}

// Datagram is one decoded datagram: Type says which of the pointers is set.
type Datagram struct {
	Type     Type
	Probe    *ProbeRequest
	Answer   *Answer // TypeAnswer
	Announce *ServerInfo
	Hello    *Hello
}

// Decoding errors. Every error from Decode wraps exactly one of them, so that the server can
// count drops by cause.
var (
	ErrNotDiscovery = errors.New("not a discovery datagram") // bad magic
	ErrTruncated    = errors.New("truncated")                // a header or field cut short
	ErrOversized    = errors.New("larger than the maximum datagram size")
	ErrVersion      = errors.New("unsupported version")
	ErrMalformed    = errors.New("malformed")
)

// encoder appends fields to a datagram.
type encoder struct {
	b   []byte
	err error
}

func newEncoder(t Type) *encoder {
	b := make([]byte, HeaderSize, 256)
	copy(b, Magic)
	b[4], b[5] = Version, byte(t)
	return &encoder{b: b}
}

func (e *encoder) field(tag byte, v []byte) {
	if len(v) > maxFieldLength {
		e.err = fmt.Errorf("discovery: encode: field %#02x: %d bytes, at most %d", tag, len(v), maxFieldLength)
		return
	}
	e.b = append(e.b, tag, byte(len(v)))
	e.b = append(e.b, v...)
}

func (e *encoder) text(tag byte, s string, max int, required bool) {
	if s == "" && !required {
		return
	}
	if err := checkText(s, max, required); err != nil {
		e.err = fmt.Errorf("discovery: encode: field %#02x: %w", tag, err)
		return
	}
	e.field(tag, []byte(s))
}

func (e *encoder) u16(tag byte, n int) {
	if n < 1 || n > 65535 {
		e.err = fmt.Errorf("discovery: encode: field %#02x: port %d out of range", tag, n)
		return
	}
	e.field(tag, binary.BigEndian.AppendUint16(nil, uint16(n)))
}

// EncodeProbe returns a probe padded to MinProbeSize.
func EncodeProbe(p ProbeRequest) ([]byte, error) {
	e := newEncoder(TypeProbe)
	e.field(tagNonce, p.Nonce[:])
	e.text(tagShopID, p.ShopID, MaxShopIDLen, false)
	if e.err != nil {
		return nil, e.err
	}
	return append(e.b, make([]byte, MinProbeSize-len(e.b))...), nil
}

// EncodeAnswer returns the answer to the probe with nonce.
func EncodeAnswer(info ServerInfo, nonce [NonceSize]byte) ([]byte, error) {
	e := newEncoder(TypeAnswer)
	e.field(tagNonce, nonce[:])
	return e.serverInfo(info)
}

// EncodeAnnounce returns an announcement.
func EncodeAnnounce(info ServerInfo) ([]byte, error) {
	return newEncoder(TypeAnnounce).serverInfo(info)
}

func (e *encoder) serverInfo(info ServerInfo) ([]byte, error) {
	e.text(tagServerID, info.ServerID, MaxIDLen, true)
	e.text(tagShopID, info.ShopID, MaxShopIDLen, false)
	e.text(tagName, TruncateText(info.Name, MaxNameLen), MaxNameLen, true)
	e.text(tagVersion, info.Version, MaxVersionLen, false)
	e.text(tagURL, info.URL, MaxURLLen, true)
	var ports []byte
	for _, p := range info.Ports {
		code := serviceCode(p.Service)
		if code == 0 || p.Port < 1 || p.Port > 65535 {
			e.err = fmt.Errorf("discovery: encode: port %q %d: unknown service or out of range", p.Service, p.Port)
			break
		}
		ports = append(ports, code, byte(p.Port>>8), byte(p.Port))
	}
	if len(ports) > 0 {
		e.field(tagPorts, ports)
	}
	pairing := byte(0)
	if info.PairingOpen {
		pairing = 1
	}
	e.field(tagPairing, []byte{pairing})
	switch len(info.TLSFingerprint) {
	case 0:
	case TLSHashSize:
		e.field(tagTLS, info.TLSFingerprint)
	default:
		e.err = fmt.Errorf("discovery: encode: TLS fingerprint of %d bytes, want %d", len(info.TLSFingerprint), TLSHashSize)
	}
	if e.err != nil {
		return nil, e.err
	}
	if len(e.b) > MaxAnswerSize {
		return nil, fmt.Errorf("discovery: encode: %s of %d bytes, at most %d", Type(e.b[5]), len(e.b), MaxAnswerSize)
	}
	return e.b, nil
}

// EncodeHello returns a hello datagram.
func EncodeHello(h Hello) ([]byte, error) {
	e := newEncoder(TypeHello)
	e.text(tagDeviceID, h.DeviceID, MaxIDLen, true)
	e.text(tagDeviceKind, h.Kind, MaxKindLen, false)
	e.text(tagName, h.Name, MaxNameLen, false)
	e.text(tagVersion, h.Version, MaxVersionLen, false)
	e.u16(tagPushPort, h.PushPort)
	if e.err != nil {
		return nil, e.err
	}
	return e.b, nil
}

func serviceCode(name string) byte {
	for i, n := range serviceCodes {
		if n != "" && n == name {
			return byte(i)
		}
	}
	return 0
}

// checkText is the rule for every text field: valid UTF-8, no control characters, not too long.
func checkText(s string, max int, required bool) error {
	switch {
	case s == "" && required:
		return errors.New("empty")
	case len(s) > max:
		return fmt.Errorf("%d bytes, at most %d", len(s), max)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains control characters")
	}
	return nil
}

// TruncateText cuts s to at most n bytes at a character boundary.
func TruncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Decode reads one datagram. Its error wraps ErrNotDiscovery, ErrTruncated, ErrOversized,
// ErrVersion or ErrMalformed and says what is wrong. Decode does not check sizes against
// MinProbeSize: whether to answer is the server's decision.
func Decode(b []byte) (Datagram, error) {
	var d Datagram
	switch {
	case len(b) > MaxDatagramSize:
		return d, fmt.Errorf("discovery: %d bytes: %w (%d)", len(b), ErrOversized, MaxDatagramSize)
	case len(b) < len(Magic) && string(b) == Magic[:len(b)]:
		return d, fmt.Errorf("discovery: %d bytes: %w header", len(b), ErrTruncated)
	case len(b) < len(Magic) || string(b[:4]) != Magic:
		return d, fmt.Errorf("discovery: %w: bad magic", ErrNotDiscovery)
	case len(b) < HeaderSize:
		return d, fmt.Errorf("discovery: %d bytes: %w header", len(b), ErrTruncated)
	case b[4] != Version:
		return d, fmt.Errorf("discovery: version %d: %w (want %d)", b[4], ErrVersion, Version)
	}
	d.Type = Type(b[5])
	switch d.Type {
	case TypeProbe, TypeAnswer, TypeAnnounce, TypeHello:
	default: // whatever follows: the type says it is none of ours
		return Datagram{}, fmt.Errorf("discovery: %s: %w: unknown type", d.Type, ErrMalformed)
	}
	f, err := splitFields(b[HeaderSize:])
	if err != nil {
		return Datagram{}, fmt.Errorf("discovery: %s: %w", d.Type, err)
	}
	switch d.Type {
	case TypeProbe:
		d.Probe, err = decodeProbe(f)
	case TypeAnswer:
		d.Answer, err = decodeAnswer(f)
	case TypeAnnounce:
		d.Announce, err = decodeServerInfo(f)
	case TypeHello:
		d.Hello, err = decodeHello(f)
	}
	if err != nil {
		return Datagram{}, fmt.Errorf("discovery: %s: %w", d.Type, err)
	}
	return d, nil
}

// fields holds the value of each known tag present, by tag.
type fields [tagPushPort + 1][]byte

func splitFields(b []byte) (*fields, error) {
	var f fields
	var seen [256]bool
	for len(b) > 0 {
		tag := b[0]
		if tag == 0 {
			for _, c := range b {
				if c != 0 {
					return nil, fmt.Errorf("%w: non-zero byte in the padding", ErrMalformed)
				}
			}
			break
		}
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: field %#02x has no length", ErrTruncated, tag)
		}
		n := int(b[1])
		if len(b) < 2+n {
			return nil, fmt.Errorf("%w: field %#02x wants %d bytes, %d left", ErrTruncated, tag, n, len(b)-2)
		}
		if seen[tag] {
			return nil, fmt.Errorf("%w: field %#02x given twice", ErrMalformed, tag)
		}
		seen[tag] = true
		if int(tag) < len(f) {
			f[tag] = b[2 : 2+n]
		}
		b = b[2+n:]
	}
	return &f, nil
}

func (f *fields) text(tag byte, max int, required bool) (string, error) {
	v := f[tag]
	if err := checkText(string(v), max, required); err != nil {
		return "", fmt.Errorf("%w: field %#02x: %v", ErrMalformed, tag, err)
	}
	return string(v), nil
}

func (f *fields) fixed(tag byte, size int, required bool) ([]byte, error) {
	v := f[tag]
	switch {
	case v == nil && !required:
		return nil, nil
	case v == nil:
		return nil, fmt.Errorf("%w: field %#02x missing", ErrMalformed, tag)
	case len(v) != size:
		return nil, fmt.Errorf("%w: field %#02x is %d bytes, want %d", ErrMalformed, tag, len(v), size)
	}
	return v, nil
}

func decodeProbe(f *fields) (*ProbeRequest, error) {
	var p ProbeRequest
	nonce, err := f.fixed(tagNonce, NonceSize, true)
	if err != nil {
		return nil, err
	}
	copy(p.Nonce[:], nonce)
	if p.ShopID, err = f.text(tagShopID, MaxShopIDLen, false); err != nil {
		return nil, err
	}
	return &p, nil
}

func decodeAnswer(f *fields) (*Answer, error) {
	nonce, err := f.fixed(tagNonce, NonceSize, true)
	if err != nil {
		return nil, err
	}
	info, err := decodeServerInfo(f)
	if err != nil {
		return nil, err
	}
	a := &Answer{ServerInfo: *info}
	copy(a.Nonce[:], nonce)
	return a, nil
}

func decodeServerInfo(f *fields) (*ServerInfo, error) {
	var info ServerInfo
	var err error
	for _, t := range []struct {
		dst      *string
		tag      byte
		max      int
		required bool
	}{
		{&info.ServerID, tagServerID, MaxIDLen, true},
		{&info.ShopID, tagShopID, MaxShopIDLen, false},
		{&info.Name, tagName, MaxNameLen, true},
		{&info.Version, tagVersion, MaxVersionLen, false},
		{&info.URL, tagURL, MaxURLLen, true},
	} {
		if *t.dst, err = f.text(t.tag, t.max, t.required); err != nil {
			return nil, err
		}
	}
	ports := f[tagPorts]
	if len(ports)%3 != 0 {
		return nil, fmt.Errorf("%w: ports field of %d bytes, want a multiple of 3", ErrMalformed, len(ports))
	}
	for i := 0; i < len(ports); i += 3 {
		code, port := int(ports[i]), int(binary.BigEndian.Uint16(ports[i+1:]))
		if port == 0 {
			return nil, fmt.Errorf("%w: port 0 in the ports field", ErrMalformed)
		}
		if code < len(serviceCodes) && serviceCodes[code] != "" {
			info.Ports = append(info.Ports, Port{Service: serviceCodes[code], Port: port})
		}
	}
	pairing, err := f.fixed(tagPairing, 1, false)
	if err != nil {
		return nil, err
	}
	if pairing != nil && pairing[0] > 1 {
		return nil, fmt.Errorf("%w: pairing field is %d, want 0 or 1", ErrMalformed, pairing[0])
	}
	info.PairingOpen = pairing != nil && pairing[0] == 1
	tls, err := f.fixed(tagTLS, TLSHashSize, false)
	if err != nil {
		return nil, err
	}
	if tls != nil {
		info.TLSFingerprint = append([]byte(nil), tls...)
	}
	return &info, nil
}

func decodeHello(f *fields) (*Hello, error) {
	var h Hello
	var err error
	if h.DeviceID, err = f.text(tagDeviceID, MaxIDLen, true); err != nil {
		return nil, err
	}
	if h.Kind, err = f.text(tagDeviceKind, MaxKindLen, false); err != nil {
		return nil, err
	}
	if h.Name, err = f.text(tagName, MaxNameLen, false); err != nil {
		return nil, err
	}
	if h.Version, err = f.text(tagVersion, MaxVersionLen, false); err != nil {
		return nil, err
	}
	port, err := f.fixed(tagPushPort, 2, true)
	if err != nil {
		return nil, err
	}
	if h.PushPort = int(binary.BigEndian.Uint16(port)); h.PushPort == 0 {
		return nil, fmt.Errorf("%w: push port 0", ErrMalformed)
	}
	return &h, nil
}
