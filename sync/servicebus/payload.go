// Package servicebus receives the shop's orders from the cloud over Azure Service Bus (see
// docs/cloud-api.md, "Orders over Service Bus") and stores each exactly once.
package servicebus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/internal/strictjson"
	"github.com/storeedge/storeedge/orders"
)

// MaxBodyBytes is the largest order message; the order itself has the limits of every order
// (package orders).
const MaxBodyBytes = 256 << 10

// Payload is the body of an order message.
type Payload struct {
	OrderID   string           `json:"order_id"`
	CreatedAt string           `json:"created_at"`
	Currency  string           `json:"currency"`
	Lines     []PayloadLine    `json:"lines"`
	Total     int64            `json:"total"`
	Customer  *orders.Customer `json:"customer,omitempty"`
	Note      string           `json:"note,omitempty"`
	Test      bool             `json:"test,omitempty"`
}

// PayloadLine is one line of an order message.
type PayloadLine struct {
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
}

// MaxReasonBytes bounds a dead-letter description (the receiver cuts it there). Service Bus sends
// the settlement in one AMQP frame, which a description of the size of the message would
// overflow: the link would drop and the message come back until Service Bus dead-lettered it
// without the shop's reason. Decode's reasons quote at most maxQuotedBytes of a value.
const MaxReasonBytes = 1024

// maxQuotedBytes bounds a value a reason quotes.
const maxQuotedBytes = 64

// InvalidError says why an order message cannot be stored; such a message is dead-lettered.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "invalid order: " + e.Reason }

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// Decode reads and checks an order message body. Every failure is an *InvalidError whose
// reason names the field.
func Decode(body []byte) (Payload, error) {
	var p Payload
	bad := func(format string, args ...any) (Payload, error) {
		return Payload{}, &InvalidError{Reason: fmt.Sprintf(format, args...)}
	}
	if len(body) > MaxBodyBytes {
		return bad("body of %d bytes, at most %d", len(body), MaxBodyBytes)
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '"' {
		return bad("body: a JSON string, not an order object: the order was encoded twice (a JSON text passed to JSON.stringify, say); send the object itself")
	}
	var notUTF8 *strictjson.InvalidUTF8Error
	var wrongType *json.UnmarshalTypeError
	err := strictjson.Decode(body, &p)
	if errors.As(err, &wrongType) && len(wrongType.Value) > maxQuotedBytes {
		// The decoder quotes a number whole ("number 9999…"): cut as a quoted value is.
		cut := *wrongType
		cut.Value = clip.String(wrongType.Value, maxQuotedBytes)
		err = &cut
	}
	switch {
	case errors.As(err, &notUTF8):
		return bad("%v", notUTF8)
	case errors.Is(err, strictjson.ErrTrailing):
		return bad("data after the order document")
	case err != nil:
		return bad("not an order document: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if !visible(p.OrderID, 128) {
		return bad("order_id: want 1 to 128 visible characters")
	}
	if _, err := parseCreatedAt(p.CreatedAt); err != nil {
		return bad("created_at: %s is not an RFC 3339 time", clip.Quoted(p.CreatedAt, maxQuotedBytes))
	}
	if !currencyRE.MatchString(p.Currency) {
		return bad("currency: %s is not an ISO 4217 code", clip.Quoted(p.Currency, maxQuotedBytes))
	}
	if msg := checkLines(p.Lines); msg != "" {
		return bad("%s", msg)
	}
	if sum := orders.Sum(p.Order(false).Lines); p.Total != sum {
		return bad("total: %d differs from the lines' sum %d", p.Total, sum)
	}
	if msg := orders.CheckDetails(p.Note, p.Customer); msg != "" {
		return bad("%s", msg)
	}
	return p, nil
}

// checkLines returns what is wrong with a message's lines, or "": the rules of every order, and
// a name and a unit price, which the cloud sets (a device's order takes them from the catalog).
func checkLines(lines []PayloadLine) string {
	if msg := orders.CheckLineCount(len(lines)); msg != "" {
		return msg
	}
	for i, l := range lines {
		if msg := orders.CheckLine(i, l.ProductID, l.Quantity); msg != "" {
			return msg
		}
		if msg := orders.CheckText(fmt.Sprintf("lines[%d].name", i), l.Name, orders.MaxNameRunes); msg != "" {
			return msg
		}
		if l.UnitPrice < 0 || l.UnitPrice > orders.MaxUnitPrice {
			return fmt.Sprintf("lines[%d].unit_price: %d, want 0 to %d", i, l.UnitPrice, orders.MaxUnitPrice)
		}
	}
	return ""
}

// Order turns a checked payload into the order the shop stores.
func (p Payload) Order(testMode bool) orders.Order {
	o := orders.Order{Source: orders.SourceServiceBus, ExternalID: p.OrderID, Status: orders.StatusNew,
		Test: p.Test || testMode, Note: p.Note, Currency: p.Currency, Customer: p.Customer, Total: p.Total}
	for _, l := range p.Lines {
		o.Lines = append(o.Lines, orders.NewLine(l.ProductID, l.Name, l.Quantity, l.UnitPrice))
	}
	return o
}

// Fingerprint identifies the order a payload carries, whatever the JSON's spacing and field order,
// and however its created_at writes the instant (10:00:00Z, 11:00:00+01:00): a redelivery or a
// rebuilt message of the same order has the same fingerprint.
func (p Payload) Fingerprint() string {
	p.Customer = p.Customer.Known() // a customer with none of its fields is none
	if t, err := parseCreatedAt(p.CreatedAt); err == nil {
		p.CreatedAt = t.UTC().Format(time.RFC3339Nano)
	}
	return p.AsWritten()
}

// parseCreatedAt reads an RFC 3339 time, whose T and Z may be lower case (RFC 3339, section
// 5.6), as Go's time.RFC3339 layout does not.
func parseCreatedAt(s string) (time.Time, error) {
	return time.Parse(time.RFC3339, strings.ToUpper(s))
}

// FingerprintsBefore are the fingerprints earlier versions of storeedge made of the same order,
// which a stored order may carry: with created_at as the message wrote it, and with a customer of
// no fields kept as {}.
func (p Payload) FingerprintsBefore() []string {
	q := p
	if t, err := parseCreatedAt(q.CreatedAt); err == nil {
		q.CreatedAt = t.UTC().Format(time.RFC3339Nano)
	}
	return []string{p.AsWritten(), q.AsWritten()}
}

// AsWritten is the fingerprint with created_at and the customer as the message wrote them, which
// storeedge kept before Fingerprint read the instant.
func (p Payload) AsWritten() string {
	b, _ := json.Marshal(p) // a decoded Payload always encodes
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func visible(s string, maxBytes int) bool {
	if s == "" || len(s) > maxBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
