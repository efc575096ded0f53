package backoffice

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/orders"
)

// What back-office.md says each format does with text it cannot keep as it came: CSV writes a
// line break inside a field CRLF and drops a lone CR; XML writes a character XML cannot hold as
// U+FFFD; JSON keeps both. An order with an empty customer has none in every format.
func TestExportFormatsText(t *testing.T) {
	o := orders.Order{ID: "o1", Number: 1, Status: orders.StatusNew, Currency: "EUR", Note: "line1\nline2\rend",
		Customer: &orders.Customer{}, Lines: []orders.Line{orders.NewLine("P1", "Tea\v\uFFFE", 1, 100)}}
	write := func(format string) string {
		var b bytes.Buffer
		if err := writeOrders(&b, format, []orders.Order{o}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	csv, xml, json := write(config.ExportCSV), write(config.ExportXML), write(config.ExportJSON)
	if !strings.Contains(csv, "line1\r\nline2end") {
		t.Errorf("CSV note: %q, want the line break CRLF and the lone CR dropped", csv)
	}
	if !strings.Contains(xml, "Tea\uFFFD\uFFFD") || !strings.Contains(xml, "line1&#xA;line2&#xD;end") {
		t.Errorf("XML: %q, want the name's characters XML cannot hold as U+FFFD, the note's line break kept", xml)
	}
	if !strings.Contains(json, `line1\nline2\rend`) || !strings.Contains(json, `Tea\u000b`) || !strings.Contains(json, "\uFFFE") {
		t.Errorf("JSON: %q, want the text as it came", json)
	}
	if strings.Contains(json, `"customer":{`) || strings.Contains(xml, "<customer>") {
		t.Errorf("an empty customer was exported: %s %s", json, xml)
	}
}

// The CSV's columns are those back-office.md lists, in its order: the header row of its example
// is the one written ("fields are never renamed").
func TestCSVHeaderIsTheDocumentedOne(t *testing.T) {
	page, err := os.ReadFile("../docs/back-office.md")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(page), "```\norder_id,")
	if !ok {
		t.Fatal("back-office.md has no CSV example starting with order_id")
	}
	want, _, _ := strings.Cut("order_id,"+example, "\n")
	var b bytes.Buffer
	if err := writeOrders(&b, config.ExportCSV, []orders.Order{{ID: "o1", Number: 1, Status: orders.StatusNew, Currency: "EUR"}}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := strings.Cut(b.String(), "\r\n"); got != want {
		t.Fatalf("CSV header %q, back-office.md says %q", got, want)
	}
}
