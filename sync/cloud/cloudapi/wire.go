// Package cloudapi holds the wire format of the cloud sync API described in docs/cloud-api.md:
// feed lines, documents of each collection and their validation, and the upload and config
// bodies. It is shared by the sync client and by cmd/cloudsim, the reference implementation, so
// both read the contract from one place. It does no I/O beyond decoding a reader.
package cloudapi

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Collections synced from the cloud, in the order a sync pass visits them.
const (
	Products = "products"
	Prices   = "prices"
	Stock    = "stock"
	Media    = "media"
	Settings = "settings"
)

// Collections lists every synced collection.
var Collections = []string{Products, Prices, Stock, Media, Settings}

// IsCollection reports whether name is a synced collection.
func IsCollection(name string) bool {
	for _, c := range Collections {
		if c == name {
			return true
		}
	}
	return false
}

// Change operations.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
)

// Limits of the contract.
const (
	MaxLineBytes = 1 << 20
	MaxPageSize  = 10000
	// MaxPageBytes bounds the documents of one page, which wait in memory until its end line.
	MaxPageBytes = 64 << 20
	MaxIDBytes   = 128
)

// Change is one change line of the feed.
type Change struct {
	Collection string          `json:"collection"`
	ID         string          `json:"id"`
	Op         string          `json:"op"`
	Rev        int64           `json:"rev"`
	Doc        json.RawMessage `json:"doc,omitempty"`

	// Line is the change's 1-based line number within the response, as a MalformedError's:
	// set by DecodeLine, it orders the changes and the malformed lines of a page.
	Line int `json:"-"`

	// Product is the parsed document of a products upsert, set by the decoder once it has
	// validated it, so storage does not parse it a second time.
	Product *Product `json:"-"`
}

// PageEnd is the end line that closes every page.
type PageEnd struct {
	Cursor    string `json:"cursor"`
	Count     int    `json:"count"`
	More      bool   `json:"more"`
	Remaining int64  `json:"remaining"`
}

// Product is the document of the products collection.
type Product struct {
	ID          string            `json:"id"`
	SKU         string            `json:"sku,omitempty"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Brand       string            `json:"brand,omitempty"`
	Category    string            `json:"category,omitempty"`
	Barcodes    []string          `json:"barcodes,omitempty"`
	Media       []string          `json:"media,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
}

// Price is the document of the prices collection. Amounts are in minor units.
type Price struct {
	ProductID  string `json:"product_id"`
	Currency   string `json:"currency"`
	Amount     int64  `json:"amount"`
	ListAmount int64  `json:"list_amount,omitempty"`
	TaxRate    int64  `json:"tax_rate,omitempty"`
}

// StockLevel is the document of the stock collection.
type StockLevel struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
	Reserved  int64  `json:"reserved,omitempty"`
	UpdatedAt string `json:"updated_at,omitempty"`
}

// MediaManifest is the document of the media collection.
type MediaManifest struct {
	ID          string `json:"id"`
	Blob        string `json:"blob"`
	Size        int64  `json:"size"`
	MD5         string `json:"md5"`
	ContentType string `json:"content_type,omitempty"`
}

// HexMD5 is the manifest's MD5 (base64, as the feed gives it) in hex, the name of its content in
// the media cache; ok is false when it is not the base64 of 16 bytes.
func (m *MediaManifest) HexMD5() (md5hex string, ok bool) {
	b, err := base64.StdEncoding.DecodeString(m.MD5)
	if err != nil || len(b) != 16 {
		return "", false
	}
	return hex.EncodeToString(b), true
}

// Setting is the document of the settings collection.
type Setting struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// MalformedError describes a feed line that breaks the contract. The line is counted in the page
// but not applied; the consumer quarantines it.
type MalformedError struct {
	Line   int    // 1-based line number within the response
	ID     string // the item id when it could be read and is valid, else ""
	Reason string
	Raw    []byte // the start of the line, at most 512 bytes
	// Rev is the line's rev when it could be read from the whole line (valid JSON, not over
	// MaxLineBytes, a positive integer), else 0: Raw, cut, may no longer hold it.
	Rev int64
	// End reports an end line that breaks the contract: its page cannot be counted or followed,
	// so the page is not applied and the reason is the page's error.
	End bool
}

func (e *MalformedError) Error() string {
	if e.ID != "" {
		return fmt.Sprintf("line %d: id %q: %s", e.Line, e.ID, e.Reason)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// ErrTruncated means the response ended before the end line of a page: the page must be discarded
// and asked for again.
var ErrTruncated = errors.New("feed: page cut short before its end line")

// Line is one decoded feed line: exactly one of Change, End or Malformed is set.
type Line struct {
	Change    *Change
	End       *PageEnd
	Malformed *MalformedError
}

// Decoder reads feed lines from an NDJSON response body.
type Decoder struct {
	r          *bufio.Reader
	collection string
	line       int
	buf        []byte
}

// NewDecoder returns a Decoder for a feed response of the given collection.
func NewDecoder(r io.Reader, collection string) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10), collection: collection}
}

// Next returns the next line. It returns io.EOF at a clean end of the stream (after an end line or
// with no line at all), ErrTruncated when the stream stops inside a line, and another error when
// reading fails. A line longer than MaxLineBytes is returned as Malformed and skipped.
func (d *Decoder) Next() (Line, error) {
	d.buf = d.buf[:0]
	tooLong := false
	for {
		chunk, err := d.r.ReadSlice('\n')
		if !tooLong {
			if len(d.buf)+len(chunk) > MaxLineBytes+1 {
				// Keep the line's start: it names the item, which then counts as mentioned
				// (a re-snapshot keeps it) and is quarantined under its id.
				tooLong = true
				d.buf = d.buf[:min(len(d.buf), salvageBytes)]
				d.buf = append(d.buf, chunk[:min(len(chunk), salvageBytes-len(d.buf))]...)
			} else {
				d.buf = append(d.buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(d.buf) == 0 && !tooLong {
				return Line{}, io.EOF
			}
			return Line{}, ErrTruncated
		}
		if err != nil {
			return Line{}, fmt.Errorf("feed: read: %w", err)
		}
		break
	}
	d.line++
	if tooLong {
		id := salvageID(d.buf)
		if ValidateID(id) != nil {
			id = ""
		}
		return Line{Malformed: &MalformedError{Line: d.line, ID: id, Reason: fmt.Sprintf("line longer than %d bytes", MaxLineBytes), Raw: clip(d.buf)}}, nil
	}
	return DecodeLine(d.buf, d.collection, d.line), nil
}

// decodeEnd checks an end line's fields: cursor, count and more are required, remaining is an
// estimate and may be left out.
func decodeEnd(raw json.RawMessage, bad func(id, format string, args ...any) Line) Line {
	var e endFields
	if bytes.Equal(raw, []byte("null")) {
		return badEnd(bad("", "end line: null, want an object with cursor, count and more"))
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return badEnd(bad("", "end line: %v", err))
	}
	if err := exactKeys(raw, endKeys); err != nil {
		return badEnd(bad("", "end line: %v", err))
	}
	switch {
	case e.Cursor == nil:
		return badEnd(bad("", "end line without cursor"))
	case e.Count == nil:
		return badEnd(bad("", "end line without count"))
	case e.More == nil:
		return badEnd(bad("", "end line without more"))
	case *e.Count < 0 || *e.Count > MaxPageSize:
		return badEnd(bad("", "end line count %d outside 0..%d", *e.Count, MaxPageSize))
	case *e.Cursor == "" || len(*e.Cursor) > MaxCursorBytes:
		return badEnd(bad("", "end line cursor of %d bytes, want 1..%d", len(*e.Cursor), MaxCursorBytes))
	}
	end := &PageEnd{Cursor: *e.Cursor, Count: *e.Count, More: *e.More}
	if e.Remaining != nil {
		end.Remaining = *e.Remaining
	}
	return Line{End: end}
}

// MaxCursorBytes bounds an end line's cursor.
const MaxCursorBytes = 1024

// badEnd marks l's malformed line as an end line.
func badEnd(l Line) Line {
	l.Malformed.End = true
	return l
}

// lineHead is the union of the fields of change and end lines; End is the end key's value as
// sent, null included.
type lineHead struct {
	Change
	End json.RawMessage `json:"end"`
}

// isEnd reports a line with an end key and no field of a change: an end line, whose faults fail
// its page. A change line that also has an end key is a malformed change.
func (h *lineHead) isEnd() bool {
	return h.End != nil && h.Collection == "" && h.ID == "" && h.Op == "" && h.Rev == 0 && h.Doc == nil
}

// endFields are an end line's fields as sent: nil when missing.
type endFields struct {
	Cursor    *string `json:"cursor"`
	Count     *int    `json:"count"`
	More      *bool   `json:"more"`
	Remaining *int64  `json:"remaining"`
}

// DecodeLine decodes one feed line (with or without its trailing newline) of the given collection.
// It never fails: a line that breaks the contract comes back as Malformed with the reason.
func DecodeLine(b []byte, collection string, lineNo int) Line {
	b = bytes.TrimRight(b, "\r\n")
	if c, ok := fastChange(b, collection); ok {
		c.Line = lineNo
		return Line{Change: c}
	}
	l := decodeLine(b, collection, lineNo)
	if l.Change != nil {
		l.Change.Line = lineNo
	}
	return l
}

// decodeLine is DecodeLine with encoding/json, for any line.
func decodeLine(b []byte, collection string, lineNo int) Line {
	var h lineHead
	bad := func(id, format string, args ...any) Line {
		if ValidateID(id) != nil {
			id = "" // an end line's, a mixed line's: not checked yet
		}
		if id != "" && json.Valid(b) {
			// encoding/json takes the last "id" key, in any case: a line that gives two may be
			// the other one's item, and names none for sure.
			if n, _ := topLevelID(b); n != 1 {
				id = ""
			}
		}
		// A reason quotes what the line holds (a currency, a barcode, an op): cut, and copied
		// out of the line, which may be a megabyte, so that a page of such lines holds little.
		reason := cutReason(fmt.Sprintf(format, args...))
		return Line{Malformed: &MalformedError{Line: lineNo, ID: strings.Clone(id), Reason: reason, Raw: clip(b), Rev: max(h.Rev, 0)}}
	}
	if !utf8.Valid(b) {
		// encoding/json would put U+FFFD in place of the bytes: a text changed in silence.
		return bad(salvageID(b), "not valid UTF-8")
	}
	if err := json.Unmarshal(b, &h); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			// A field of the wrong type in valid JSON: the decoder went on to the end.
			if h.isEnd() {
				return badEnd(bad("", "end line: %v", err))
			}
			// The item is the top-level id's, not the first "id" in the text: with its keys in
			// sorted order, the document's own comes first and may be another item's.
			n, id := topLevelID(b)
			if n < 0 { // an array, a string or a number: valid JSON, but no object
				return bad("", "not a JSON object: %v", err)
			}
			return bad(id, "a field of the wrong type: %v", err)
		}
		return bad(salvageID(b), "not a JSON object: %v", err)
	}
	if err := exactKeys(b, lineKeys); err != nil {
		if h.isEnd() { // an end line ("End", or "end" twice): its faults fail its page
			return badEnd(bad("", "end line: %v", err))
		}
		if topLevelCount(b, "rev") > 1 {
			h.Rev = 0 // which of its revs the line means cannot be told
		}
		return bad(h.ID, "%v", err)
	}
	if h.End != nil {
		if !h.isEnd() {
			return bad(h.ID, "end line mixed with a change")
		}
		return decodeEnd(h.End, bad)
	}
	c := h.Change
	if err := ValidateID(c.ID); err != nil {
		return bad("", "%v", err)
	}
	if c.Collection != collection {
		return bad(c.ID, "collection %q in a %s feed", c.Collection, collection)
	}
	if c.Rev <= 0 {
		return bad(c.ID, "rev must be a positive integer")
	}
	switch c.Op {
	case OpDelete:
		c.Doc = nil
	case OpUpsert:
		if len(c.Doc) == 0 || bytes.Equal(c.Doc, []byte("null")) {
			return bad(c.ID, "upsert without a doc")
		}
		if err := exactKeys(c.Doc, docKeys[collection]); err != nil {
			return bad(c.ID, "doc: %v", err)
		}
		if collection == Products {
			p, err := ParseProduct(c.ID, c.Doc)
			if err != nil {
				return bad(c.ID, "%v", err)
			}
			c.Product = &p
		} else if err := ValidateDoc(collection, c.ID, c.Doc); err != nil {
			return bad(c.ID, "%v", err)
		}
	default:
		return bad(c.ID, "op %q is neither upsert nor delete", c.Op)
	}
	return Line{Change: &c}
}

// The keys of a feed line and of each collection's document. encoding/json takes a key in
// another case ("ID", "Name") for a field, and the last of two: the contract's keys are
// case-sensitive and given once, and a line or document that breaks that is malformed, rather
// than stored with the field it seems to lack (a product whose "name" is "Name") or applied to
// the item of its last "Id". The fast path takes only the exact keys, once each.
var (
	lineKeys = []string{"collection", "id", "op", "rev", "doc", "end"}
	endKeys  = jsonNames[endFields]()
	docKeys  = map[string][]string{
		Products: jsonNames[Product](),
		Prices:   jsonNames[Price](),
		Stock:    jsonNames[StockLevel](),
		Media:    jsonNames[MediaManifest](),
		Settings: jsonNames[Setting](),
	}
)

// jsonNames are the JSON names of the fields of the struct T.
func jsonNames[T any]() []string {
	t := reflect.TypeFor[T]()
	var out []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// exactKeys checks that the JSON object b (valid JSON) gives each of names at most once, and in
// its own case; other keys pass.
func exactKeys(b []byte, names []string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil // not an object: the decoding says so
	}
	var seen uint64
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
		key, _ := t.(string)
		for i, name := range names {
			if !strings.EqualFold(key, name) {
				continue
			}
			if key != name {
				return fmt.Errorf("key %q: keys are case-sensitive, want %q", cutReason(key), name)
			}
			if seen&(1<<i) != 0 {
				return fmt.Errorf("key %q appears twice", name)
			}
			seen |= 1 << i
		}
	}
	return nil
}

// idKeyRE finds the first "id" key of a line, and idStringRE the string after it, escapes
// included (a cloud's JSON encoder may write an accented letter as \u00e9).
var (
	idKeyRE    = regexp.MustCompile(`"id"\s*:\s*`)
	idStringRE = regexp.MustCompile(`^"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})+"`)
)

// salvageBytes is how much of a line's start salvageID reads.
const salvageBytes = 4096

// salvageID finds the item id in a line that is not valid JSON, so the quarantine can name the
// item and a later valid change of it can clear the entry. It returns "" when none is found.
// Only the first "id" key counts: when its string cannot be read, another one further on (a
// document's, say) would name another item.
func salvageID(b []byte) string {
	b = b[:min(len(b), salvageBytes)]
	key := idKeyRE.FindIndex(b)
	if key == nil {
		return ""
	}
	s := idStringRE.Find(b[key[1]:])
	var id string
	if s == nil || json.Unmarshal(s, &id) != nil || ValidateID(id) != nil {
		return ""
	}
	return id
}

// topLevelCount counts the keys of the JSON object b (valid JSON) that encoding/json would read
// as key, in any case, not those of the objects inside it; -1 when b is not an object.
func topLevelCount(b []byte, key string) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return -1
	}
	n := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return -1
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return -1
		}
		if k, _ := t.(string); strings.EqualFold(k, key) {
			n++
		}
	}
	return n
}

// topLevelID reads the keys of a JSON object that encoding/json would read as its "id" (in any
// case), not those of the objects inside it: n counts them (-1 when b is not an object), id is
// the value of the last when it is a string.
func topLevelID(b []byte) (n int, id string) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return -1, ""
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return -1, ""
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return -1, ""
		}
		if k, _ := t.(string); strings.EqualFold(k, "id") {
			n++
			id = ""
			json.Unmarshal(value, &id)
		}
	}
	return n, id
}

// ValidateID checks an item id against the contract.
func ValidateID(id string) error {
	if id == "" {
		return errors.New("id is missing")
	}
	if len(id) > MaxIDBytes {
		return fmt.Errorf("id longer than %d bytes", MaxIDBytes)
	}
	if !utf8.ValidString(id) {
		return errors.New("id is not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) { // C0, DEL and C1
			return errors.New("id contains a control character")
		}
	}
	return nil
}

// ValidateDoc checks an upsert document of a collection against the contract.
func ValidateDoc(collection, id string, doc []byte) error {
	switch collection {
	case Products:
		_, err := ParseProduct(id, doc)
		return err
	case Prices:
		var p Price
		if err := strictUnmarshal(doc, &p); err != nil {
			return err
		}
		return checkPrice(id, &p)
	case Stock:
		var s StockLevel
		if err := strictUnmarshal(doc, &s); err != nil {
			return err
		}
		return checkStock(id, &s)
	case Media:
		var m MediaManifest
		if err := strictUnmarshal(doc, &m); err != nil {
			return err
		}
		return checkMedia(id, &m)
	case Settings:
		var s Setting
		if err := strictUnmarshal(doc, &s); err != nil {
			return err
		}
		if s.Key != id {
			return fmt.Errorf("doc key %q differs from id", s.Key)
		}
		if len(s.Value) == 0 {
			return errors.New("value is missing")
		}
	default:
		return fmt.Errorf("unknown collection %q", collection)
	}
	return nil
}

// ParseProduct decodes and validates a product document.
func ParseProduct(id string, doc []byte) (Product, error) {
	var p Product
	if err := strictUnmarshal(doc, &p); err != nil {
		return p, err
	}
	return p, checkProduct(id, &p)
}

// The rules of each document, after decoding.

func checkProduct(id string, p *Product) error {
	if p.ID != id {
		return fmt.Errorf("doc id %q differs from id", p.ID)
	}
	if p.Name == "" {
		return errors.New("name is missing")
	}
	if len(p.Barcodes) > 32 {
		return errors.New("more than 32 barcodes")
	}
	for _, b := range p.Barcodes {
		if !isBarcode(b) {
			return fmt.Errorf("barcode %q is not 1..64 of [0-9A-Za-z-]", b)
		}
	}
	return nil
}

func checkPrice(id string, p *Price) error {
	if p.ProductID != id {
		return fmt.Errorf("doc product_id %q differs from id", p.ProductID)
	}
	if !isCurrency(p.Currency) {
		return fmt.Errorf("currency %q is not an ISO 4217 code", p.Currency)
	}
	if p.Amount < 0 || p.ListAmount < 0 {
		return errors.New("amount must not be negative")
	}
	return nil
}

func checkStock(id string, s *StockLevel) error {
	if s.ProductID != id {
		return fmt.Errorf("doc product_id %q differs from id", s.ProductID)
	}
	return nil
}

// MaxMediaSize bounds a media item's size: far above any file a shop's devices show, and low
// enough that the sizes of millions of items add up without overflow.
const MaxMediaSize = 1 << 40

func checkMedia(id string, m *MediaManifest) error {
	if m.ID != id {
		return fmt.Errorf("doc id %q differs from id", m.ID)
	}
	if m.Blob == "" || len(m.Blob) > 1024 {
		return errors.New("blob name must be 1..1024 bytes")
	}
	if m.Size <= 0 || m.Size > MaxMediaSize {
		return fmt.Errorf("size must be 1..%d bytes (1 TiB)", int64(MaxMediaSize))
	}
	if !isMD5(m.MD5) {
		return errors.New("md5 must be the base64 of 16 bytes")
	}
	return nil
}

// isCurrency reports whether s is three upper-case ASCII letters.
func isCurrency(s string) bool {
	return len(s) == 3 && isUpper(s[0]) && isUpper(s[1]) && isUpper(s[2])
}

// isBarcode reports whether s is 1..64 of [0-9A-Za-z-].
// IsBarcode reports whether s is a barcode the contract allows: 1–64 of [0-9A-Za-z-].
func IsBarcode(s string) bool { return isBarcode(s) }

func isBarcode(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

// isMD5 reports whether s is the padded standard base64 of 16 bytes: 22 of [A-Za-z0-9+/], "==".
func isMD5(s string) bool {
	if len(s) != 24 || s[22] != '=' || s[23] != '=' {
		return false
	}
	for i := 0; i < 22; i++ {
		if c := s[i]; !isAlnum(c) && c != '+' && c != '/' {
			return false
		}
	}
	// The last character holds the sixteenth byte's last 2 bits and 4 bits of padding, which
	// must be 0 (RFC 4648, section 3.5): another (B for A) decodes to the same bytes, and the
	// MD5 would not be the one storeedge writes back (in the status, against its failures).
	return strings.IndexByte("AQgw", s[21]) >= 0
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

func isAlnum(c byte) bool { return isUpper(c) || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func strictUnmarshal(doc []byte, v any) error {
	if len(doc) == 0 || doc[0] != '{' {
		return errors.New("doc is not a JSON object")
	}
	if err := json.Unmarshal(doc, v); err != nil {
		return fmt.Errorf("doc: %v", err)
	}
	return nil
}

// maxReasonBytes bounds the reason of a malformed line.
const maxReasonBytes = 512

// cutReason returns s, or its first maxReasonBytes or fewer cut on a character boundary and
// followed by "…", in memory of its own (s may quote a megabyte of the line). The package is a
// leaf of the project: it cannot take internal/clip's.
func cutReason(s string) string {
	if len(s) <= maxReasonBytes {
		return strings.Clone(s)
	}
	cut := maxReasonBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.Clone(s[:cut]) + "…"
}

func clip(b []byte) []byte {
	if len(b) > 512 {
		b = b[:512]
	}
	return append([]byte(nil), b...)
}

// Event is one entry of an upload batch.
type Event struct {
	Key  string          `json:"key"`
	Type string          `json:"type"`
	At   string          `json:"at"`
	Data json.RawMessage `json:"data"`
}

// UploadRequest is the body of POST /v1/events.
type UploadRequest struct {
	Events []Event `json:"events"`
}

// Rejection is a permanently refused event.
type Rejection struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// UploadResponse is the answer to POST /v1/events.
type UploadResponse struct {
	Accepted  []string    `json:"accepted"`
	Duplicate []string    `json:"duplicate"`
	Rejected  []Rejection `json:"rejected"`
}

// RemoteConfig is the answer to GET /v1/config. storeedge uses servicebus.queue and
// media.container_url (cloud-api.md); the other fields are kept as the cloud wrote them, and
// neither they nor a wrong type in one of the two used fields fail the answer: a numeric
// store_id, say, must not keep the shop from its queue. A used field of the wrong type is said
// by its Problem.
type RemoteConfig struct {
	StoreID          json.RawMessage  `json:"store_id,omitempty"`
	Name             json.RawMessage  `json:"name,omitempty"`
	ServiceBus       RemoteServiceBus `json:"servicebus"`
	Media            RemoteMedia      `json:"media"`
	Flags            json.RawMessage  `json:"flags,omitempty"`
	HeartbeatSeconds json.RawMessage  `json:"heartbeat_seconds,omitempty"`
}

// RemoteServiceBus is the servicebus object of the remote configuration.
type RemoteServiceBus struct {
	Namespace json.RawMessage `json:"namespace,omitempty"`
	Queue     string          `json:"queue"`
	Problem   string          `json:"-"` // what is wrong with the object or its queue, "" when nothing
}

// UnmarshalJSON reads the object leniently: a wrong type is its Problem, not an error.
func (s *RemoteServiceBus) UnmarshalJSON(b []byte) error {
	var v struct {
		Namespace json.RawMessage `json:"namespace"`
		Queue     json.RawMessage `json:"queue"`
	}
	*s = RemoteServiceBus{}
	switch {
	case string(b) == "null":
	case json.Unmarshal(b, &v) != nil:
		s.Problem = "servicebus is not an object"
	default:
		s.Namespace = v.Namespace
		if len(v.Queue) > 0 && string(v.Queue) != "null" && json.Unmarshal(v.Queue, &s.Queue) != nil {
			s.Problem = "servicebus.queue is not a text"
		}
	}
	return nil
}

// RemoteMedia is the media object of the remote configuration.
type RemoteMedia struct {
	ContainerURL string `json:"container_url"`
	Problem      string `json:"-"` // what is wrong with the object or its URL, "" when nothing
}

// UnmarshalJSON reads the object leniently: a wrong type is its Problem, not an error.
func (m *RemoteMedia) UnmarshalJSON(b []byte) error {
	var v struct {
		ContainerURL json.RawMessage `json:"container_url"`
	}
	*m = RemoteMedia{}
	switch {
	case string(b) == "null":
	case json.Unmarshal(b, &v) != nil:
		m.Problem = "media is not an object"
	case len(v.ContainerURL) > 0 && string(v.ContainerURL) != "null" && json.Unmarshal(v.ContainerURL, &m.ContainerURL) != nil:
		m.Problem = "media.container_url is not a text"
	}
	return nil
}

// JSONText is s as a JSON string, for the fields of RemoteConfig kept as the cloud wrote them.
func JSONText(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// Text is a field kept as the cloud wrote it, for people: a JSON string's text, anything else
// as written; at most max bytes, cut on a character boundary, control characters, format
// characters (bidirectional marks and overrides, invisible ones, tags) and line separators made
// spaces; the zero-width joiner and non-joiner stay, which Persian names and emoji need.
func Text(raw json.RawMessage, max int) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp) || unicode.Is(unicode.Cf, r) && r != 0x200C && r != 0x200D {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	// internal/clip's String, which this leaf package may not import (TestLayering).
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// CollectionState is one collection's entry in a heartbeat.
type CollectionState struct {
	Cursor      string `json:"cursor"`
	LastSuccess string `json:"last_success,omitempty"`
	Rows        int64  `json:"rows"`
	Quarantined int64  `json:"quarantined"`
}

// Heartbeat is the body of POST /v1/heartbeat.
type Heartbeat struct {
	ServerID    string                     `json:"server_id"`
	Version     string                     `json:"version"`
	StartedAt   string                     `json:"started_at"`
	Collections map[string]CollectionState `json:"collections"`
	WAN         string                     `json:"wan"`
}
