package cloudapi

import (
	"unicode/utf8"
)

// The fast path of DecodeLine. A first sync reads millions of change lines, and encoding/json
// reads each of them twice (the line, then its document) through reflection. Nearly every line is
// a change in the plain form the cloud writes: the known keys once each, in their exact case,
// strings without escapes, integers without fraction or exponent. fastChange reads such a line in
// one pass, and only when it is also valid by every rule of the contract does it return the
// change; anything else (an escape, an unknown key, a null, a broken rule) makes it give up, and
// DecodeLine decodes the line with encoding/json, which gives the precise reason. The fast path
// therefore never accepts a line the slow path would refuse, nor reads one differently
// (FuzzFastPathAgrees).

// scanner reads JSON from b at i. Its methods report false for anything outside the plain form.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips whitespace and consumes c.
func (s *scanner) next(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// peek skips whitespace and reports the next byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str reads a string without escapes and returns its bytes (still in b).
func (s *scanner) str() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			// Invalid UTF-8: the slow path quarantines the line.
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		s.i++
	}
	return nil, false
}

// int reads an integer of at most 18 digits, so it cannot overflow an int64.
func (s *scanner) int() (int64, bool) {
	s.ws()
	neg := false
	if s.i < len(s.b) && s.b[s.i] == '-' {
		neg = true
		s.i++
	}
	start := s.i
	var n int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		n = n*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	digits := s.i - start
	if digits == 0 || digits > 18 || (digits > 1 && s.b[start] == '0') {
		return 0, false
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

// object reads the members of an object, calling member for each key; member reads the value.
// A key seen twice makes it give up: encoding/json would keep the last one.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.peek() == '}' {
		s.i++
		return true
	}
	var seen uint32
	for {
		key, ok := s.str()
		if !ok || !s.next(':') {
			return false
		}
		bit := keyBit(key)
		if bit == 0 || seen&bit != 0 || !member(key) {
			return false
		}
		seen |= bit
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// keyBit numbers the keys the fast path knows, for the duplicate check; 0 is an unknown key.
func keyBit(key []byte) uint32 {
	for i, k := range knownKeys {
		if string(key) == k {
			return 1 << i
		}
	}
	return 0
}

var knownKeys = [...]string{"collection", "id", "op", "rev", "doc", "product_id", "currency", "amount", "list_amount",
	"tax_rate", "quantity", "reserved", "updated_at", "blob", "size", "md5", "content_type", "sku", "name",
	"description", "brand", "category", "barcodes", "media", "attributes"}

// strings reads an array of strings; an empty array gives an empty, non-nil slice, as
// encoding/json does.
func (s *scanner) strings() ([]string, bool) {
	if !s.next('[') {
		return nil, false
	}
	out := []string{}
	if s.peek() == ']' {
		s.i++
		return out, true
	}
	for {
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		out = append(out, string(v))
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return out, true
		default:
			return nil, false
		}
	}
}

// stringMap reads an object of strings. A key seen twice keeps its last value, as encoding/json
// does.
func (s *scanner) stringMap() (map[string]string, bool) {
	if !s.next('{') {
		return nil, false
	}
	out := make(map[string]string)
	if s.peek() == '}' {
		s.i++
		return out, true
	}
	for {
		k, ok := s.str()
		if !ok || !s.next(':') {
			return nil, false
		}
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		out[string(k)] = string(v)
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return out, true
		default:
			return nil, false
		}
	}
}

// fastChange decodes a change line in the plain form, or reports false.
func fastChange(b []byte, collection string) (*Change, bool) {
	if collection == Settings {
		return nil, false // a setting's value is any JSON: encoding/json reads it
	}
	s := scanner{b: b}
	var coll, id, op []byte
	var docStart, docEnd int
	var rev int64
	var hasRev bool
	var d fastDoc
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "collection":
			coll, ok = s.str()
		case "id":
			id, ok = s.str()
		case "op":
			op, ok = s.str()
		case "rev":
			rev, ok = s.int()
			hasRev = ok
		case "doc":
			s.ws()
			docStart = s.i
			ok = s.doc(collection, &d)
			docEnd = s.i
		}
		return ok
	})
	if !ok {
		return nil, false
	}
	s.ws()
	if s.i != len(b) || !hasRev || rev <= 0 || string(coll) != collection || id == nil {
		return nil, false
	}
	c := &Change{Collection: collection, Rev: rev}
	switch string(op) {
	case OpUpsert:
		if docEnd == 0 {
			return nil, false
		}
		c.Op = OpUpsert
	case OpDelete:
		if docEnd != 0 {
			return nil, false
		}
		c.Op = OpDelete
	default:
		return nil, false
	}
	c.ID = string(id)
	if ValidateID(c.ID) != nil {
		return nil, false
	}
	if c.Op == OpUpsert {
		var err error
		switch collection {
		case Products:
			err = checkProduct(c.ID, d.product)
			c.Product = d.product
		case Prices:
			err = checkPrice(c.ID, &d.price)
		case Stock:
			err = checkStock(c.ID, &d.stock)
		case Media:
			err = checkMedia(c.ID, &d.media)
		}
		if err != nil {
			return nil, false
		}
		c.Doc = append([]byte(nil), b[docStart:docEnd]...)
	}
	return c, true
}

// fastDoc holds the document the fast path reads, of whichever collection.
type fastDoc struct {
	product *Product
	price   Price
	stock   StockLevel
	media   MediaManifest
}

// doc reads the document of a change of collection into d.
func (s *scanner) doc(collection string, d *fastDoc) bool {
	switch collection {
	case Products:
		return s.productDoc(d)
	case Prices:
		return s.priceDoc(d)
	case Stock:
		return s.stockDoc(d)
	case Media:
		return s.mediaDoc(d)
	}
	return false
}

// productDoc, priceDoc, stockDoc and mediaDoc read one collection's document, field by field;
// unknown fields are skipped.
func (s *scanner) productDoc(d *fastDoc) bool {
	p := &Product{}
	d.product = p
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			p.ID, ok = s.text()
		case "sku":
			p.SKU, ok = s.text()
		case "name":
			p.Name, ok = s.text()
		case "description":
			p.Description, ok = s.text()
		case "brand":
			p.Brand, ok = s.text()
		case "category":
			p.Category, ok = s.text()
		case "barcodes":
			p.Barcodes, ok = s.strings()
		case "media":
			p.Media, ok = s.strings()
		case "attributes":
			p.Attributes, ok = s.stringMap()
		}
		return ok
	})
}

func (s *scanner) priceDoc(d *fastDoc) bool {
	p := &d.price
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "product_id":
			p.ProductID, ok = s.text()
		case "currency":
			p.Currency, ok = s.text()
		case "amount":
			p.Amount, ok = s.int()
		case "list_amount":
			p.ListAmount, ok = s.int()
		case "tax_rate":
			p.TaxRate, ok = s.int()
		}
		return ok
	})
}

func (s *scanner) stockDoc(d *fastDoc) bool {
	st := &d.stock
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "product_id":
			st.ProductID, ok = s.text()
		case "quantity":
			st.Quantity, ok = s.int()
		case "reserved":
			st.Reserved, ok = s.int()
		case "updated_at":
			st.UpdatedAt, ok = s.text()
		}
		return ok
	})
}

func (s *scanner) mediaDoc(d *fastDoc) bool {
	m := &d.media
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			m.ID, ok = s.text()
		case "blob":
			m.Blob, ok = s.text()
		case "size":
			m.Size, ok = s.int()
		case "md5":
			m.MD5, ok = s.text()
		case "content_type":
			m.ContentType, ok = s.text()
		}
		return ok
	})
}

// text reads a string without escapes.
func (s *scanner) text() (string, bool) {
	v, ok := s.str()
	return string(v), ok
}
