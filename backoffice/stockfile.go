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
		return nil, nil, lineErr(1, "the header row %q lacks product_id or quantity: want a header row \"product_id,quantity\"", strings.Join(header, string(r.Comma)))
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, lines, nil
		}
		if err != nil {
			return nil, nil, csvErr(err)
		}
		line, _ := r.FieldPos(0)
		if len(rows) == MaxStockRows {
			return nil, nil, tooMany(line)
		}
		qty := strings.TrimSpace(rec[qtyCol])
		q, err := strconv.ParseInt(qty, 10, 64)
		if err != nil {
			return nil, nil, lineErr(line, "quantity %q is not a whole number", qty)
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
	// Line numbers are counted incrementally as the decoder moves on.
	line, counted := 1, 0
	lineAt := func(off int64) int {
		end := min(max(int(off), 0), len(data))
		if end < counted { // an error offset may point back
			line, counted = 1, 0
		}
		if end > counted {
			line += bytes.Count(data[counted:end], []byte("\n"))
			counted = end
		}
		return line
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	jsonErr := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return lineErr(lineAt(se.Offset), "not valid JSON: %s", se)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return lineErr(lineAt(int64(len(data))), "the file ends before the array is closed (was it cut short?)")
		}
		return lineErr(lineAt(dec.InputOffset()), "not valid JSON: %s", err)
	}
	start := lineAt(int64(skipSpace(data, 0)))
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, nil, lineErr(1, "empty file: want a JSON array [{\"product_id\": …, \"quantity\": …}]")
	}
	if err != nil {
		return nil, nil, jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, nil, lineErr(start, "want a JSON array [{\"product_id\": …, \"quantity\": …}]")
	}
	var item struct {
		ProductID json.RawMessage `json:"product_id"`
		Quantity  json.RawMessage `json:"quantity"`
	}
	for dec.More() {
		// Where the item starts: past spaces and the comma before it, if any.
		i := skipSpace(data, int(dec.InputOffset()))
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		at := lineAt(int64(i))
		n := len(rows) + 1
		if len(rows) == MaxStockRows {
			return nil, nil, tooMany(at)
		}
		if i < len(data) && data[i] != '{' {
			return nil, nil, lineErr(at, "item %d is not an object {\"product_id\": …, \"quantity\": …}", n)
		}
		item.ProductID, item.Quantity = nil, nil
		if err := dec.Decode(&item); err != nil {
			return nil, nil, jsonErr(err)
		}
		var id string
		if item.ProductID == nil {
			return nil, nil, lineErr(at, "item %d has no product_id", n)
		} else if err := json.Unmarshal(item.ProductID, &id); err != nil || string(item.ProductID) == "null" {
			return nil, nil, lineErr(at, "item %d: product_id %s is not a string", n, clip(item.ProductID))
		}
		if item.Quantity == nil {
			return nil, nil, lineErr(at, "item %d has no quantity", n)
		}
		q, err := strconv.ParseInt(string(item.Quantity), 10, 64)
		if err != nil {
			return nil, nil, lineErr(at, "item %d: quantity %s is not a whole number", n, clip(item.Quantity))
		}
		rows = append(rows, storage.StockLevel{Row: n, ProductID: id, Quantity: q})
		lines = append(lines, at)
	}
	if _, err := dec.Token(); err != nil { // the closing ]
		return nil, nil, jsonErr(err)
	}
	if tok, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, nil, jsonErr(err)
		}
		return nil, nil, lineErr(lineAt(dec.InputOffset()), "unexpected %v after the array", tok)
	}
	return rows, lines, nil
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
