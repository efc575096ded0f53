package backoffice

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/storeedge/storeedge/storage"
)

// Limits of a stock file.
const (
	MaxStockFileBytes = 10 << 20 // 10 MiB
	MaxStockRows      = 100_000
	MaxProductIDBytes = 256
	MaxQuantity       = 1_000_000_000 // in absolute value
)

// Stock file formats, by file name extension.
const (
	StockCSV  = "csv"
	StockJSON = "json"
)

// StockFileError is what is wrong with a stock file, and where.
type StockFileError struct {
	Line int // 1-based line of the file; 0 when the problem is the file as a whole
	Msg  string
}

func (e *StockFileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

func lineErr(line int, format string, args ...any) error {
	return &StockFileError{Line: line, Msg: fmt.Sprintf(format, args...)}
}

// ParseStockFile reads a stock file from the back office: the stock level of each product, as
// CSV (format StockCSV: a header row naming the columns product_id and quantity, in any order,
// other columns ignored; comma or semicolon separated) or JSON (StockJSON: an array of objects
// {"product_id": string, "quantity": integer}, other fields ignored). A product may appear once.
// Every problem is a *StockFileError naming the line; a file with any problem yields no rows.
func ParseStockFile(format string, data []byte) ([]storage.StockLevel, error) {
	if len(data) > MaxStockFileBytes {
		return nil, &StockFileError{Msg: fmt.Sprintf("the file is %d bytes; the limit is %d (10 MiB): split it", len(data), MaxStockFileBytes)}
	}
	if !utf8.Valid(data) {
		return nil, lineErr(invalidUTF8Line(data), "not UTF-8 text: save the file as UTF-8")
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF")) // a byte order mark, as Windows tools write
	var rows []storage.StockLevel
	var lines []int
	var err error
	switch format {
	case StockCSV:
		rows, lines, err = parseStockCSV(data)
	case StockJSON:
		rows, lines, err = parseStockJSON(data)
	default:
		return nil, &StockFileError{Msg: fmt.Sprintf("unknown stock file format %q: want csv or json", format)}
	}
	if err != nil {
		return nil, err
	}
	seen := make(map[string]int, len(rows))
	for i, r := range rows {
		if err := checkProductID(r.ProductID); err != nil {
			return nil, lineErr(lines[i], "product_id %s", err)
		}
		if r.Quantity > MaxQuantity || r.Quantity < -MaxQuantity {
			return nil, lineErr(lines[i], "quantity %d is out of range (at most %d either way)", r.Quantity, MaxQuantity)
		}
		if first, dup := seen[r.ProductID]; dup {
			return nil, lineErr(lines[i], "product_id %q is already on line %d: give each product once", r.ProductID, first)
		}
		seen[r.ProductID] = lines[i]
	}
	return rows, nil
}

func checkProductID(id string) error {
	switch {
	case id == "":
		return errors.New("is empty")
	case len(id) > MaxProductIDBytes:
		return fmt.Errorf("is longer than %d bytes", MaxProductIDBytes)
	case strings.IndexFunc(id, unicode.IsControl) >= 0:
		return fmt.Errorf("%q contains a control character", id)
	case strings.ContainsRune(id, utf8.RuneError):
		return fmt.Errorf("%q contains U+FFFD, the mark of a character lost (in JSON, a lone \\uD800-\\uDFFF escape)", id)
	}
	return nil
}

func invalidUTF8Line(data []byte) int {
	line := 1
	for len(data) > 0 {
		r, n := utf8.DecodeRune(data)
		if r == utf8.RuneError && n <= 1 {
			return line
		}
		if r == '\n' {
			line++
		}
		data = data[n:]
	}
	return line
}

func tooMany(line int) error {
	return lineErr(line, "more than %d rows: split the file", MaxStockRows)
}

func parseStockCSV(data []byte) (rows []storage.StockLevel, lines []int, err error) {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	r := csv.NewReader(bytes.NewReader(data))
	if bytes.IndexByte(first, ';') >= 0 && bytes.IndexByte(first, ',') < 0 {
		r.Comma = ';' // spreadsheets in locales with a decimal comma
	}
	r.ReuseRecord = true
	r.TrimLeadingSpace = true // P1, "5": the space before a quoted value is no part of it
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, lineErr(1, "empty file: want a header row \"product_id,quantity\"")
	}
	if err != nil {
		return nil, nil, csvErr(err)
	}
	idCol, qtyCol := -1, -1
	for i, h := range header {
		switch strings.ToLower(strings.TrimSpace(h)) {
		case "product_id":
			if idCol >= 0 {
				return nil, nil, lineErr(1, "column product_id appears twice in the header")
			}
			idCol = i
		case "quantity":
			if qtyCol >= 0 {
				return nil, nil, lineErr(1, "column quantity appears twice in the header")
			}
			qtyCol = i
		}
	}
	if idCol < 0 || qtyCol < 0 {
		return nil, nil, lineErr(1, "the header row %q lacks product_id or quantity: want a header row \"product_id,quantity\"", clip([]byte(strings.Join(header, string(r.Comma)))))
	}
	fields := len(header)
	r.FieldsPerRecord = -1 // counted here: a line of spaces alone is blank, as an empty one is
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, lines, nil
		}
		if err != nil {
			return nil, nil, csvErr(err)
		}
		line, _ := r.FieldPos(0)
		if len(rec) != fields {
			if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
				continue
			}
			return nil, nil, lineErr(line, "wrong number of fields: each row needs as many as the header row")
		}
		if len(rows) == MaxStockRows {
			return nil, nil, tooMany(line)
		}
		qty := strings.TrimSpace(rec[qtyCol])
		q, err := strconv.ParseInt(qty, 10, 64)
		if errors.Is(err, strconv.ErrRange) {
			return nil, nil, lineErr(line, "quantity %s is out of range (at most %d either way)", clip([]byte(qty)), MaxQuantity)
		} else if err != nil {
			return nil, nil, lineErr(line, "quantity %q is not a whole number", clip([]byte(qty)))
		}
		rows = append(rows, storage.StockLevel{Row: len(rows) + 1, ProductID: strings.TrimSpace(rec[idCol]), Quantity: q})
		lines = append(lines, line)
	}
}

func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, csv.ErrFieldCount):
			return lineErr(pe.Line, "wrong number of fields: each row needs as many as the header row")
		case errors.Is(pe.Err, csv.ErrBareQuote), errors.Is(pe.Err, csv.ErrQuote):
			return lineErr(pe.Line, "column %d: %s (a field with a \" must be quoted whole, with the \" doubled)", pe.Column, pe.Err)
		}
		return lineErr(pe.Line, "%s", pe.Err)
	}
	return &StockFileError{Msg: err.Error()}
}

func parseStockJSON(data []byte) (rows []storage.StockLevel, lines []int, err error) {
	p := &stockJSON{data: data, line: 1, dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	if err := p.open(); err != nil {
		return nil, nil, err
	}
	for p.dec.More() {
		row, at, err := p.item(len(rows) + 1)
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, row)
		lines = append(lines, at)
	}
	if err := p.close(); err != nil {
		return nil, nil, err
	}
	return rows, lines, nil
}

// stockJSON reads a JSON stock file, knowing the line of each offset for the error messages.
type stockJSON struct {
	data    []byte
	dec     *json.Decoder
	line    int // the line of offset counted
	counted int
}

// lineAt is the line of offset off. Lines are counted incrementally as the decoder moves on.
func (p *stockJSON) lineAt(off int64) int {
	end := min(max(int(off), 0), len(p.data))
	if end < p.counted { // an error offset may point back
		p.line, p.counted = 1, 0
	}
	if end > p.counted {
		p.line += bytes.Count(p.data[p.counted:end], []byte("\n"))
		p.counted = end
	}
	return p.line
}

// jsonErr words a decoding error with its line.
func (p *stockJSON) jsonErr(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return lineErr(p.lineAt(se.Offset), "not valid JSON: %s", se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return lineErr(p.lineAt(int64(len(p.data))), "the file ends before the array is closed (was it cut short?)")
	}
	return lineErr(p.lineAt(p.dec.InputOffset()), "not valid JSON: %s", err)
}

// open reads the array's opening bracket.
func (p *stockJSON) open() error {
	start := p.lineAt(int64(skipSpace(p.data, 0)))
	tok, err := p.dec.Token()
	if errors.Is(err, io.EOF) {
		return lineErr(1, "empty file: want a JSON array [{\"product_id\": …, \"quantity\": …}]")
	}
	if err != nil {
		return p.jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return lineErr(start, "want a JSON array [{\"product_id\": …, \"quantity\": …}]")
	}
	return nil
}

// item reads the n-th item of the array and returns it with its line.
func (p *stockJSON) item(n int) (storage.StockLevel, int, error) {
	// Where the item starts: past spaces and the comma before it, if any.
	i := skipSpace(p.data, int(p.dec.InputOffset()))
	if i < len(p.data) && p.data[i] == ',' {
		i = skipSpace(p.data, i+1)
	}
	at := p.lineAt(int64(i))
	if n > MaxStockRows {
		return storage.StockLevel{}, at, tooMany(at)
	}
	if i < len(p.data) && p.data[i] != '{' {
		return storage.StockLevel{}, at, lineErr(at, "item %d is not an object {\"product_id\": …, \"quantity\": …}", n)
	}
	var raw json.RawMessage
	if err := p.dec.Decode(&raw); err != nil {
		return storage.StockLevel{}, at, p.jsonErr(err)
	}
	var item struct {
		ProductID json.RawMessage `json:"product_id"`
		Quantity  json.RawMessage `json:"quantity"`
	}
	if err := json.Unmarshal(raw, &item); err != nil {
		return storage.StockLevel{}, at, lineErr(at, "item %d: %s", n, err)
	}
	// encoding/json would take the last of a field given twice (in any case), silently.
	if k := duplicateField(raw, "product_id", "quantity"); k != "" {
		return storage.StockLevel{}, at, lineErr(at, "item %d gives %s twice", n, k)
	}
	var id string
	if item.ProductID == nil {
		return storage.StockLevel{}, at, lineErr(at, "item %d has no product_id", n)
	} else if err := json.Unmarshal(item.ProductID, &id); err != nil || string(item.ProductID) == "null" {
		return storage.StockLevel{}, at, lineErr(at, "item %d: product_id %s is not a string", n, clip(item.ProductID))
	}
	if item.Quantity == nil {
		return storage.StockLevel{}, at, lineErr(at, "item %d has no quantity", n)
	}
	q, err := strconv.ParseInt(string(item.Quantity), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return storage.StockLevel{}, at, lineErr(at, "item %d: quantity %s is out of range (at most %d either way)", n, clip(item.Quantity), MaxQuantity)
	} else if err != nil {
		return storage.StockLevel{}, at, lineErr(at, "item %d: quantity %s is not a whole number", n, clip(item.Quantity))
	}
	return storage.StockLevel{Row: n, ProductID: strings.TrimSpace(id), Quantity: q}, at, nil
}

// duplicateField is the first of names that the JSON object obj gives more than once (names
// match in any case, as encoding/json matches them), or "".
func duplicateField(obj []byte, names ...string) string {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		k, _ := t.(string)
		for _, name := range names {
			if strings.EqualFold(k, name) {
				if seen[name] {
					return name
				}
				seen[name] = true
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// close reads the array's closing bracket and checks nothing follows it.
func (p *stockJSON) close() error {
	if _, err := p.dec.Token(); err != nil { // the closing ]
		return p.jsonErr(err)
	}
	if tok, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return p.jsonErr(err)
		}
		return lineErr(p.lineAt(p.dec.InputOffset()), "unexpected %v after the array", tok)
	}
	return nil
}

// skipSpace returns the index of the first byte at or after i that is not JSON white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
}

// clip shortens a JSON value for an error message.
func clip(v []byte) string {
	const n = 40
	if len(v) <= n {
		return string(v)
	}
	for i := n; i > 0; i-- {
		if utf8.RuneStart(v[i]) {
			return string(v[:i]) + "…"
		}
	}
	return "…"
}
