package backoffice

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/orders"
)

// TestNote starts the note of every test order in every export, so that a person or an ERP rule
// looking only at the note still tells a test order from a real one.
const TestNote = "TEST"

// timeFormat is how times are written in exports: UTC, milliseconds, fixed width.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// Order is an order as the back office receives it, in every format (JSON and XML use these
// field names; CSV has one row per line). Amounts are integers in the currency's minor unit
// (cents). The field names are a contract with the ERP: add, never rename.
type Order struct {
	XMLName    xml.Name  `json:"-" xml:"order"`
	ID         string    `json:"id" xml:"id"`
	Number     int64     `json:"number" xml:"number"`
	CreatedAt  string    `json:"created_at" xml:"created_at"`
	Status     string    `json:"status" xml:"status"`
	Source     string    `json:"source" xml:"source"`
	ExternalID string    `json:"external_id" xml:"external_id"`
	DeviceID   string    `json:"device_id" xml:"device_id"`
	Currency   string    `json:"currency" xml:"currency"`
	Total      int64     `json:"total" xml:"total"`
	Test       bool      `json:"test" xml:"test"`
	Note       string    `json:"note" xml:"note"`
	Customer   *Customer `json:"customer" xml:"customer,omitempty"`
	Lines      []Line    `json:"lines" xml:"line"`
}

// Customer is who the order is for, when known.
type Customer struct {
	Name  string `json:"name" xml:"name"`
	Phone string `json:"phone" xml:"phone"`
	Email string `json:"email" xml:"email"`
}

// Line is one product line of an order.
type Line struct {
	ProductID string `json:"product_id" xml:"product_id"`
	Name      string `json:"name" xml:"name"`
	Quantity  int64  `json:"quantity" xml:"quantity"`
	UnitPrice int64  `json:"unit_price" xml:"unit_price"`
	LineTotal int64  `json:"line_total" xml:"line_total"`
}

// ExportOrder is the back office's view of a stored order. A test order's note starts with
// TestNote ("TEST", or "TEST " before the order's own note) and its Test field is true.
func ExportOrder(o orders.Order) Order {
	e := Order{
		ID:         o.ID,
		Number:     o.Number,
		CreatedAt:  o.CreatedAt.UTC().Format(timeFormat),
		Status:     o.Status,
		Source:     o.Source,
		ExternalID: o.ExternalID,
		DeviceID:   o.DeviceID,
		Currency:   o.Currency,
		Total:      o.Total,
		Test:       o.Test,
		Note:       o.Note,
		Lines:      make([]Line, 0, len(o.Lines)),
	}
	if o.Test {
		e.Note = TestNote
		if o.Note != "" {
			e.Note += " " + o.Note
		}
	}
	if c := o.Customer.Known(); c != nil { // an order stored with "customer": {} has none
		e.Customer = &Customer{Name: c.Name, Phone: c.Phone, Email: c.Email}
	}
	for _, l := range o.Lines {
		e.Lines = append(e.Lines, Line{ProductID: l.ProductID, Name: l.Name, Quantity: l.Quantity, UnitPrice: l.UnitPrice, LineTotal: l.LineTotal})
	}
	return e
}

// CSVHeader is the first row of a CSV order file. There is one row per order line; the order's
// own columns repeat on each of its lines, and an order without lines has one row with the line
// columns empty.
var CSVHeader = []string{"order_id", "number", "created_at", "status", "currency", "product_id", "name",
	"quantity", "unit_price", "line_total", "total", "customer_name", "note", "test"}

// extension is the file name extension of a format.
func extension(format string) string {
	switch format {
	case config.ExportCSV:
		return "csv"
	case config.ExportXML:
		return "xml"
	}
	return "json"
}

// writeOrders writes orders to w in a format: config.ExportJSON (an array, one order per line),
// config.ExportCSV (RFC 4180, CRLF, header row) or config.ExportXML (<orders><order>…).
func writeOrders(w io.Writer, format string, list []orders.Order) error {
	bw := bufio.NewWriter(w)
	var err error
	switch format {
	case config.ExportCSV:
		err = writeCSV(bw, list)
	case config.ExportXML:
		err = writeXML(bw, list)
	case config.ExportJSON, "":
		err = writeJSON(bw, list)
	default:
		return fmt.Errorf("unknown export format %q", format)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// marshalOrder is an order as JSON on one line, with <, > and & as they are (json.Marshal
// would escape them for HTML, which an ERP has no use for).
func marshalOrder(o orders.Order) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ExportOrder(o)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func writeJSON(w *bufio.Writer, list []orders.Order) error {
	w.WriteString("[")
	for i, o := range list {
		b, err := marshalOrder(o)
		if err != nil {
			return err
		}
		if i > 0 {
			w.WriteString(",")
		}
		w.WriteString("\n")
		w.Write(b)
	}
	_, err := w.WriteString("\n]\n")
	return err
}

func writeCSV(w io.Writer, list []orders.Order) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, so := range list {
		o := ExportOrder(so)
		customer := ""
		if o.Customer != nil {
			customer = o.Customer.Name
		}
		head := []string{o.ID, strconv.FormatInt(o.Number, 10), o.CreatedAt, o.Status, o.Currency}
		tail := []string{strconv.FormatInt(o.Total, 10), customer, o.Note, strconv.FormatBool(o.Test)}
		if len(o.Lines) == 0 {
			if err := cw.Write(concat(head, []string{"", "", "", "", ""}, tail)); err != nil {
				return err
			}
		}
		for _, l := range o.Lines {
			line := []string{l.ProductID, l.Name, strconv.FormatInt(l.Quantity, 10), strconv.FormatInt(l.UnitPrice, 10), strconv.FormatInt(l.LineTotal, 10)}
			if err := cw.Write(concat(head, line, tail)); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func writeXML(w *bufio.Writer, list []orders.Order) error {
	w.WriteString(xml.Header)
	w.WriteString("<orders>\n")
	for _, o := range list {
		b, err := xml.MarshalIndent(ExportOrder(o), "  ", "  ")
		if err != nil {
			return err
		}
		w.Write(b)
		w.WriteString("\n")
	}
	_, err := w.WriteString("</orders>\n")
	return err
}
