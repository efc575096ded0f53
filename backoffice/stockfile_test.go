package backoffice

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/storage"
)

func TestParseStockFile(t *testing.T) {
	rows := func(pairs ...any) []storage.StockLevel {
		var out []storage.StockLevel
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, storage.StockLevel{Row: i/2 + 1, ProductID: pairs[i].(string), Quantity: int64(pairs[i+1].(int))})
		}
		return out
	}
	for _, c := range []struct {
		name, format, in string
		want             []storage.StockLevel
	}{
		{"csv", "csv", "product_id,quantity\nP1,5\nP2,0\n", rows("P1", 5, "P2", 0)},
		{"csv columns in another order, extra column, spaces", "csv", "name, Quantity ,PRODUCT_ID\nTea, 7 , P1 \n", rows("P1", 7)},
		{"csv semicolons, BOM, CRLF, blank lines", "csv", "\uFEFFproduct_id;quantity\r\n\r\nP1;+3\r\nP2;-2\r\n", rows("P1", 3, "P2", -2)},
		{"csv quoted", "csv", "product_id,quantity\n\"P\"\"1,x\",4\n", rows("P\"1,x", 4)},
		{"csv no rows", "csv", "product_id,quantity\n", nil},
		{"csv a last line of spaces", "csv", "product_id,quantity\nP1,5\n   \n", rows("P1", 5)},
		{"csv a line of spaces between rows, semicolons", "csv", "product_id;quantity\nP1;5\n \t \nP2;6\n", rows("P1", 5, "P2", 6)},
		{"json", "json", `[{"product_id":"P1","quantity":5},{"quantity":-1,"product_id":"P2","x":[1]}]`, rows("P1", 5, "P2", -1)},
		{"json empty", "json", " [ ] \n", nil},
		{"json BOM", "json", "\uFEFF[{\"product_id\":\"é\",\"quantity\":1}]", rows("é", 1)},
		{"csv a space before quoted values", "csv", "product_id, quantity\n\"P1\", \"5\"\n P2 , 6\n", rows("P1", 5, "P2", 6)},
		{"json spaces around the product id, as in CSV", "json", `[{"product_id":" P1 ","quantity":5}]`, rows("P1", 5)},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseStockFile(c.format, []byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseStockFileErrors(t *testing.T) {
	var b, bj strings.Builder
	b.WriteString("product_id,quantity\n")
	bj.WriteString("[\n")
	for i := 0; i <= MaxStockRows; i++ {
		fmt.Fprintf(&b, "P%d,1\n", i)
		fmt.Fprintf(&bj, "{\"product_id\":\"P%d\",\"quantity\":1},\n", i)
	}
	many, manyJSON := b.String(), strings.TrimSuffix(bj.String(), ",\n")+"\n]"
	for _, c := range []struct{ format, in, want string }{
		{"csv", "", "line 1: empty file"},
		{"csv", "sku,qty\nP1,1\n", `line 1: the header row "sku,qty" lacks product_id or quantity`},
		{"csv", "product_id,quantity,product_id\n", "line 1: column product_id appears twice"},
		{"csv", "product_id,quantity\nP1,1\nP2\n", "line 3: wrong number of fields"},
		{"csv", "product_id,quantity\nP1,1.5\n", `line 2: quantity "1.5" is not a whole number`},
		{"csv", "name,product_id,quantity\n\"Tea\ngreen\",P1,4\nCoffee,P2,x\n", `line 4: quantity "x" is not a whole number`},
		{"csv", "product_id,quantity\nP1,\n", `line 2: quantity "" is not a whole number`},
		{"csv", "product_id,quantity\n,1\n", "line 2: product_id is empty"},
		{"csv", "product_id,quantity\nP1,1\n\"P\x01\",1\n", "line 3: product_id \"P\\x01\" contains a control character"},
		{"csv", "product_id,quantity\nP1,1\nP1,2\n", `line 3: product_id "P1" is already on line 2`},
		{"csv", "product_id,quantity\nP\"1,1\n", "line 2: column 2: bare \" in non-quoted-field"},
		{"csv", "product_id,quantity\nP1,2000000000\n", "line 2: quantity 2000000000 is out of range"},
		{"csv", "product_id,quantity\nP1,99999999999999999999\n", "line 2: quantity 99999999999999999999 is out of range (at most 1000000000 either way)"},
		{"json", "[\n{\"product_id\":\"P1\",\"quantity\":-99999999999999999999}]", "line 2: item 1: quantity -99999999999999999999 is out of range"},
		{"json", "[\n{\"product_id\":\"P\\ud800\",\"quantity\":1}]", "line 2: product_id \"P\ufffd\" contains U+FFFD"},
		{"csv", "product_id,quantity\n" + strings.Repeat("x", 300) + ",1\n", "line 2: product_id is longer than 256 bytes"},
		{"csv", "product_id,quantity\nP1,1\n\xff,1\n", "line 3: not UTF-8 text"},
		// A long value is quoted cut to 40 bytes, as in the JSON messages: the message goes to the
		// status, the log and failed/'s .error.txt.
		{"csv", "product_id,quantity\nP1," + strings.Repeat("x", 5000) + "\n", `line 2: quantity "` + strings.Repeat("x", 40) + `…" is not a whole number`},
		{"csv", "product_id,quantity\nP1," + strings.Repeat("9", 5000) + "\n", "line 2: quantity " + strings.Repeat("9", 40) + "… is out of range"},
		{"csv", "product_id," + strings.Repeat("q", 5000) + "\n", `line 1: the header row "product_id,` + strings.Repeat("q", 29) + `…" lacks`},
		{"csv", many, fmt.Sprintf("line %d: more than 100000 rows", MaxStockRows+2)},
		{"json", "", "line 1: empty file"},
		{"json", "\n\n{\"product_id\":\"P1\"}", "line 3: want a JSON array"},
		{"json", "[\n{\"product_id\":\"P1\",\"quantity\":1},\n{\"product_id\":\"P2\",\"quantity\":1.0}\n]", "line 3: item 2: quantity 1.0 is not a whole number"},
		{"json", "[\n{\"product_id\":\"P1\",\"quantity\":\"1\"}]", `line 2: item 1: quantity "1" is not a whole number`},
		{"json", "[\n{\"product_id\":1,\"quantity\":1}]", "line 2: item 1: product_id 1 is not a string"},
		{"json", "[\n{\"product_id\":null,\"quantity\":1}]", "line 2: item 1: product_id null is not a string"},
		{"json", "[\n{\"quantity\":1}]", "line 2: item 1 has no product_id"},
		{"json", "[\n 5]", "line 2: item 1 is not an object"},
		{"json", "[\n null]", "line 2: item 1 is not an object"},
		{"json", "[\n{\"product_id\":\"P1\",\"quantity\":1},\n\n{\"product_id\":\"P1\",\"quantity\":2}]", `line 4: product_id "P1" is already on line 2`},
		{"json", "[\n{\"product_id\":\"P1\",\n\"quantity\":1}\n{\"product_id\":\"P2\",\"quantity\":1}]", "line 4: not valid JSON"},
		{"json", "[\n{\"product_id\":\"P1\",\"quantity\":1},\n{\"product_id\":\"P2\",", "line 3: the file ends before the array is closed"},
		{"json", "[{\"product_id\":\"P1\",\"quantity\":1}]\n[]", "line 2: unexpected [ after the array"},
		{"json", manyJSON, fmt.Sprintf("line %d: more than 100000 rows", MaxStockRows+2)},
		{"json", "[\n{\"product_id\":\"P1\",\"quantity\":5,\"product_id\":\"P2\"}]", "line 2: item 1 gives product_id twice"},
		{"json", "[\n{\"quantity\":5,\"Quantity\":6,\"product_id\":\"P2\"}]", "line 2: item 1 gives quantity twice"},
		{"json", "[{\"product_id\":\" P1\",\"quantity\":1},\n{\"product_id\":\"P1\",\"quantity\":2}]", `line 2: product_id "P1" is already on line 1`},
		{"xlsx", "PK", "unknown stock file format"},
	} {
		_, err := ParseStockFile(c.format, []byte(c.in))
		var fe *StockFileError
		if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), c.want) {
			in := c.in
			if len(in) > 80 {
				in = in[:80] + "…"
			}
			t.Errorf("%s %q:\n got %v\nwant %s…", c.format, in, err, c.want)
		}
	}
}

// FuzzParseStockFile: any input gives rows that keep the rules, or a *StockFileError with a line
// inside the file; never a panic.
func FuzzParseStockFile(f *testing.F) {
	for _, s := range []struct{ format, in string }{
		{"csv", "product_id,quantity\nP1,5\n"},
		{"csv", "\uFEFFproduct_id;quantity\r\nP1;-5\r\n"},
		{"csv", "product_id,quantity\n\"P\"\"1\",5\n"},
		{"json", `[{"product_id":"P1","quantity":5}]`},
		{"json", "[\n{\"product_id\":\"P1\",\"quantity\":5},\n{\"product_id\":\"P2\",\"quantity\":1e3}]"},
	} {
		f.Add(s.format, []byte(s.in))
	}
	f.Fuzz(func(t *testing.T, format string, data []byte) {
		rows, err := ParseStockFile(format, data)
		if err != nil {
			var fe *StockFileError
			if !errors.As(err, &fe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if lines := strings.Count(string(data), "\n") + 1; fe.Line < 0 || fe.Line > lines {
				t.Fatalf("line %d of a %d-line file: %v", fe.Line, lines, err)
			}
			if rows != nil {
				t.Fatal("rows with an error")
			}
			return
		}
		seen := map[string]bool{}
		for i, r := range rows {
			if r.Row != i+1 || checkProductID(r.ProductID) != nil || seen[r.ProductID] || r.Quantity > MaxQuantity || r.Quantity < -MaxQuantity {
				t.Fatalf("row %d breaks the rules: %+v", i, r)
			}
			seen[r.ProductID] = true
		}
	})
}
