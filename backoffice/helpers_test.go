package backoffice

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	goleak.VerifyTestMain(m)
}

func openDB(t testing.TB, path string) *storage.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "shop.db")
	}
	db, err := storage.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var orderSeq atomic.Int64

// createOrder stores an order with two lines; every third has a customer, and the note and
// names carry characters that each format must escape.
func createOrder(t testing.TB, db *storage.DB, test bool) orders.Order {
	t.Helper()
	n := orderSeq.Add(1)
	o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos-1", Status: orders.StatusNew, Currency: "EUR", Test: test,
		Note: fmt.Sprintf("note %d, \"quoted\" <b>&amp;</b>\nsecond line é", n),
		Lines: []orders.Line{
			{ProductID: "P1", Name: "Tea, green", Quantity: 2, UnitPrice: 250, LineTotal: 500},
			{ProductID: "P2", Name: "Café \"noir\" <grand>", Quantity: 1, UnitPrice: 320, LineTotal: 320},
		},
		Total: 820}
	if n%3 == 0 {
		o.Customer = &orders.Customer{Name: "Zoë O'Neil; Jr.", Phone: "+33 1 23", Email: "z@example.com"}
		o.Note = ""
	}
	stored, _, err := db.CreateOrder(context.Background(), storage.NewOrder{Order: o, IdempotencyKey: strconv.FormatInt(n, 10), RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func createOrders(t testing.TB, db *storage.DB, n int, test bool) []orders.Order {
	t.Helper()
	var out []orders.Order
	for i := 0; i < n; i++ {
		out = append(out, createOrder(t, db, test))
	}
	return out
}

// agentFor returns an agent on db with the given folders, in production mode unless test.
func agentFor(db *storage.DB, test bool, bo config.BackOffice) *Agent {
	mode := config.ModeProduction
	if test {
		mode = config.ModeTest
	}
	return New(Options{DB: db, Config: bo, Shop: config.Shop{Mode: mode}, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, ImportSettle: -1})
}

// readOrderFiles parses every order file of a folder (in name order) and returns the orders
// in file order. It fails the test on a temporary or unparsable file.
func readOrderFiles(t *testing.T, dir string) (list []Order, files []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == folderMarker {
			continue
		}
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("a dot file is left in %s: %s", dir, e.Name())
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, e.Name())
		got, err := parseOrders(filepath.Ext(e.Name())[1:], data)
		if err != nil {
			t.Fatalf("%s: %v\n%s", e.Name(), err, data)
		}
		list = append(list, got...)
	}
	return list, files
}

// parseOrders reads an order file back the way an ERP would.
func parseOrders(format string, data []byte) ([]Order, error) {
	switch format {
	case "json":
		var out []Order
		err := json.Unmarshal(data, &out)
		return out, err
	case "xml":
		var doc struct {
			XMLName xml.Name `xml:"orders"`
			Orders  []Order  `xml:"order"`
		}
		err := xml.Unmarshal(data, &doc)
		for i := range doc.Orders {
			doc.Orders[i].XMLName = xml.Name{}
			if doc.Orders[i].Lines == nil {
				doc.Orders[i].Lines = []Line{}
			}
		}
		return doc.Orders, err
	case "csv":
		r := csv.NewReader(strings.NewReader(string(data)))
		recs, err := r.ReadAll()
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 || strings.Join(recs[0], ",") != strings.Join(CSVHeader, ",") {
			return nil, fmt.Errorf("header %v", recs)
		}
		var out []Order
		for _, rec := range recs[1:] {
			col := func(name string) string {
				for i, h := range CSVHeader {
					if h == name {
						return rec[i]
					}
				}
				panic(name)
			}
			num := func(name string) int64 {
				v, err := strconv.ParseInt(col(name), 10, 64)
				if err != nil {
					panic(fmt.Sprintf("%s: %v", name, err))
				}
				return v
			}
			if len(out) == 0 || out[len(out)-1].ID != col("order_id") {
				o := Order{ID: col("order_id"), Number: num("number"), CreatedAt: col("created_at"), Status: col("status"),
					Currency: col("currency"), Total: num("total"), Note: col("note"), Test: col("test") == "true", Lines: []Line{}}
				if c := col("customer_name"); c != "" {
					o.Customer = &Customer{Name: c}
				}
				out = append(out, o)
			}
			if col("product_id") != "" {
				o := &out[len(out)-1]
				o.Lines = append(o.Lines, Line{ProductID: col("product_id"), Name: col("name"), Quantity: num("quantity"),
					UnitPrice: num("unit_price"), LineTotal: num("line_total")})
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

// csvView is what the CSV format carries of an order.
func csvView(o Order) Order {
	v := Order{ID: o.ID, Number: o.Number, CreatedAt: o.CreatedAt, Status: o.Status, Currency: o.Currency, Total: o.Total,
		Note: o.Note, Test: o.Test, Lines: o.Lines}
	if o.Customer != nil && o.Customer.Name != "" {
		v.Customer = &Customer{Name: o.Customer.Name}
	}
	return v
}

// wantOrders returns the export view of the stored orders, reloaded, by number.
func wantOrders(t *testing.T, db *storage.DB, list []orders.Order) []Order {
	t.Helper()
	var out []Order
	for _, o := range list {
		stored, err := db.GetOrder(context.Background(), o.ID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ExportOrder(stored))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}

// ids returns the order ids, and fails the test when one appears twice.
func idsOnce(t *testing.T, list []Order) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range list {
		if seen[o.ID] {
			t.Errorf("order %d (%s) exported twice", o.Number, o.ID)
		}
		seen[o.ID] = true
	}
	return seen
}

func countStage(t *testing.T, db *storage.DB, orderID, stage string) int {
	t.Helper()
	entries, err := db.OrderLedger(context.Background(), orderID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Stage == stage {
			n++
		}
	}
	return n
}
