package storage

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"slices"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// TestSecondaryIndexesMatchSchema checks that the indexes a bulk load rebuilds are defined as the
// migrations define them, so the schema after a bulk load is the schema of a fresh database.
func TestSecondaryIndexesMatchSchema(t *testing.T) {
	db := openTest(t)
	for c, idx := range secondaryIndexes {
		for _, ix := range idx {
			var q string
			if err := db.w.QueryRow(`SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?`, ix.name).Scan(&q); err != nil {
				t.Fatalf("%s: index %s: %v", c, ix.name, err)
			}
			if q != ix.create {
				t.Errorf("%s: index %s is\n\t%s\nin the migrations, but a bulk load creates\n\t%s", c, ix.name, q, ix.create)
			}
		}
	}
}

// snapshotOf is what a shop holds of the catalog: every product row, barcode and search answer,
// and the rows of prices.
type snapshotOf struct {
	products, barcodes, prices, search []string
}

func shopState(t *testing.T, db *DB) snapshotOf {
	t.Helper()
	var s snapshotOf
	scan := func(q string, out *[]string) {
		rows, err := db.r.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var a, b, c, d sql.NullString
			if err := rows.Scan(&a, &b, &c, &d); err != nil {
				t.Fatal(err)
			}
			*out = append(*out, fmt.Sprint(a.String, "|", b.String, "|", c.String, "|", d.String))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	scan(`SELECT id, rev, deleted, name || category || coalesce(doc, '') FROM products ORDER BY id`, &s.products)
	scan(`SELECT code, product_id, '', '' FROM barcodes ORDER BY code`, &s.barcodes)
	scan(`SELECT id, rev, deleted, coalesce(doc, '') FROM prices ORDER BY id`, &s.prices)
	for _, q := range []string{"chocolate", "tea", "milk", "oat", "acme"} {
		items, err := db.Search(context.Background(), q, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			s.search = append(s.search, q+":"+it.ID)
		}
	}
	return s
}

func price(id string, rev, amount int64) cloudapi.Change {
	return cloudapi.Change{Collection: cloudapi.Prices, ID: id, Op: cloudapi.OpUpsert, Rev: rev,
		Doc: []byte(fmt.Sprintf(`{"product_id":%q,"currency":"EUR","amount":%d}`, id, amount))}
}

// TestBulkLoadEqualsRowByRow applies the same pages once as a bulk load (with a restart in the
// middle) and once row by row: the shop must end up holding the same catalog, with the same
// schema, whatever the order of new, repeated, older, moved and deleted items.
func TestBulkLoadEqualsRowByRow(t *testing.T) {
	t.Run("first sync", func(t *testing.T) { testBulkLoadEqualsRowByRow(t, true) })
	t.Run("with changes", func(t *testing.T) { testBulkLoadEqualsRowByRow(t, false) })
}

func testBulkLoadEqualsRowByRow(t *testing.T, newOnly bool) {
	ctx := context.Background()
	// Pages of a snapshot followed by its deltas. Product revisions repeat and go back, a
	// barcode moves from one product to another inside a chunk and across pages, products are
	// deleted, one before it was ever seen.
	var pages [][]cloudapi.Change
	var page []cloudapi.Change
	for i := 1; i <= 150; i++ {
		id := fmt.Sprintf("P%03d", i)
		page = append(page, product(id, int64(i), fmt.Sprintf("Dark chocolate %d", i), "Sweets", fmt.Sprintf("400%010d", i)))
		if i%70 == 0 {
			pages = append(pages, page)
			page = nil
		}
	}
	pages = append(pages, page)
	if newOnly {
		pages = append(pages, nil)
	}
	pages = append(pages, []cloudapi.Change{
		product("P005", 200, "Green tea", "Drinks", "4000000000007"), // takes P007's barcode
		product("P007", 201, "Milk", "Dairy", "5000000000001"),
		product("P005", 150, "Stale name", "Drinks"), // older than what is held
		product("P009", 9, "Dark chocolate 9", "Sweets", "4000000000009"),
		del(cloudapi.Products, "P010", 202),
		del(cloudapi.Products, "P999", 203),                          // never seen
		product("P011", 204, "Oat drink", "Drinks", "4000000000012"), // takes P012's
		product("P012", 205, "Oat drink 2", "Drinks", "4000000000012", "4000000000011"),
	})
	pages = append(pages, []cloudapi.Change{
		product("P010", 300, "Milk chocolate", "Sweets", "4000000000010"), // back from the dead
		product("P151", 301, "New tea", "Drinks", "4000000000005"),        // takes P005's old one
		del(cloudapi.Products, "P012", 302),
	})
	again := [][]cloudapi.Change{
		{
			product("P001", 400, "Dark chocolate 1", "Sweets", "4000000000002"), // takes P002's
			product("P003", 401, "Dark chocolate 3", "Sweets", "4000000000001"), // takes P001's old one
			product("P004", 402, "Dark chocolate 4", "Sweets"),                  // gives its own up
			product("P009", 407, "Dark chocolate 9", "Sweets", "4000000000010"), // takes P010's
		},
		{
			product("P002", 403, "Dark chocolate 2", "Sweets", "4000000000004"), // takes P004's old one
			del(cloudapi.Products, "P003", 404),                                 // gives P001's old one up
			product("P006", 405, "Dark chocolate 6", "Sweets", "4000000000006", "4000000000008"),
			product("P008", 406, "Dark chocolate 8", "Sweets"),
			del(cloudapi.Products, "P009", 408), // and nobody has it any more
		},
	}
	if newOnly {
		pages, again = pages[:len(pages)-2], nil
	}
	prices := [][]cloudapi.Change{
		{price("P001", 1, 100), price("P002", 2, 200), price("P001", 3, 150)},
		{price("P002", 1, 999), price("P003", 4, 300), del(cloudapi.Prices, "P001", 5)},
	}

	run := func(bulk bool) (snapshotOf, []string, ApplyResult) {
		var total ApplyResult
		path := filepath.Join(t.TempDir(), "shop.db")
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { db.Close() }()
		apply := func(collection string, i, n int, changes []cloudapi.Change) {
			t.Helper()
			end := cloudapi.PageEnd{Cursor: fmt.Sprintf("c%d", i+1), Count: len(changes)}
			if bulk {
				end.More, end.Remaining = i < n-1, 100000
			}
			res, err := db.ApplyPage(ctx, Page{Collection: collection, Changes: changes, End: end})
			if err != nil {
				t.Fatal(err)
			}
			total.Applied += res.Applied
			total.Ignored += res.Ignored
		}
		for i, p := range pages {
			apply(cloudapi.Products, i, len(pages), p)
			if bulk && i == 1 {
				if !db.deferred[cloudapi.Products] {
					t.Fatal("products indexes kept during a bulk load")
				}
				// The process stops in the middle of the bulk load and starts again.
				db.Close()
				if db, err = Open(ctx, path); err != nil {
					t.Fatal(err)
				}
				if !db.deferred[cloudapi.Products] {
					t.Fatal("a restart forgot that a bulk load is under way")
				}
			}
		}
		for i, p := range prices {
			apply(cloudapi.Prices, i, len(prices), p)
		}
		// A second bulk load over the catalog held, as after an expired cursor: barcodes held
		// before it move, are given up and taken again.
		for i, p := range again {
			apply(cloudapi.Products, i, len(again), p)
		}
		if db.deferred[cloudapi.Products] || db.deferred[cloudapi.Prices] {
			t.Fatalf("indexes still deferred after the bulk load: %v", db.deferred)
		}
		if err := db.IntegrityCheck(ctx); err != nil {
			t.Fatal(err)
		}
		var schema []string
		rows, err := db.r.Query(`SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			rows.Scan(&s)
			schema = append(schema, s)
		}
		return shopState(t, db), schema, total
	}
	want, wantSchema, wantRes := run(false)
	got, gotSchema, gotRes := run(true)
	if gotRes != wantRes {
		t.Errorf("a bulk load counted %+v, row by row %+v", gotRes, wantRes)
	}
	if !slices.Equal(gotSchema, wantSchema) {
		t.Errorf("schema after a bulk load:\n%v\nwant\n%v", gotSchema, wantSchema)
	}
	for _, c := range []struct {
		name      string
		got, want []string
	}{{"products", got.products, want.products}, {"barcodes", got.barcodes, want.barcodes}, {"prices", got.prices, want.prices}, {"search", got.search, want.search}} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s after a bulk load:\n%v\nwant (row by row)\n%v", c.name, c.got, c.want)
		}
	}
	if !newOnly && (!slices.Contains(want.barcodes, "4000000000007|P005||") || !slices.Contains(want.search, "milk:P010")) {
		t.Fatalf("the row-by-row run itself is off: %v %v", want.barcodes[:10], want.search)
	}
}

// TestBulkLoadPacesTheCollector checks that a bulk load raises the collector's GOGC for its
// length, from its first page to the page that catches up, puts the setting back after, and
// leaves a higher one, or the collector off (-1), alone.
func TestBulkLoadPacesTheCollector(t *testing.T) {
	gogc := func() int { v := debug.SetGCPercent(-1); debug.SetGCPercent(v); return v }
	orig := gogc()
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	ctx := context.Background()
	for _, set := range []int{100, 50, 400, -1} {
		debug.SetGCPercent(set)
		db, err := Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
		if err != nil {
			t.Fatal(err)
		}
		during := bulkGCPercent
		if set < 0 || set > bulkGCPercent {
			during = set
		}
		for i, want := range []int{during, during, set} {
			more := i < 2
			p := Page{Collection: cloudapi.Prices, Changes: []cloudapi.Change{price(fmt.Sprintf("P%03d", i), 1, 100)},
				End: cloudapi.PageEnd{Cursor: fmt.Sprintf("c%d", i+1), Count: 1, More: more, Remaining: 100000}}
			if _, err := db.ApplyPage(ctx, p); err != nil {
				t.Fatal(err)
			}
			if got := gogc(); got != want {
				t.Fatalf("GOGC %d: after page %d of a bulk load (more: %v) GOGC is %d, want %d", set, i+1, more, got, want)
			}
		}
		// A load the process stops half way leaves the setting as it found it.
		stock := cloudapi.Change{Collection: cloudapi.Stock, ID: "P001", Op: cloudapi.OpUpsert, Rev: 1,
			Doc: []byte(`{"product_id":"P001","quantity":5}`)}
		p := Page{Collection: cloudapi.Stock, Changes: []cloudapi.Change{stock},
			End: cloudapi.PageEnd{Cursor: "s1", Count: 1, More: true, Remaining: 100000}}
		if _, err := db.ApplyPage(ctx, p); err != nil {
			t.Fatal(err)
		}
		if got := gogc(); got != during {
			t.Fatalf("GOGC %d: during a stock bulk load GOGC is %d, want %d", set, got, during)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if got := gogc(); got != set {
			t.Fatalf("GOGC %d: after a bulk load cut short by Close GOGC is %d", set, got)
		}
	}
}
