package servicebus

import (
	"errors"
	"reflect"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"
)

// received builds the message the SDK hands the receiver for an AMQP message, as the SDK's own
// conversion does for the parts the receiver reads: the body's sections, Body when there is
// exactly one data section, and MessageID when the id is a string.
func received(m *amqp.Message) *azservicebus.ReceivedMessage {
	raw := &azservicebus.AMQPAnnotatedMessage{Body: azservicebus.AMQPAnnotatedMessageBody{
		Data: m.Data, Value: m.Value, Sequence: m.Sequence,
	}}
	rm := &azservicebus.ReceivedMessage{RawAMQPMessage: raw}
	if len(m.Data) == 1 {
		rm.Body = m.Data[0]
	}
	if m.Properties != nil {
		raw.Properties = &azservicebus.AMQPAnnotatedMessageProperties{MessageID: m.Properties.MessageID}
		if id, ok := m.Properties.MessageID.(string); ok {
			rm.MessageID = id
		}
	}
	return rm
}

// FuzzMessage reads AMQP messages as they arrive from Service Bus, encoded bytes the fuzzer
// changes: the receiver's reading of the body and the id never panics, a refusal is an
// InvalidError (dead-lettered with its reason), and an order is taken only from a body of
// exactly one data section, read as Decode reads it.
func FuzzMessage(f *testing.F) {
	for _, m := range []*amqp.Message{
		{Data: [][]byte{[]byte(goodPayload)}, Properties: &amqp.MessageProperties{MessageID: "m-1"}},
		{Data: [][]byte{[]byte(goodPayload)}, Properties: &amqp.MessageProperties{MessageID: uint64(42)}},
		{Data: [][]byte{[]byte(goodPayload)}, Properties: &amqp.MessageProperties{MessageID: amqp.UUID{1, 2, 3}}},
		{Data: [][]byte{[]byte(goodPayload)}, Properties: &amqp.MessageProperties{MessageID: []byte{1, 2}}},
		{Data: [][]byte{[]byte(`{"order_id":`), []byte(`"x"}`)}},
		{Value: goodPayload},
		{Sequence: [][]any{{"a", int64(1)}}},
		{Data: [][]byte{{}}},
		{Data: [][]byte{[]byte(goodPayload)}, Value: "x"}, // a data section and a value: refused
	} {
		b, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// The harness must reach an order, or the fuzzer would test refusals only.
	b, err := (&amqp.Message{Data: [][]byte{[]byte(goodPayload)}}).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	var first amqp.Message
	if err := first.UnmarshalBinary(b); err != nil {
		f.Fatal(err)
	}
	if _, err := decodeBody(received(&first)); err != nil {
		f.Fatalf("the harness refused a good message: %v", err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m amqp.Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		rm := received(&m)
		_ = messageID(rm)
		p, err := decodeBody(rm)
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("refusal %v is not an InvalidError", err)
			}
			return
		}
		if len(m.Data) != 1 || m.Value != nil || len(m.Sequence) != 0 {
			t.Fatalf("order taken from a body of %d data sections, value %T, %d sequences", len(m.Data), m.Value, len(m.Sequence))
		}
		want, err := Decode(m.Data[0])
		if err != nil || !reflect.DeepEqual(p, want) {
			t.Fatalf("decodeBody gave %+v; Decode of the data section gives %+v, %v", p, want, err)
		}
	})
}
