package servicebus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/storeedge/storeedge/orders"
)

const goodPayload = `{"order_id":"web-1","created_at":"2026-11-23T10:00:00Z","currency":"EUR",
	"lines":[{"product_id":"P1","name":"Tea","quantity":2,"unit_price":250},{"product_id":"P2","name":"Cake","quantity":1,"unit_price":300}],
	"total":800,"customer":{"name":"Ana"},"note":"18:00"}`

func TestDecodeGoodPayload(t *testing.T) {
	p, err := Decode([]byte(goodPayload))
	if err != nil {
		t.Fatal(err)
	}
	o := p.Order(true)
	if o.ExternalID != "web-1" || o.Total != 800 || len(o.Lines) != 2 || o.Lines[0].LineTotal != 500 || !o.Test || o.Status != "new" || o.Source != "servicebus" {
		t.Fatalf("order %+v", o)
	}
}

// The fingerprint reads created_at as an instant: the same order written with its time in another
// zone is the same order (cloud-api.md: "the same fields with the same values"), another instant
// is not; the fingerprint as written is the one storeedge kept before.
func TestFingerprintReadsTheInstant(t *testing.T) {
	fp := func(created string) Payload {
		p, err := Decode([]byte(strings.Replace(goodPayload, "2026-11-23T10:00:00Z", created, 1)))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	utc, paris, later := fp("2026-11-23T10:00:00Z"), fp("2026-11-23T11:00:00+01:00"), fp("2026-11-23T10:00:01Z")
	if utc.Fingerprint() != paris.Fingerprint() || utc.Fingerprint() == later.Fingerprint() {
		t.Errorf("fingerprints: UTC %s, +01:00 %s, a second later %s", utc.Fingerprint(), paris.Fingerprint(), later.Fingerprint())
	}
	// RFC 3339 (section 5.6) lets the T and the Z be lower case: the same instant, the same order.
	if lower := fp("2026-11-23t10:00:00z"); lower.Fingerprint() != utc.Fingerprint() {
		t.Errorf("fingerprint of the time written in lower case %s, want %s", lower.Fingerprint(), utc.Fingerprint())
	}
	if utc.AsWritten() != utc.Fingerprint() || paris.AsWritten() == paris.Fingerprint() {
		t.Errorf("as written: UTC %s (fingerprint %s), +01:00 %s (fingerprint %s)", utc.AsWritten(), utc.Fingerprint(), paris.AsWritten(), paris.Fingerprint())
	}
}

// A customer with none of its fields is none: the message that leaves it out carries the same order.
func TestFingerprintOfAnEmptyCustomer(t *testing.T) {
	decode := func(s string) Payload {
		p, err := Decode([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	with := decode(strings.Replace(goodPayload, `"customer":{"name":"Ana"}`, `"customer":{}`, 1))
	without := decode(strings.Replace(goodPayload, `"customer":{"name":"Ana"},`, ``, 1))
	if with.Customer == nil || without.Customer != nil || with.Fingerprint() != without.Fingerprint() {
		t.Errorf("customer {} (decoded %v): fingerprint differs from the order without one", with.Customer)
	}
	// An order stored by the version before, which kept the {} (and read the instant), is still
	// this order when its message comes again written with another offset.
	paris := decode(strings.Replace(strings.Replace(goodPayload, `"customer":{"name":"Ana"}`, `"customer":{}`, 1), "2026-11-23T10:00:00Z", "2026-11-23T11:00:00+01:00", 1))
	storedBefore := with.AsWritten() // created_at already in UTC as written: the old Fingerprint
	if !slices.Contains(paris.FingerprintsBefore(), storedBefore) {
		t.Errorf("the fingerprint the version before stored is not among %v", paris.FingerprintsBefore())
	}
}

func TestDecodeNamesTheProblem(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{`"total":800`, `"total":801`, "total: 801 differs from the lines' sum 800"},
		{`"currency":"EUR"`, `"currency":"eur"`, "currency"},
		{`"order_id":"web-1"`, `"order_id":""`, "order_id"},
		{`"order_id":"web-1"`, `"order_id":"web 1"`, "order_id"},
		{`"created_at":"2026-11-23T10:00:00Z"`, `"created_at":"yesterday"`, "created_at"},
		{`"quantity":2`, `"quantity":0`, "lines[0].quantity"},
		{`"unit_price":300`, `"unit_price":-1`, "lines[1].unit_price"},
		{`"unit_price":300`, `"unit_price":1000000000001`, "lines[1].unit_price: 1000000000001, want 0 to 1000000000000"},
		{`"product_id":"P2"`, `"product_id":""`, "lines[1].product_id"},
		{`"note":"18:00"`, `"note":"18:00\u0000"`, "note"},
		{`"note":"18:00"`, `"notes":"18:00"`, "unknown field"},
		{`"customer":{"name":"Ana"}`, `"customer":{"name":"Ana","address":"1 rue X"}`, "unknown field"},
		{`"total":800`, `"total":"800"`, "cannot unmarshal"},
		// A number too long for its field is quoted cut, as a quoted value is: the reason names
		// the field after it, within the description's 1,024 bytes.
		{`"total":800`, `"total":` + strings.Repeat("9", 5000), "cannot unmarshal number " + strings.Repeat("9", 57) + "… into Go struct field Payload.total of type int64"},
		{`{"order_id"`, `[{"order_id"`, "not an order document"},
	} {
		body := strings.Replace(goodPayload, tc.from, tc.to, 1)
		_, err := Decode([]byte(body))
		var inv *InvalidError
		if !errors.As(err, &inv) || !strings.Contains(inv.Reason, tc.want) {
			t.Errorf("%s → %s: got %v, want a reason with %q", tc.from, tc.to, err, tc.want)
		}
	}
	for _, tail := range []string{"{}", "]", "}", " x"} {
		if _, err := Decode([]byte(goodPayload + tail)); err == nil || !strings.Contains(err.Error(), "data after") {
			t.Errorf("%q after the document: %v", tail, err)
		}
	}
	if _, err := Decode([]byte(goodPayload + " \n")); err != nil {
		t.Errorf("white space after the document: %v", err)
	}
	bad := strings.Replace(goodPayload, `"note":"18:00"`, "\"note\":\"18:\xff00\"", 1)
	if _, err := Decode([]byte(bad)); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8 in the note: %v", err)
	}
	if _, err := Decode(make([]byte, MaxBodyBytes+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversized body: %v", err)
	}
}

// FuzzDecode feeds arbitrary message bodies: never a panic, every refusal an *InvalidError, and
// whatever is accepted keeps the rules (a total that adds up, quantities in range).
func FuzzDecode(f *testing.F) {
	f.Add([]byte(goodPayload))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"order_id":"x","lines":null}`))
	f.Add([]byte(`{"order_id":"x","created_at":"2026-11-23T10:00:00Z","currency":"EUR","lines":[{"product_id":"p","quantity":9999,"unit_price":1000000000000}],"total":9999000000000000}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := Decode(body)
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("refusal %v is not an InvalidError", err)
			}
			return
		}
		var sum int64
		for _, l := range p.Lines {
			if l.Quantity < 1 || l.Quantity > orders.MaxQuantity || l.UnitPrice < 0 {
				t.Fatalf("line accepted: %+v", l)
			}
			sum += l.Quantity * l.UnitPrice
		}
		if sum != p.Total || len(p.Lines) == 0 {
			t.Fatalf("accepted %+v", p)
		}
	})
}

// A reason quotes at most a short part of a value and stays short whatever the message holds: it
// goes back to Service Bus in the settlement's one AMQP frame.
func TestDecodeReasonIsShort(t *testing.T) {
	huge := strings.Repeat("9", 200<<10)
	for _, tc := range []struct{ from, to, want string }{
		{`"created_at":"2026-11-23T10:00:00Z"`, `"created_at":"` + huge + `"`, `created_at: "` + huge[:64] + `"… is not`},
		{`"currency":"EUR"`, `"currency":"` + huge + `"`, `currency: "` + huge[:64] + `"… is not`},
		{`"note":"18:00"`, `"n` + huge + `":"18:00"`, `unknown field "n` + huge[:63] + `"…`},
	} {
		_, err := Decode([]byte(strings.Replace(goodPayload, tc.from, tc.to, 1)))
		var inv *InvalidError
		if !errors.As(err, &inv) || !strings.Contains(inv.Reason, tc.want) {
			t.Fatalf("%.40s: got %.200v, want a reason with %.100q", tc.want, err, tc.want)
		}
		if len(inv.Reason) > 200 {
			t.Errorf("%.40s: reason of %d bytes", tc.want, len(inv.Reason))
		}
	}
	// The order as a JSON string (JSON.stringify of a JSON text): named.
	_, err := Decode([]byte(strconv.Quote(goodPayload)))
	var inv *InvalidError
	if !errors.As(err, &inv) || !strings.Contains(inv.Reason, "a JSON string, not an order object") {
		t.Errorf("an order encoded twice: %v", err)
	}
}

// An AMQP message-id that is not a string is read as text, so the message is stored and a
// redelivery recognised rather than dead-lettered for want of an id; a body the sender encoded as
// an AMQP value is refused by name.
func TestMessageIDAndBodyOfAnyAMQPType(t *testing.T) {
	long := bytes.Repeat([]byte{0xab}, 200) // named by its hash, not written out
	longSum := sha256.Sum256(long)
	withID := func(id any) *azservicebus.ReceivedMessage {
		return &azservicebus.ReceivedMessage{RawAMQPMessage: &azservicebus.AMQPAnnotatedMessage{
			Properties: &azservicebus.AMQPAnnotatedMessageProperties{MessageID: id}}}
	}
	for _, tc := range []struct {
		m    *azservicebus.ReceivedMessage
		want string
	}{
		{&azservicebus.ReceivedMessage{MessageID: "m-1"}, "m-1"},
		{withID("m-2"), "m-2"},
		{withID(uint64(42)), "ulong:42"},
		{withID([]byte{0xde, 0xad}), "binary:dead"},
		{withID(long), "binary-sha256:" + hex.EncodeToString(longSum[:])},
		{withID(uuidText{"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}), "uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{withID(nil), ""},
		{&azservicebus.ReceivedMessage{}, ""},
		// A string that reads as another type's id is marked: never the ulong 42.
		{&azservicebus.ReceivedMessage{MessageID: "ulong:42"}, "string:ulong:42"},
		{withID("uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"), "string:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{&azservicebus.ReceivedMessage{MessageID: "string:x"}, "string:string:x"},
		{&azservicebus.ReceivedMessage{MessageID: "binary-sha256"}, "binary-sha256"},
		// An empty binary id is no id.
		{withID([]byte{}), ""},
	} {
		if got := messageID(tc.m); got != tc.want {
			t.Errorf("messageID of %+v = %q, want %q", tc.m.RawAMQPMessage, got, tc.want)
		}
	}
	body := func(b azservicebus.AMQPAnnotatedMessageBody) *azservicebus.ReceivedMessage {
		return &azservicebus.ReceivedMessage{RawAMQPMessage: &azservicebus.AMQPAnnotatedMessage{Body: b}}
	}
	for _, tc := range []struct {
		m    *azservicebus.ReceivedMessage
		want string
	}{
		{body(azservicebus.AMQPAnnotatedMessageBody{Value: goodPayload}), "body: an AMQP value (string)"},
		{body(azservicebus.AMQPAnnotatedMessageBody{Sequence: [][]any{{"x"}}}), "body: an AMQP sequence"},
		{body(azservicebus.AMQPAnnotatedMessageBody{Data: [][]byte{[]byte("{"), []byte("}")}}), "body: 2 AMQP data sections"},
		// A data section and a value: the SDK gives the data section as Body; still refused.
		{&azservicebus.ReceivedMessage{Body: []byte(goodPayload), RawAMQPMessage: &azservicebus.AMQPAnnotatedMessage{
			Body: azservicebus.AMQPAnnotatedMessageBody{Data: [][]byte{[]byte(goodPayload)}, Value: "x"}}}, "body: an AMQP value (string)"},
		{&azservicebus.ReceivedMessage{Body: []byte(goodPayload), RawAMQPMessage: &azservicebus.AMQPAnnotatedMessage{
			Body: azservicebus.AMQPAnnotatedMessageBody{Data: [][]byte{[]byte(goodPayload)}, Sequence: [][]any{{"x"}}}}}, "body: an AMQP sequence"},
		{body(azservicebus.AMQPAnnotatedMessageBody{}), "body: empty"},
		{&azservicebus.ReceivedMessage{}, "body: empty"},
	} {
		_, err := decodeBody(tc.m)
		var inv *InvalidError
		if !errors.As(err, &inv) || !strings.HasPrefix(inv.Reason, tc.want) {
			t.Errorf("body %+v: got %v, want a reason starting %q", tc.m.RawAMQPMessage, err, tc.want)
		}
	}
	if _, err := decodeBody(&azservicebus.ReceivedMessage{Body: []byte(goodPayload)}); err != nil {
		t.Errorf("one data section: %v", err)
	}
}

// uuidText stands for go-amqp's UUID, which the SDK hands over as it is and prints itself.
type uuidText struct{ s string }

func (u uuidText) String() string { return u.s }

// FuzzMessageID names message ids of every AMQP type the fuzzer makes: never a panic, and two
// ids of different types or values never named the same (a string id is never read as another
// type's, which a redelivery would then be matched against).
func FuzzMessageID(f *testing.F) {
	f.Add(uint8(0), "m-1", uint64(0), []byte(nil))
	f.Add(uint8(0), "ulong:42", uint64(42), []byte(nil))
	f.Add(uint8(1), "", uint64(42), []byte(nil))
	f.Add(uint8(2), "", uint64(0), []byte{0xde, 0xad})
	f.Add(uint8(2), "", uint64(0), bytes.Repeat([]byte{1}, 129))
	f.Add(uint8(3), "6ba7b810-9dad-11d1-80b4-00c04fd430c8", uint64(0), []byte(nil))
	f.Fuzz(func(t *testing.T, kind uint8, s string, n uint64, b []byte) {
		var id any
		switch kind % 4 {
		case 0:
			id = s
		case 1:
			id = n
		case 2:
			id = b
		case 3:
			id = uuidText{s}
		}
		got := messageID(&azservicebus.ReceivedMessage{RawAMQPMessage: &azservicebus.AMQPAnnotatedMessage{
			Properties: &azservicebus.AMQPAnnotatedMessageProperties{MessageID: id}}})
		typed := ""
		for _, p := range typedIDPrefixes {
			if strings.HasPrefix(got, p) {
				typed = p
				break
			}
		}
		switch kind % 4 {
		case 0:
			if got != s && got != "string:"+s || typed != "" && typed != "string:" {
				t.Fatalf("string id %q named %q", s, got)
			}
		case 1:
			if got != "ulong:"+strconv.FormatUint(n, 10) {
				t.Fatalf("ulong %d named %q", n, got)
			}
		case 2:
			if len(b) == 0 && got != "" || len(b) > 0 && typed != "binary:" && typed != "binary-sha256:" {
				t.Fatalf("binary id %x named %q", b, got)
			}
		case 3:
			if typed != "uuid:" {
				t.Fatalf("uuid %q named %q", s, got)
			}
		}
	})
}
