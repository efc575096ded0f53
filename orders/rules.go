package orders

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of an order, whoever sends it.
const (
	MaxLines          = 200  // lines in one order
	MaxQuantity       = 9999 // units on one line
	MaxProductIDBytes = 128
	MaxNoteRunes      = 500
	// MaxOrderNoteRunes bounds an order's note with every status note added to it: a device
	// adding notes for ever would grow the order, and every event that carries it.
	MaxOrderNoteRunes = 2000
	MaxCustomerRunes  = 200 // each of the customer's fields
	MaxNameRunes      = 200 // a line's product name
	// MaxUnitPrice is the highest unit price of a line, in minor units: it keeps every line's
	// total and the order's (200 lines of 9999) far from overflowing.
	MaxUnitPrice int64 = 1_000_000_000_000
)

// LineName is a catalog product's name as an order line carries it: at most MaxNameRunes
// characters, control characters made spaces, invalid UTF-8 dropped. The catalog bounds neither;
// the cloud's order contract does (cloud-api.md).
func LineName(name string) string {
	name = strings.ToValidUTF8(name, "")
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, name)
	if utf8.RuneCountInString(name) <= MaxNameRunes {
		return name
	}
	n := 0
	for i := range name {
		if n == MaxNameRunes {
			return name[:i]
		}
		n++
	}
	return name
}

// Each Check function returns what is wrong, as "field: reason" for the sender, or "".

// CheckLineCount checks how many lines an order has.
func CheckLineCount(n int) string {
	if n == 0 {
		return "lines: an order needs at least one line"
	}
	if n > MaxLines {
		return fmt.Sprintf("lines: %d lines, at most %d", n, MaxLines)
	}
	return ""
}

// CheckLine checks line i's product id and quantity.
func CheckLine(i int, productID string, qty int64) string {
	if productID == "" || len(productID) > MaxProductIDBytes || !utf8.ValidString(productID) {
		return fmt.Sprintf("lines[%d].product_id: want 1 to %d bytes of text", i, MaxProductIDBytes)
	}
	if qty < 1 || qty > MaxQuantity {
		return fmt.Sprintf("lines[%d].quantity: %d, want 1 to %d", i, qty, MaxQuantity)
	}
	return ""
}

// CheckText checks a free-text field: valid UTF-8, at most maxRunes characters, and no control
// characters but the newline.
func CheckText(field, v string, maxRunes int) string {
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

// CheckDetails checks an order's note and customer.
func CheckDetails(note string, c *Customer) string {
	if msg := CheckText("note", note, MaxNoteRunes); msg != "" || c == nil {
		return msg
	}
	for _, f := range []struct{ name, v string }{{"customer.name", c.Name}, {"customer.phone", c.Phone}, {"customer.email", c.Email}} {
		if msg := CheckText(f.name, f.v, MaxCustomerRunes); msg != "" {
			return msg
		}
	}
	return ""
}
