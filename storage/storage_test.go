package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func openTest(t testing.TB) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openAt opens the database at path; the test closes it (tests that reopen one close it first).
func openAt(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func product(id string, rev int64, name, category string, barcodes ...string) cloudapi.Change {
	doc, _ := json.Marshal(cloudapi.Product{ID: id, Name: name, Brand: "Acme", Category: category, Barcodes: barcodes})
	return cloudapi.Change{Collection: cloudapi.Products, ID: id, Op: cloudapi.OpUpsert, Rev: rev, Doc: doc}
}

func del(collection, id string, rev int64) cloudapi.Change {
	return cloudapi.Change{Collection: collection, ID: id, Op: cloudapi.OpDelete, Rev: rev}
}

func apply(t *testing.T, db *DB, collection, cursor string, changes ...cloudapi.Change) ApplyResult {
	t.Helper()
	res, err := db.ApplyPage(context.Background(), Page{Collection: collection, Changes: changes, End: cloudapi.PageEnd{Cursor: cursor, Count: len(changes)}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func name(t *testing.T, it Item) string {
	t.Helper()
	var p cloudapi.Product
	if err := json.Unmarshal(it.Doc, &p); err != nil {
		t.Fatal(err)
	}
	return p.Name
}

func TestApplyPageRevisionRule(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	res := apply(t, db, cloudapi.Products, "c1", product("P1", 5, "Dark chocolate", "Sweets", "4006381333931"), product("P2", 6, "Green tea", "Drinks"))
	if res.Applied != 2 {
		t.Fatalf("applied %d, want 2", res.Applied)
	}
	// The same page again changes nothing.
	if res := apply(t, db, cloudapi.Products, "c1", product("P1", 5, "Dark chocolate", "Sweets", "4006381333931")); res.Applied != 0 || res.Ignored != 1 {
		t.Fatalf("re-applied page: %+v", res)
	}
	// An older revision never overwrites a newer one.
	apply(t, db, cloudapi.Products, "c2", product("P1", 4, "Stale name", "Sweets"))
	it, err := db.Get(ctx, cloudapi.Products, "P1")
	if err != nil {
		t.Fatal(err)
	}
	if got := name(t, it); got != "Dark chocolate" {
		t.Fatalf("name %q after stale upsert", got)
	}
	// A newer one does, and moves the barcode.
	apply(t, db, cloudapi.Products, "c3", product("P1", 9, "Milk chocolate", "Sweets", "5000112637922"))
	if it, _ := db.Get(ctx, cloudapi.Products, "P1"); name(t, it) != "Milk chocolate" || it.Rev != 9 {
		t.Fatalf("after newer upsert: %s rev %d", it.Doc, it.Rev)
	}
	if _, err := db.ProductByBarcode(ctx, "4006381333931"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old barcode still found: %v", err)
	}
	if it, err := db.ProductByBarcode(ctx, "5000112637922"); err != nil || it.ID != "P1" {
		t.Fatalf("new barcode: %v %v", it.ID, err)
	}
	if st, _ := db.FeedState(cloudapi.Products); st.Cursor != "c3" || st.LastSuccess.IsZero() {
		t.Fatalf("feed state %+v", st)
	}
}

func TestDeleteIsATombstone(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "Dark chocolate", "Sweets", "4006381333931"))
	apply(t, db, cloudapi.Products, "c2", del(cloudapi.Products, "P1", 2))
	if _, err := db.Get(ctx, cloudapi.Products, "P1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted product still served: %v", err)
	}
	if _, err := db.ProductByBarcode(ctx, "4006381333931"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted product found by barcode: %v", err)
	}
	if got, _ := db.Search(ctx, "chocolate", 0, 10); len(got) != 0 {
		t.Fatalf("deleted product found by search: %v", got)
	}
	// A late upsert older than the delete must not bring it back.
	apply(t, db, cloudapi.Products, "c3", product("P1", 1, "Dark chocolate", "Sweets"))
	if _, err := db.Get(ctx, cloudapi.Products, "P1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stale upsert resurrected a deleted product: %v", err)
	}
	changes, err := db.Changes(ctx, 0, AnySeq, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Op != cloudapi.OpDelete || changes[0].ID != "P1" || changes[0].Doc != nil {
		t.Fatalf("changes %+v, want one delete of P1", changes)
	}
}

func TestSearchAndCategories(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	apply(t, db, cloudapi.Products, "c1",
		product("P1", 1, "Dark chocolate 70%", "Sweets"),
		product("P2", 2, "Crème brûlée", "Desserts"),
		product("P3", 3, "Chocolate milk", "Drinks"),
		product("P4", 4, "Green tea", "Drinks"))
	for _, tc := range []struct {
		q    string
		want int
	}{
		{"chocolate", 2}, {"choc", 2}, {"creme brulee", 1}, {"CHOCOLATE milk", 1}, {"tea", 1},
		{`"unbalanced`, 0}, {"NEAR(a b)", 0}, {"*", 0}, {"", 0}, {"acme", 4},
		// Accents typed as combining characters: "Crème brûlée" and "creme" decomposed.
		{"Cre\u0300me bru\u0302le\u0301e", 1}, {"cre\u0301me", 1}, {"choc \u0301", 2},
	} {
		got, err := db.Search(ctx, tc.q, 0, 10)
		if err != nil {
			t.Fatalf("search %q: %v", tc.q, err)
		}
		if len(got) != tc.want {
			t.Errorf("search %q: %d results, want %d", tc.q, len(got), tc.want)
		}
	}
	cats, err := db.Categories(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cats) != "[{Desserts 1} {Drinks 2} {Sweets 1}]" {
		t.Fatalf("categories %v", cats)
	}
	drinks, _ := db.ProductsInCategory(ctx, "Drinks", "", 1)
	more, _ := db.ProductsInCategory(ctx, "Drinks", drinks[0].ID, 10)
	if len(drinks) != 1 || drinks[0].ID != "P3" || len(more) != 1 || more[0].ID != "P4" {
		t.Fatalf("category paging: %v then %v", drinks, more)
	}
}

// A malformed line and a newer valid change of the same item after it in one page: the valid
// change replaces it, and nothing stays quarantined (cloud-api.md).
func TestQuarantineClearedInTheSamePage(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	later := product("P2", 5, "Coffee", "Drinks")
	later.Line = 2
	_, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products,
		Changes:   []cloudapi.Change{later},
		Malformed: []*cloudapi.MalformedError{{Line: 1, ID: "P2", Reason: "name is missing", Raw: []byte(`{"id":"P2","rev":4}`), Rev: 4}},
		End:       cloudapi.PageEnd{Cursor: "c1", Count: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 0 {
		t.Errorf("quarantined %d after the page, want 0", st.Quarantined)
	}
	if q, _ := db.Quarantine(ctx, "", 10); len(q) != 0 {
		t.Errorf("quarantine entries %+v, want none", q)
	}
}

// A valid change before a malformed line of the same item in the page does not clear it: the
// cloud's latest line of the item is the broken one, whether its rev could be read or not.
func TestQuarantineNotClearedByAnEarlierChangeOfThePage(t *testing.T) {
	ctx := context.Background()
	for _, rev := range []int64{0, 6} {
		t.Run(fmt.Sprintf("rev_%d", rev), func(t *testing.T) {
			db := openTest(t)
			earlier := product("P1", 5, "Tea", "Drinks")
			earlier.Line = 1
			if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products,
				Changes:   []cloudapi.Change{earlier},
				Malformed: []*cloudapi.MalformedError{{Line: 2, ID: "P1", Reason: "not a JSON object", Raw: []byte(`{"id":"P1",`), Rev: rev}},
				End:       cloudapi.PageEnd{Cursor: "c1", Count: 2}}); err != nil {
				t.Fatal(err)
			}
			q, _ := db.Quarantine(ctx, "", 10)
			if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 1 || len(q) != 1 || q[0].ItemID != "P1" {
				t.Errorf("quarantined %d, entries %+v; want P1's line kept", st.Quarantined, q)
			}
		})
	}
}

// A replayed older malformed line of an item does not replace the entry of its newer one, which
// a valid change between the two revs then leaves in place (cloud-api.md: a change at a lower rev
// than the quarantined line's is ignored and the entry stays).
func TestQuarantineKeepsTheNewerMalformedLine(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	apply(t, db, cloudapi.Products, "c1", product("P1", 5, "Tea", "Drinks"))
	for i, rev := range []int64{10, 3} {
		if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products,
			Malformed: []*cloudapi.MalformedError{{Line: 1, ID: "P1", Reason: fmt.Sprintf("bad at rev %d", rev), Raw: []byte(`{"id":"P1"}`), Rev: rev}},
			End:       cloudapi.PageEnd{Cursor: fmt.Sprintf("m%d", i), Count: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	apply(t, db, cloudapi.Products, "c2", product("P1", 6, "Green tea", "Drinks"))
	q, _ := db.Quarantine(ctx, "", 10)
	if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 1 || len(q) != 1 || q[0].Rev != 10 {
		t.Fatalf("quarantined %d, entries %+v; want the line at rev 10 kept", st.Quarantined, q)
	}
	apply(t, db, cloudapi.Products, "c3", product("P1", 10, "Green tea", "Drinks"))
	if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 0 {
		t.Errorf("quarantined %d after the change at the line's rev, want 0", st.Quarantined)
	}
}

// A malformed line whose rev could not be read, followed by a valid change of its item: the
// quarantine ends the same whether the cloud put both lines in one page or cut between them
// (the line replaces every entry of its item, the change then clears it).
func TestQuarantineOfAnUnreadableRevIsTheSameAcrossPageCuts(t *testing.T) {
	ctx := context.Background()
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split_%v", split), func(t *testing.T) {
			db := openTest(t)
			apply(t, db, cloudapi.Products, "c0", product("B", 1, "Tea", "Drinks"))
			if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products,
				Malformed: []*cloudapi.MalformedError{{Line: 1, ID: "B", Reason: "bad at rev 6", Raw: []byte(`{"id":"B"}`), Rev: 6}},
				End:       cloudapi.PageEnd{Cursor: "c1", Count: 1}}); err != nil {
				t.Fatal(err)
			}
			m := &cloudapi.MalformedError{Line: 1, ID: "B", Reason: "not a JSON object", Raw: []byte(`{"id":"B",`)}
			c := product("B", 3, "Green tea", "Drinks")
			pages := []Page{{Collection: cloudapi.Products, Changes: []cloudapi.Change{c}, Malformed: []*cloudapi.MalformedError{m}, End: cloudapi.PageEnd{Cursor: "c2", Count: 2}}}
			pages[0].Changes[0].Line = 2
			if split {
				pages = []Page{{Collection: cloudapi.Products, Malformed: []*cloudapi.MalformedError{m}, End: cloudapi.PageEnd{Cursor: "c2", Count: 1}},
					{Collection: cloudapi.Products, Changes: []cloudapi.Change{c}, End: cloudapi.PageEnd{Cursor: "c3", Count: 1}}}
				pages[1].Changes[0].Line = 1
			}
			for _, p := range pages {
				if _, err := db.ApplyPage(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			q, _ := db.Quarantine(ctx, "", 10)
			if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 0 || len(q) != 0 {
				t.Errorf("quarantined %d, entries %+v; want none", st.Quarantined, q)
			}
		})
	}
}

// The rev of a quarantined line is the one its decoder read from the whole line (Rev), not one
// read again from the 512 bytes kept, which for a long line are cut in the middle of its
// document: a re-sent older change must not clear it.
func TestQuarantineOfALongLineKeepsItsRev(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	apply(t, db, cloudapi.Products, "c1", product("P1", 5, "Tea", "Drinks"))
	raw := []byte(`{"collection":"products","doc":{"id":"P1","name":"Tea ` + strings.Repeat("x", 600))[:512]
	if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products,
		Malformed: []*cloudapi.MalformedError{{Line: 1, ID: "P1", Reason: "barcode 1: not a code", Raw: raw, Rev: 10}},
		End:       cloudapi.PageEnd{Cursor: "c2", Count: 1}}); err != nil {
		t.Fatal(err)
	}
	apply(t, db, cloudapi.Products, "c3", product("P1", 7, "Green tea", "Drinks"))
	if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 1 {
		t.Fatalf("quarantined %d after a valid change at rev 7 of a line at rev 10, want 1 (kept)", st.Quarantined)
	}
	apply(t, db, cloudapi.Products, "c4", product("P1", 10, "Green tea", "Drinks"))
	if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 0 {
		t.Fatalf("quarantined %d after a valid change at the line's rev, want 0", st.Quarantined)
	}
}

func TestQuarantineClearedByValidChange(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	_, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products,
		Changes:   []cloudapi.Change{product("P1", 1, "Tea", "Drinks")},
		Malformed: []*cloudapi.MalformedError{{Line: 2, ID: "P2", Reason: "name is missing", Raw: []byte(`{"id":"P2","rev":3}`), Rev: 3}, {Line: 3, Reason: "not a JSON object", Raw: []byte(`{garbage`)}},
		End:       cloudapi.PageEnd{Cursor: "c1", Count: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 2 {
		t.Fatalf("quarantined %d, want 2", st.Quarantined)
	}
	// An older valid revision does not clear a newer malformed one.
	apply(t, db, cloudapi.Products, "c2", product("P2", 2, "Coffee", "Drinks"))
	if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 2 {
		t.Fatalf("quarantined %d after older valid change, want 2", st.Quarantined)
	}
	apply(t, db, cloudapi.Products, "c3", product("P2", 4, "Coffee", "Drinks"))
	q, err := db.Quarantine(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := db.FeedState(cloudapi.Products); st.Quarantined != 1 || len(q) != 1 || q[0].ItemID != "" || q[0].Reason != "not a JSON object" {
		t.Fatalf("after valid change: count %d, entries %+v", st.Quarantined, q)
	}
	// The state survives a reopen.
	path := db.Path()
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if st, _ := db2.FeedState(cloudapi.Products); st.Quarantined != 1 || st.Cursor != "c3" {
		t.Fatalf("reopened state %+v", st)
	}
}

func TestChangesAcrossCollections(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "Tea", "Drinks"), product("P2", 2, "Coffee", "Drinks"))
	apply(t, db, cloudapi.Prices, "p1", cloudapi.Change{Collection: cloudapi.Prices, ID: "P1", Op: cloudapi.OpUpsert, Rev: 3, Doc: json.RawMessage(`{"product_id":"P1","currency":"EUR","amount":250}`)})
	apply(t, db, cloudapi.Products, "c2", product("P1", 4, "Black tea", "Drinks"))
	all, err := db.Changes(ctx, 0, AnySeq, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range all {
		got = append(got, fmt.Sprintf("%d:%s/%s", c.Seq, c.Collection, c.ID))
	}
	if fmt.Sprint(got) != "[2:products/P2 3:prices/P1 4:products/P1]" {
		t.Fatalf("changes %v", got)
	}
	since, _ := db.Changes(ctx, 3, AnySeq, 100, []string{cloudapi.Products})
	if len(since) != 1 || since[0].ID != "P1" {
		t.Fatalf("changes since 3: %+v", since)
	}
	if db.Seq() != 4 {
		t.Fatalf("seq %d, want 4", db.Seq())
	}
}

func TestIntegrityAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "Tea", "Drinks"))
	if err := db.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Seq() != 1 {
		t.Fatalf("seq after reopen %d", db.Seq())
	}
	if _, err := db.Get(ctx, "orders", "x"); err == nil {
		t.Fatal("unknown collection accepted")
	}
}

func TestBulkLoadRebuildsSearchAtTheEnd(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	page := func(cursor string, more bool, changes ...cloudapi.Change) {
		t.Helper()
		if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, Changes: changes, End: cloudapi.PageEnd{Cursor: cursor, Count: len(changes), More: more, Remaining: 100000}}); err != nil {
			t.Fatal(err)
		}
	}
	page("s1", true, product("P1", 1, "Dark chocolate", "Sweets"), product("P2", 2, "Green tea", "Drinks"))
	// The process stops in the middle of the bulk load and starts again.
	path := db.Path()
	db.Close()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	page("s2", true, product("P3", 3, "Chocolate milk", "Drinks"), del(cloudapi.Products, "P2", 4))
	page("d1", false, product("P1", 5, "Milk chocolate", "Sweets"))
	got, err := db.Search(ctx, "chocolate", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("after bulk load: %d results for chocolate, want 2", len(got))
	}
	if got, _ := db.Search(ctx, "tea", 0, 10); len(got) != 0 {
		t.Fatalf("deleted product still found: %v", got)
	}
	// Row-by-row upkeep from here on.
	if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, Changes: []cloudapi.Change{product("P3", 6, "Oat drink", "Drinks")}, End: cloudapi.PageEnd{Cursor: "d2", Count: 1}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Search(ctx, "chocolate", 0, 10); len(got) != 1 {
		t.Fatalf("after rename: %d results for chocolate, want 1", len(got))
	}
	if got, _ := db.Search(ctx, "oat", 0, 10); len(got) != 1 {
		t.Fatalf("after rename: %d results for oat, want 1", len(got))
	}
	if err := db.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
}

func benchmarkApplyProducts(b *testing.B, remaining int64) {
	db := openTest(b)
	ctx := context.Background()
	const page = 1000
	changes := make([]cloudapi.Change, page)
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		for j := range changes {
			n++
			id := fmt.Sprintf("P%07d", n)
			changes[j] = product(id, int64(n), "Organic dark chocolate "+id, fmt.Sprintf("Sweets/Chocolate %d", n%200), fmt.Sprintf("4%012d", n))
		}
		end := cloudapi.PageEnd{Cursor: "c", Count: page, More: remaining > 0, Remaining: remaining}
		if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, Changes: changes, End: end, FetchedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkApplyProductsBulk measures pages of 1,000 new products during a first sync.
func BenchmarkApplyProductsBulk(b *testing.B) { benchmarkApplyProducts(b, 1e6) }

// BenchmarkApplyProductsIncremental measures pages of 1,000 new products with the search index kept
// in step row by row.
func BenchmarkApplyProductsIncremental(b *testing.B) { benchmarkApplyProducts(b, 0) }

// TestCatalogChanged: the signal comes when a page catches up after the delta feed changed,
// whether the change came with that page or with the pages before it, and not when nothing
// changed since the last one.
func TestCatalogChanged(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	fired := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	apply(t, db, cloudapi.Products, "c0", product("P0", 1, "Coffee", "Drinks")) // past the first sync's bulk load
	ch := db.CatalogChanged()
	if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, Changes: []cloudapi.Change{product("P1", 1, "Tea", "Drinks")},
		End: cloudapi.PageEnd{Cursor: "c1", Count: 1, More: true, Remaining: 1}}); err != nil {
		t.Fatal(err)
	}
	if fired(ch) {
		t.Fatal("signalled by a page that does not catch up")
	}
	apply(t, db, cloudapi.Products, "c2", product("P1", 1, "Tea", "Drinks")) // held already: no change
	if !fired(ch) {
		t.Fatal("no signal when the page that caught up changed nothing but the one before it did")
	}
	ch = db.CatalogChanged()
	apply(t, db, cloudapi.Products, "c3", product("P1", 1, "Tea", "Drinks"))
	if fired(ch) {
		t.Fatal("signalled though nothing changed since the last signal")
	}
	apply(t, db, cloudapi.Products, "c4", product("P1", 2, "Green tea", "Drinks"))
	if !fired(ch) {
		t.Fatal("no signal for a change")
	}
}

// A position the feed gives out is never beyond DurableHead, even read between a page's commit
// and the moment Seq moves to it: a device asking again at once with the next_since it was just
// given must not be told to start over (catalog.md, rule 4).
func TestHeadHoldsWhatTheFeedGaveOut(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "Tea", "Drinks"))
	committed, resume := make(chan struct{}), make(chan struct{})
	testHookCommitted = func() {
		close(committed)
		<-resume
	}
	t.Cleanup(func() { testHookCommitted = nil })
	done := make(chan error, 1)
	go func() {
		_, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, Changes: []cloudapi.Change{product("P2", 1, "Coffee", "Drinks")},
			End: cloudapi.PageEnd{Cursor: "c2", Count: 1}})
		done <- err
	}()
	<-committed
	// Between the commit and Seq's move, a read sees the new change; the feed gives out no
	// position beyond its head, so a device is never ahead of what the next answer can reach.
	head, err := db.DurableHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := db.Changes(ctx, 0, AnySeq, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if last := all[len(all)-1].Seq; last <= head {
		t.Fatalf("the read between the commit and Seq's move saw %d, the head is %d: the gap was not reached", last, head)
	}
	given, err := db.Changes(ctx, 0, head, 10, nil)
	if err != nil || len(given) == 0 || given[len(given)-1].Seq > head {
		t.Fatalf("changes up to the head %d: %v, %v", head, given, err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testHookCommitted = nil
	if h, err := db.DurableHead(ctx); err != nil || h != all[len(all)-1].Seq {
		t.Errorf("the head after the page: %d, %v, want %d", h, err, all[len(all)-1].Seq)
	}
}

// The delta feed gives out only changes on the disk: each new commit is flushed (the WAL synced)
// before a device may be given it, once for all the devices asking, and nothing is flushed while
// the catalog does not change.
func TestDeltaFeedIsOnDiskBeforeItIsGivenOut(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	var synced []int64
	testHookSyncedWAL = func(path string) {
		if path != db.path+"-wal" {
			t.Errorf("synced %s, want the database's WAL", path)
		}
		synced = append(synced, db.Seq())
	}
	t.Cleanup(func() { testHookSyncedWAL = nil })
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "Tea", "Drinks"))
	for range 3 {
		if h, err := db.DurableHead(ctx); err != nil || h != db.Seq() {
			t.Fatalf("head %d, %v; want %d", h, err, db.Seq())
		}
	}
	apply(t, db, cloudapi.Products, "c2", product("P2", 1, "Coffee", "Drinks"))
	for range 3 {
		if h, err := db.DurableHead(ctx); err != nil || h != db.Seq() {
			t.Fatalf("head %d, %v; want %d", h, err, db.Seq())
		}
	}
	if len(synced) != 2 || synced[1] != db.Seq() {
		t.Fatalf("the WAL was synced at %v: want once after each of the 2 commits, the last at %d", synced, db.Seq())
	}
	// The epoch file holds what devices were given, not the last commit: applied, not given
	// out, is no position a device holds.
	apply(t, db, cloudapi.Products, "c3", product("P3", 1, "Milk", "Drinks"))
	db.wmu.Lock()
	err := db.writeEpochFile()
	db.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if mark, err := readEpochFile(db.epochFile); err != nil || mark.Given != synced[1] || mark.Seq != db.Seq() || mark.Given >= mark.Seq {
		t.Errorf("epoch file %+v, %v: want given %d, the last change given out, and seq %d, the last commit", mark, err, synced[1], db.Seq())
	}
}

// The feed gives out nothing it could not record as given: with storeedge.epoch unwritable, the
// head does not move and the error says why (catalog.md: the device is answered 500).
func TestDeltaFeedGivesNothingItCannotRecord(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "Tea", "Drinks"))
	if err := os.Remove(db.epochFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(db.epochFile, 0o700); err != nil { // a rename onto it fails, root or not
		t.Fatal(err)
	}
	if h, err := db.DurableHead(ctx); err == nil || !strings.Contains(err.Error(), filepath.Base(db.epochFile)) {
		t.Fatalf("head %d, %v: want an error naming the epoch file", h, err)
	}
	if d := db.durable.Load(); d != 0 {
		t.Fatalf("the head moved to %d with nothing recorded", d)
	}
	if err := os.Remove(db.epochFile); err != nil {
		t.Fatal(err)
	}
	if h, err := db.DurableHead(ctx); err != nil || h != db.Seq() {
		t.Fatalf("with the file writable again: head %d, %v; want %d", h, err, db.Seq())
	}
}

// The data age counts from when a collection last caught up with the cloud: the pages of a long
// first sync (more: true) leave it "never synced", and a later catch-up moves it.
func TestLastSuccessIsTheLastCatchUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := openAt(t, path)
	defer func() { db.Close() }()
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c1", More: true, Remaining: 999999}, price("P1", 1, 100))
	if st, _ := db.FeedState(cloudapi.Prices); !st.LastSuccess.IsZero() || st.Cursor != "c1" {
		t.Fatalf("after a page of a first sync: %+v; want the cursor kept and no last success", st)
	}
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "c2"}, price("P2", 1, 100))
	caught, _ := db.FeedState(cloudapi.Prices)
	if caught.LastSuccess.IsZero() {
		t.Fatalf("after the page that caught up: %+v", caught)
	}
	db.Close()
	db = openAt(t, path) // read back from the database
	if st, _ := db.FeedState(cloudapi.Prices); !st.LastSuccess.Equal(caught.LastSuccess) {
		t.Errorf("last success after a restart %v, want %v", st.LastSuccess, caught.LastSuccess)
	}
}
