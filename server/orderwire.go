package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/storeedge/storeedge/storage"
)

// Limits of an order a device sends.
const (
	maxOrderLines    = 200
	maxQuantity      = 9999
	maxNoteRunes     = 500
	maxCustomerRunes = 200
	maxKeyBytes      = 128
)

// createOrderRequest is the body of POST /api/v1/orders.
type createOrderRequest struct {
	Lines []struct {
		ProductID string `json:"product_id"`
		Quantity  int64  `json:"quantity"`
	} `json:"lines"`
	Note     string            `json:"note"`
	Customer *storage.Customer `json:"customer"`
}

// statusRequest is the body of POST /api/v1/orders/{id}/status.
type statusRequest struct {
	Status string `json:"status"`
	Note   string `json:"note"`
}

// checkOrderRequest returns what is wrong with a create request, or "".
func checkOrderRequest(req *createOrderRequest) string {
	if len(req.Lines) == 0 {
		return "lines: an order needs at least one line"
	}
	if len(req.Lines) > maxOrderLines {
		return fmt.Sprintf("lines: %d lines, at most %d", len(req.Lines), maxOrderLines)
	}
	for i, l := range req.Lines {
		if l.ProductID == "" || len(l.ProductID) > 128 || !utf8.ValidString(l.ProductID) {
			return fmt.Sprintf("lines[%d].product_id: want 1 to 128 bytes of text", i)
		}
		if l.Quantity < 1 || l.Quantity > maxQuantity {
			return fmt.Sprintf("lines[%d].quantity: %d, want 1 to %d", i, l.Quantity, maxQuantity)
		}
	}
	if msg := checkText("note", req.Note, maxNoteRunes); msg != "" {
		return msg
	}
	if c := req.Customer; c != nil {
		for _, f := range []struct{ name, v string }{{"customer.name", c.Name}, {"customer.phone", c.Phone}, {"customer.email", c.Email}} {
			if msg := checkText(f.name, f.v, maxCustomerRunes); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func checkText(field, v string, maxRunes int) string {
	if !utf8.ValidString(v) {
		return field + ": not valid UTF-8"
	}
	if n := utf8.RuneCountInString(v); n > maxRunes {
		return fmt.Sprintf("%s: %d characters, at most %d", field, n, maxRunes)
	}
	if strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }) >= 0 {
		return field + ": contains control characters"
	}
	return ""
}

// checkToken checks a header value used as an identifier: 1..128 visible ASCII characters.
func checkToken(name, v string) string {
	if v == "" {
		return "the " + name + " header is required"
	}
	if len(v) > maxKeyBytes {
		return fmt.Sprintf("the %s header is %d bytes, at most %d", name, len(v), maxKeyBytes)
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return "the " + name + " header must be visible ASCII characters"
		}
	}
	return ""
}

// requestHash fingerprints a create request, so a retry under the same idempotency key can be
// told from a different order reusing it.
func requestHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}
