// Package servicebus receives the shop's orders from the cloud over Azure Service Bus (see
// docs/cloud-api.md, "Orders over Service Bus") and stores each exactly once.
package servicebus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/storeedge/storeedge/storage"
)

// Limits of an order message.
const (
	MaxBodyBytes = 256 << 10
	maxLines     = 200
	maxQuantity  = 9999
)

// Payload is the body of an order message.
type Payload struct {
	OrderID   string            `json:"order_id"`
	CreatedAt string            `json:"created_at"`
	Currency  string            `json:"currency"`
	Lines     []PayloadLine     `json:"lines"`
	Total     int64             `json:"total"`
	Customer  *storage.Customer `json:"customer,omitempty"`
	Note      string            `json:"note,omitempty"`
	Test      bool              `json:"test,omitempty"`
}

// PayloadLine is one line of an order message.
type PayloadLine struct {
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
}

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
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return bad("not an order document: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return bad("data after the order document")
	}
	if !visible(p.OrderID, 128) {
		return bad("order_id: want 1 to 128 visible characters")
	}
	if _, err := time.Parse(time.RFC3339, p.CreatedAt); err != nil {
		return bad("created_at: %q is not an RFC 3339 time", p.CreatedAt)
	}
	if !currencyRE.MatchString(p.Currency) {
		return bad("currency: %q is not an ISO 4217 code", p.Currency)
	}
	if len(p.Lines) == 0 || len(p.Lines) > maxLines {
		return bad("lines: %d lines, want 1 to %d", len(p.Lines), maxLines)
	}
	var sum int64
	for i, l := range p.Lines {
		switch {
		case l.ProductID == "" || len(l.ProductID) > 128 || !utf8.ValidString(l.ProductID):
			return bad("lines[%d].product_id: want 1 to 128 bytes of text", i)
		case !text(l.Name, 200):
			return bad("lines[%d].name: want at most 200 characters without control characters", i)
		case l.Quantity < 1 || l.Quantity > maxQuantity:
			return bad("lines[%d].quantity: %d, want 1 to %d", i, l.Quantity, maxQuantity)
		case l.UnitPrice < 0 || l.UnitPrice > 1e12:
			return bad("lines[%d].unit_price: %d, want 0 to 1000000000000", i, l.UnitPrice)
		}
		sum += l.Quantity * l.UnitPrice
	}
	if p.Total != sum {
		return bad("total: %d differs from the lines' sum %d", p.Total, sum)
	}
	if !text(p.Note, 500) {
		return bad("note: want at most 500 characters without control characters")
	}
	if c := p.Customer; c != nil && (!text(c.Name, 200) || !text(c.Phone, 200) || !text(c.Email, 200)) {
		return bad("customer: each field at most 200 characters without control characters")
	}
	return p, nil
}

// Order turns a checked payload into the order the shop stores.
func (p Payload) Order(testMode bool) storage.Order {
	o := storage.Order{Source: storage.SourceServiceBus, ExternalID: p.OrderID, Status: storage.StatusNew,
		Test: p.Test || testMode, Note: p.Note, Currency: p.Currency, Customer: p.Customer, Total: p.Total}
	for _, l := range p.Lines {
		o.Lines = append(o.Lines, storage.OrderLine{ProductID: l.ProductID, Name: l.Name, Quantity: l.Quantity,
			UnitPrice: l.UnitPrice, LineTotal: l.Quantity * l.UnitPrice})
	}
	return o
}

// Fingerprint identifies the order a payload carries, whatever the JSON's spacing and field order:
// a redelivery or a rebuilt message of the same order has the same fingerprint.
func (p Payload) Fingerprint() string {
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

func text(s string, maxRunes int) bool {
	return utf8.ValidString(s) && utf8.RuneCountInString(s) <= maxRunes &&
		strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }) < 0
}
