package discovery

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func testInfo() ServerInfo {
	return ServerInfo{
		ServerID: "storeedge-shop1",
		ShopID:   "FR-0042",
		Name:     "Boulangerie Dupré",
		Version:  "1.4.0",
		URL:      "http://192.168.1.10:80",
		Ports: []Port{
			{"front_door", 80}, {"catalog", 8000}, {"media", 8001}, {"orders", 8002},
			{"devices", 8003}, {"events", 8004}, {"admin", 8005},
		},
		PairingOpen: true,
	}
}

func TestRoundTrip(t *testing.T) {
	nonce := [NonceSize]byte{1, 2, 3, 4, 5, 6, 7, 8}
	info := testInfo()
	withTLS := info
	withTLS.TLSFingerprint = bytes.Repeat([]byte{0xab}, TLSHashSize)

	probe, err := EncodeProbe(ProbeRequest{Nonce: nonce, ShopID: "FR-0042"})
	if err != nil {
		t.Fatal(err)
	}
	if len(probe) != MinProbeSize {
		t.Errorf("probe is %d bytes, want padded to %d", len(probe), MinProbeSize)
	}
	d, err := Decode(probe)
	if err != nil || d.Type != TypeProbe || d.Probe.Nonce != nonce || d.Probe.ShopID != "FR-0042" {
		t.Errorf("probe: %+v, %v", d.Probe, err)
	}

	for _, in := range []ServerInfo{info, withTLS} {
		b, err := EncodeAnswer(in, nonce)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(b)
		if err != nil || d.Type != TypeAnswer {
			t.Fatalf("answer: %v", err)
		}
		if !reflect.DeepEqual(d.Answer.ServerInfo, in) || d.Answer.Nonce != nonce {
			t.Errorf("answer = %+v, want %+v", d.Answer, in)
		}
		b, err = EncodeAnnounce(in)
		if err != nil {
			t.Fatal(err)
		}
		d, err = Decode(b)
		if err != nil || d.Type != TypeAnnounce || !reflect.DeepEqual(*d.Announce, in) {
			t.Errorf("announce = %+v, %v", d.Announce, err)
		}
	}

	h := Hello{DeviceID: "tab-07", Kind: "tablet", Name: "Caisse 2", Version: "3.1", PushPort: 8081}
	b, err := EncodeHello(h)
	if err != nil {
		t.Fatal(err)
	}
	d, err = Decode(b)
	if err != nil || d.Type != TypeHello || *d.Hello != h {
		t.Errorf("hello = %+v, %v", d.Hello, err)
	}
}

// The largest answer the field limits allow still fits in MaxAnswerSize, which is what makes
// "an answer is never larger than the probe" hold.
func TestLargestAnswerFits(t *testing.T) {
	info := ServerInfo{
		ServerID:       strings.Repeat("s", MaxIDLen),
		ShopID:         strings.Repeat("p", MaxShopIDLen),
		Name:           strings.Repeat("é", 400), // cut to MaxNameLen at a character boundary
		Version:        strings.Repeat("v", MaxVersionLen),
		URL:            "http://" + strings.Repeat("u", MaxURLLen-7),
		Ports:          testInfo().Ports,
		PairingOpen:    true,
		TLSFingerprint: make([]byte, TLSHashSize),
	}
	b, err := EncodeAnswer(info, [NonceSize]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxAnswerSize || MaxAnswerSize > MinProbeSize {
		t.Errorf("largest answer %d bytes, MaxAnswerSize %d, MinProbeSize %d", len(b), MaxAnswerSize, MinProbeSize)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.Answer.Name); n > MaxNameLen || n < MaxNameLen-1 || !strings.HasPrefix(info.Name, d.Answer.Name) {
		t.Errorf("name cut to %d bytes", n)
	}
}

func TestEncodeRefuses(t *testing.T) {
	for name, info := range map[string]ServerInfo{
		"no server id":  {Name: "x", URL: "http://a:80"},
		"no name":       {ServerID: "x", URL: "http://a:80"},
		"no url":        {ServerID: "x", Name: "x"},
		"control chars": {ServerID: "x\n", Name: "x", URL: "http://a:80"},
		"bad port":      {ServerID: "x", Name: "x", URL: "http://a:80", Ports: []Port{{"catalog", 0}}},
		"bad service":   {ServerID: "x", Name: "x", URL: "http://a:80", Ports: []Port{{"push", 8081}}},
		"short tls":     {ServerID: "x", Name: "x", URL: "http://a:80", TLSFingerprint: []byte{1}},
		"long id":       {ServerID: strings.Repeat("x", MaxIDLen+1), Name: "x", URL: "http://a:80"},
	} {
		if _, err := EncodeAnnounce(info); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	if _, err := EncodeHello(Hello{DeviceID: "d", PushPort: 0}); err == nil {
		t.Error("hello without push port encoded")
	}
	if _, err := EncodeHello(Hello{PushPort: 8081}); err == nil {
		t.Error("hello without device id encoded")
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	hello, _ := EncodeHello(Hello{DeviceID: "d", PushPort: 8081})
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"magic prefix", []byte("SED"), ErrTruncated},
		{"not ours", []byte("GET / HTTP/1.1\r\n"), ErrNotDiscovery},
		{"dns", mustHex("1234 0100 0001 0000 0000 0000"), ErrNotDiscovery},
		{"header cut", []byte("SEDP\x01"), ErrTruncated},
		{"version 2", []byte("SEDP\x02\x01"), ErrVersion},
		{"version 0", []byte("SEDP\x00\x01"), ErrVersion},
		{"unknown type", []byte("SEDP\x01\x09"), ErrMalformed},
		{"unknown type, fields cut short", []byte("SEDP\x01\x07\x09"), ErrMalformed},
		{"probe without nonce", []byte("SEDP\x01\x01"), ErrMalformed},
		{"short nonce", []byte("SEDP\x01\x01\x09\x02ab"), ErrMalformed},
		{"field without length", []byte("SEDP\x01\x01\x09"), ErrTruncated},
		{"field cut", []byte("SEDP\x01\x01\x09\x08abc"), ErrTruncated},
		{"field twice", []byte("SEDP\x01\x01\x09\x0812345678\x09\x0812345678"), ErrMalformed},
		{"dirty padding", []byte("SEDP\x01\x01\x09\x0812345678\x00\x00\x01"), ErrMalformed},
		{"hello cut", hello[:len(hello)-1], ErrTruncated},
		{"hello push port 0", []byte("SEDP\x01\x04\x0a\x01d\x0c\x02\x00\x00"), ErrMalformed},
		{"bad utf-8", []byte("SEDP\x01\x04\x0a\x02\xff\xfe\x0c\x02\x1f\x91"), ErrMalformed},
		{"answer ports not triples", []byte("SEDP\x01\x03\x01\x01s\x03\x01n\x05\x01u\x06\x02\x01\x00"), ErrMalformed},
		{"answer pairing 2", []byte("SEDP\x01\x03\x01\x01s\x03\x01n\x05\x01u\x07\x01\x02"), ErrMalformed},
		{"oversized", append([]byte("SEDP\x01\x01"), make([]byte, MaxDatagramSize)...), ErrOversized},
	} {
		_, err := Decode(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Decode = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// Unknown tags are skipped, so that a later minor revision can add fields; padding is zeros.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	b := []byte("SEDP\x01\x01\x7f\x03xyz\x09\x0812345678\x00\x00\x00")
	d, err := Decode(b)
	if err != nil || string(d.Probe.Nonce[:]) != "12345678" {
		t.Fatalf("Decode = %+v, %v", d, err)
	}
	// So are the fields of known tags that the type does not carry, unread (discovery.md): a
	// probe with a 3-byte pairing field and a server id holding a control byte is a probe.
	b = []byte("SEDP\x01\x01\x07\x03abc\x01\x02a\x01\x09\x0812345678")
	if d, err = Decode(b); err != nil || d.Probe == nil || string(d.Probe.Nonce[:]) != "12345678" {
		t.Fatalf("a probe with fields of other types: Decode = %+v, %v", d, err)
	}
	// Unknown service codes in the ports list are skipped too.
	b = []byte("SEDP\x01\x03\x01\x01s\x03\x01n\x05\x01u\x06\x06\x63\x00\x50\x02\x1f\x40")
	d, err = Decode(b)
	if err != nil || !reflect.DeepEqual(d.Announce.Ports, []Port{{"catalog", 8000}}) {
		t.Fatalf("Decode = %+v, %v", d.Announce, err)
	}
}

// The worked examples of docs/discovery.md decode as the document says.
func TestDocumentedExamples(t *testing.T) {
	probe := mustHex("53454450 01 01 0908 0102030405060708")
	d, err := Decode(probe)
	if err != nil || d.Probe.Nonce != [NonceSize]byte{1, 2, 3, 4, 5, 6, 7, 8} {
		t.Fatalf("probe example: %+v, %v", d, err)
	}
	info := ServerInfo{
		ServerID: "se-1", Name: "Shop", Version: "1.0", URL: "http://10.0.0.2:80",
		Ports: []Port{{"front_door", 80}, {"catalog", 8000}}, PairingOpen: true,
	}
	got, err := EncodeAnswer(info, [NonceSize]byte{1, 2, 3, 4, 5, 6, 7, 8})
	if err != nil {
		t.Fatal(err)
	}
	want := mustHex("53454450 01 02 0908 0102030405060708 0104 73652d31 0304 53686f70 0403 312e30" +
		" 0512 687474703a2f2f31302e302e302e323a3830 0606 010050 021f40 0701 01")
	if !bytes.Equal(got, want) {
		t.Errorf("answer example:\n got %x\nwant %x", got, want)
	}
	hello, err := EncodeHello(Hello{DeviceID: "tab-1", Kind: "tablet", PushPort: 8081})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex("53454450 01 04 0a05 7461622d31 0b06 7461626c6574 0c02 1f91"); !bytes.Equal(hello, want) {
		t.Errorf("hello example:\n got %x\nwant %x", hello, want)
	}
}

// FuzzDecode feeds arbitrary datagrams to the decoder: it must never panic, every error must be
// one of the documented causes, and whatever decodes must encode again to something that
// decodes to the same thing.
func FuzzDecode(f *testing.F) {
	probe, _ := EncodeProbe(ProbeRequest{Nonce: [NonceSize]byte{9}, ShopID: "FR-1"})
	answer, _ := EncodeAnswer(testInfo(), [NonceSize]byte{1})
	announce, _ := EncodeAnnounce(testInfo())
	hello, _ := EncodeHello(Hello{DeviceID: "d", Kind: "pos", Name: "n", PushPort: 8081})
	for _, s := range [][]byte{probe, probe[:40], answer, announce, hello, []byte("SEDP\x01\x01"), []byte("SEDP\x02"), nil} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Decode(b)
		if err != nil {
			for _, e := range []error{ErrNotDiscovery, ErrTruncated, ErrOversized, ErrVersion, ErrMalformed} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("error %v wraps no documented cause", err)
		}
		var again []byte
		switch d.Type {
		case TypeProbe:
			again, err = EncodeProbe(*d.Probe)
		case TypeAnswer:
			again, err = EncodeAnswer(d.Answer.ServerInfo, d.Answer.Nonce)
		case TypeAnnounce:
			again, err = EncodeAnnounce(*d.Announce)
		case TypeHello:
			again, err = EncodeHello(*d.Hello)
		default:
			t.Fatalf("decoded type %v", d.Type)
		}
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", d, err)
		}
		d2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded datagram does not decode: %v", err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip changed the datagram:\n%+v\n%+v", d, d2)
		}
	})
}

// TXT strings reach zeroconf in the DNS library's presentation form and come back in it, with
// non-ASCII bytes as \DDD: a shop name with accents or a backslash survives.
func TestTXTEscapes(t *testing.T) {
	info := testInfo()
	info.Name = `Café "Chez \ Moi"`
	txt := escapeTXT(TXT(info, "http"))
	// What the DNS library hands back for the name: UTF-8 bytes as \DDD, '"' and '\' escaped.
	for i, s := range txt {
		if strings.HasPrefix(s, "name=") {
			txt[i] = `name=Caf\195\169 \"Chez \\ Moi\"`
		}
	}
	f, err := FromMDNS(txt, []net.IP{net.IPv4(10, 0, 0, 2)}, 8080)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != info.Name || f.URL != "http://10.0.0.2:8080" || f.ServerID != info.ServerID || len(f.Ports) != 7 || !f.PairingOpen {
		t.Errorf("FromMDNS = %+v", f)
	}
	if got := escapeTXT([]string{`a\b"c`}); got[0] != `a\\b\"c` {
		t.Errorf("escapeTXT = %q", got)
	}
}

// TXT records come from anyone on the LAN: they keep the limits of a UDP answer's fields
// (discovery.md), a scheme is http or https, and only known services count, each once.
func TestFromMDNSLimits(t *testing.T) {
	base := []string{"txtvers=1", "id=srv-1", "name=Lyon"}
	ip := []net.IP{net.IPv4(10, 0, 0, 2)}
	for name, extra := range map[string]string{
		"long id":        "id=" + strings.Repeat("x", MaxIDLen+1),
		"control in id":  "id=a\000b",
		"bad utf-8 name": "name=\255\254",
		"empty name":     "name=",
		"long version":   "version=" + strings.Repeat("v", MaxVersionLen+1),
		"long shop":      "shop=" + strings.Repeat("s", MaxShopIDLen+1),
		"other scheme":   "scheme=javascript",
	} {
		if f, err := FromMDNS(append(slices.Clone(base), extra), ip, 8080); err == nil {
			t.Errorf("%s: accepted %+v", name, f)
		}
	}
	f, err := FromMDNS(append(slices.Clone(base), "ports=front_door=80,robot=9,catalog=8000,catalog=9000,"+strings.Repeat("a=1,", 60)), ip, 8080)
	if err != nil || !slices.Equal(f.Ports, []Port{{"front_door", 80}, {"catalog", 8000}}) {
		t.Errorf("ports: %+v, %v; want the known services once each", f.Ports, err)
	}
}

// FuzzFromMDNS feeds arbitrary TXT strings, as a browser gets them from anyone on the LAN, to
// FromMDNS: it must never panic, and what it accepts names a server at an IPv4 address and a
// valid port, with ports in range. Escaping any string and reading it back gives it unchanged.
func FuzzFromMDNS(f *testing.F) {
	f.Add(strings.Join(escapeTXT(TXT(testInfo(), "https")), "\n"), 8080)
	f.Add("txtvers=1\nid=x\nports=a=1,b=99999,c=,=5\ntlsfp=zz", 1)
	f.Add(`txtvers=1`+"\n"+`id=\\\255\999\"`+"\nname=\\", 65535)
	f.Add("TXTVERS=1\nID=a\nscheme=", 0)
	f.Fuzz(func(t *testing.T, s string, port int) {
		txt := strings.Split(s, "\n")
		found, err := FromMDNS(txt, []net.IP{net.IPv4(10, 0, 0, 2)}, port)
		if err == nil {
			if found.ServerID == "" || port < 1 || port > 65535 || !found.From.Addr().Is4() {
				t.Fatalf("accepted %+v from port %d", found, port)
			}
			for _, p := range found.Ports {
				if p.Port < 1 || p.Port > 65535 {
					t.Fatalf("port %+v", p)
				}
			}
			if len(found.TLSFingerprint) != 0 && len(found.TLSFingerprint) != TLSHashSize {
				t.Fatalf("fingerprint of %d bytes", len(found.TLSFingerprint))
			}
			for _, c := range []struct {
				v   string
				max int
			}{{found.ServerID, MaxIDLen}, {found.ShopID, MaxShopIDLen}, {found.Name, MaxNameLen}, {found.Version, MaxVersionLen}, {found.URL, MaxURLLen}} {
				if checkText(c.v, c.max, false) != nil {
					t.Fatalf("accepted %q beyond its limits", c.v)
				}
			}
			if len(found.Ports) > len(serviceCodes) {
				t.Fatalf("%d ports", len(found.Ports))
			}
		}
		for _, x := range txt {
			if got := unescapeTXT(escapeTXT([]string{x})[0]); got != x {
				t.Fatalf("escape and unescape of %q gave %q", x, got)
			}
		}
	})
}
