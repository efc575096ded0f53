package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/jsonenc"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func TestProductsPagingReturnsEveryIDOnce(t *testing.T) {
	f := newFixture(t)
	seen := map[string]int{}
	var order []string
	after, pages := "", 0
	for {
		rec := f.get(t, "/api/v1/catalog/products?limit=7&after="+url.QueryEscape(after))
		p := decodeOK[pageJSON](t, rec)
		pages++
		if len(p.Items) > 7 {
			t.Fatalf("page of %d items with limit 7", len(p.Items))
		}
		for _, it := range p.Items {
			seen[it.ID]++
			order = append(order, it.ID)
			if it.Rev != 1 || it.Seq == 0 || productOf(t, it).ID != it.ID {
				t.Fatalf("item %+v", it)
			}
		}
		if p.Next == "" {
			break
		}
		if p.Next != p.Items[len(p.Items)-1].ID {
			t.Fatalf("next %q is not the last id of the page", p.Next)
		}
		after = p.Next
		if pages > nProducts {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != nProducts || len(order) != nProducts {
		t.Fatalf("paged %d items (%d distinct), want %d", len(order), len(seen), nProducts)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s returned %d times", id, n)
		}
	}
	if !slices.IsSorted(order) {
		t.Error("products not in id order")
	}
	// 250 = 35 pages of 7 + 5: the last page is short and has no next.
	if pages != 36 {
		t.Errorf("%d pages, want 36", pages)
	}
}

func TestProductsExactPageHasNoNext(t *testing.T) {
	f := newFixture(t)
	p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/products?limit=50&after="+productID(200)))
	if len(p.Items) != 50 || p.Next != "" {
		t.Fatalf("last full page: %d items, next %q; want 50 and no next", len(p.Items), p.Next)
	}
	p = decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/products"))
	if len(p.Items) != defaultLimit || p.Next != productID(defaultLimit) {
		t.Fatalf("default page: %d items, next %q", len(p.Items), p.Next)
	}
}

func TestProductsByCategoryPaging(t *testing.T) {
	f := newFixture(t)
	var got []string
	after := ""
	for {
		p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/products?category=Sweets&limit=10&after="+after))
		for _, it := range p.Items {
			if c := productOf(t, it).Category; c != "Sweets" {
				t.Fatalf("%s of category %q in Sweets", it.ID, c)
			}
			got = append(got, it.ID)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	var want []string
	for i := 1; i <= nProducts; i++ {
		if categories[i%len(categories)] == "Sweets" {
			want = append(want, productID(i))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Sweets: got %d products, want %d", len(got), len(want))
	}
	if p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/products?category=Nothing")); len(p.Items) != 0 || p.Next != "" {
		t.Fatalf("unknown category: %+v", p)
	}
}

func TestProductByID(t *testing.T) {
	f := newFixture(t)
	rec := f.get(t, "/api/v1/catalog/products/P0007")
	it := decodeOK[itemJSON](t, rec)
	stored, err := f.db.Get(context.Background(), cloudapi.Products, "P0007")
	if err != nil {
		t.Fatal(err)
	}
	if it.ID != "P0007" || it.Rev != stored.Rev || it.Seq != stored.Seq || string(it.Doc) != string(stored.Doc) {
		t.Fatalf("got %+v, want %+v", it, stored)
	}
	if productOf(t, it).Name != "Dark chocolate" {
		t.Fatalf("doc %s", it.Doc)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q", cc)
	}

	wantProblem(t, f.get(t, "/api/v1/catalog/products/P9999"), http.StatusNotFound, "not-found", `"P9999"`)
}

func TestProductIDNeedingEscapes(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"A/B", "x y", "Ünïcode%", `quote"back\slash`} {
		applyPage(t, f.db, cloudapi.Products, 0, productChange(id, 1, "Odd "+id, "Odd"))
		rec := f.get(t, "/api/v1/catalog/products/"+url.PathEscape(id))
		if it := decodeOK[itemJSON](t, rec); it.ID != id {
			t.Errorf("asked for %q, got %q", id, it.ID)
		}
	}
	// The same ids come back intact in lists (the JSON encoding of ids is hand-written).
	p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/products?category=Odd"))
	var ids []string
	for _, it := range p.Items {
		ids = append(ids, it.ID)
	}
	want := []string{"A/B", `quote"back\slash`, "x y", "Ünïcode%"}
	if !slices.Equal(ids, want) {
		t.Fatalf("ids %q, want %q", ids, want)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `"q"`, `back\`, "tab\tnew\nline\r", "\x00\x01\x1f", "é€😀", "bad\xffutf8", "<&>", "\u2028"} {
		got := jsonenc.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q round-trips to %q, want %q", s, back, wantBack)
		}
	}
}

func TestProductByBarcode(t *testing.T) {
	f := newFixture(t)
	it := decodeOK[itemJSON](t, f.get(t, "/api/v1/catalog/barcodes/"+barcode(42)))
	if it.ID != productID(42) || !slices.Contains(productOf(t, it).Barcodes, barcode(42)) {
		t.Fatalf("barcode %s gave %+v", barcode(42), it)
	}
	wantProblem(t, f.get(t, "/api/v1/catalog/barcodes/0000"), http.StatusNotFound, "not-found", `barcode "0000"`)

	// A deleted product is not found by its barcode any more.
	applyPage(t, f.db, cloudapi.Products, 0, deleteChange(cloudapi.Products, productID(42), 2))
	wantProblem(t, f.get(t, "/api/v1/catalog/barcodes/"+barcode(42)), http.StatusNotFound, "not-found")
}

func TestSearch(t *testing.T) {
	f := newFixture(t)
	ids := func(p pageJSON) []string {
		var out []string
		for _, it := range p.Items {
			out = append(out, it.ID)
		}
		slices.Sort(out)
		return out
	}
	p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/search?q=chocolate"))
	if got := ids(p); !slices.Equal(got, []string{"P0007", "P0008", "P0009"}) || p.Next != "" {
		t.Fatalf("chocolate: %v next %q", got, p.Next)
	}
	// The last word is a prefix; every word must match; case does not matter.
	if got := ids(decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/search?q=DARK+choc"))); !slices.Equal(got, []string{"P0007"}) {
		t.Fatalf("DARK choc: %v", got)
	}
	if got := ids(decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/search?q=%2A%22"))); len(got) != 0 {
		t.Fatalf("punctuation only: %v", got)
	}
	// Every word must match: more words than a search takes are refused, not dropped.
	wantProblem(t, f.get(t, "/api/v1/catalog/search?q="+strings.Repeat("dark+", 16)+"qqq"), http.StatusBadRequest, "bad-parameter", "17 words", "at most 16")
	// Paging reaches the first 10,000 results, and no further.
	wantProblem(t, f.get(t, "/api/v1/catalog/search?q=choc&cursor=10000"), http.StatusBadRequest, "bad-parameter", "cursor")

	// Paging with the cursor visits each result once.
	var paged []string
	cursor := ""
	for range 10 {
		p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/search?q=choc&limit=2&cursor="+url.QueryEscape(cursor)))
		for _, it := range p.Items {
			paged = append(paged, it.ID)
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	slices.Sort(paged)
	if !slices.Equal(paged, []string{"P0007", "P0008", "P0009"}) {
		t.Fatalf("paged search: %v", paged)
	}
}

func TestCategories(t *testing.T) {
	f := newFixture(t)
	type cat struct {
		Name     string `json:"name"`
		Products int64  `json:"products"`
	}
	got := decodeOK[struct {
		Items []cat `json:"items"`
	}](t, f.get(t, "/api/v1/catalog/categories"))
	want := []cat{{"Bakery", 83}, {"Drinks", 84}, {"Sweets", 83}}
	if !slices.Equal(got.Items, want) {
		t.Fatalf("categories %+v, want %+v", got.Items, want)
	}

	empty := newFixtureDB(t, openDB(t))
	if body := strings.TrimSpace(empty.get(t, "/api/v1/catalog/categories").Body.String()); body != `{"items":[]}` {
		t.Fatalf("no categories: %s", body)
	}
}

func TestPricesStockMedia(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		path  string
		total int
		id    string
		field string
	}{
		{"prices", nProducts, "P0003", `"amount":300`},
		{"stock", nProducts / 2, "P0004", `"quantity":4`},
		{"media", 2, "M2", `"blob":"img/M2.jpg"`},
	} {
		t.Run(c.path, func(t *testing.T) {
			n, after := 0, ""
			for {
				p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/"+c.path+"?limit=40&after="+after))
				n += len(p.Items)
				if p.Next == "" {
					break
				}
				after = p.Next
			}
			if n != c.total {
				t.Errorf("listed %d, want %d", n, c.total)
			}
			it := decodeOK[itemJSON](t, f.get(t, "/api/v1/catalog/"+c.path+"/"+c.id))
			if it.ID != c.id || !strings.Contains(string(it.Doc), c.field) {
				t.Errorf("got %+v, want %s with %s", it, c.id, c.field)
			}
			wantProblem(t, f.get(t, "/api/v1/catalog/"+c.path+"/nope"), http.StatusNotFound, "not-found", `"nope"`)
		})
	}
	// Stock of an odd product does not exist.
	wantProblem(t, f.get(t, "/api/v1/catalog/stock/P0003"), http.StatusNotFound, "not-found", "stock level")
}

func TestSettings(t *testing.T) {
	f := newFixture(t)
	p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/settings"))
	if len(p.Items) != 2 || p.Items[0].ID != "currency" || p.Items[1].ID != "receipt_footer" || p.Next != "" {
		t.Fatalf("settings %+v", p)
	}
	var s cloudapi.Setting
	if err := json.Unmarshal(p.Items[1].Doc, &s); err != nil || string(s.Value) != `"Merci !"` {
		t.Fatalf("setting doc %s: %v", p.Items[1].Doc, err)
	}
}

// A shop with more settings than GET /settings sends gets the first 1,000 by key and no next
// (openapi.yaml); the others reach devices through the delta feed.
func TestSettingsBeyondTheFirstThousand(t *testing.T) {
	db := openDB(t)
	var changes []cloudapi.Change
	for i := range 1001 {
		changes = append(changes, settingChange(fmt.Sprintf("k%04d", i), 1, "1"))
	}
	applyPage(t, db, cloudapi.Settings, 0, changes...)
	f := newFixtureDB(t, db)
	p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/settings"))
	if len(p.Items) != 1000 || p.Items[0].ID != "k0000" || p.Items[999].ID != "k0999" || p.Next != "" {
		t.Fatalf("%d settings from %s to %s, next %q: want the first 1000 by key and no next", len(p.Items), p.Items[0].ID, p.Items[len(p.Items)-1].ID, p.Next)
	}
	all, _ := drain(t, f, 0, "")
	if len(all) != 1001 || all[1000].ID != "k1000" || all[1000].Collection != cloudapi.Settings {
		t.Fatalf("the delta feed has %d changes, the last %+v: want the 1001 settings, k1000 last", len(all), all[len(all)-1])
	}
}

type changeJSON struct {
	Seq        int64           `json:"seq"`
	Collection string          `json:"collection"`
	ID         string          `json:"id"`
	Op         string          `json:"op"`
	Rev        int64           `json:"rev"`
	Doc        json.RawMessage `json:"doc"`
}

type changePage struct {
	Items     []changeJSON `json:"items"`
	NextSince int64        `json:"next_since"`
	More      bool         `json:"more"`
	Epoch     string       `json:"epoch"`
}

// drain follows the feed from since to its end, as a device does.
func drain(t *testing.T, f *fixture, since int64, query string) ([]changeJSON, int64) {
	t.Helper()
	var all []changeJSON
	for range 1000 {
		p := decodeOK[changePage](t, f.get(t, "/api/v1/catalog/changes?since="+strconv.FormatInt(since, 10)+query))
		all = append(all, p.Items...)
		since = p.NextSince
		if !p.More {
			return all, since
		}
	}
	t.Fatal("the feed does not end")
	return nil, 0
}

func TestChangesFeed(t *testing.T) {
	f := newFixture(t)
	all, since := drain(t, f, 0, "&limit=333")
	total := nProducts + nProducts + nProducts/2 + 2 + 2
	if len(all) != total {
		t.Fatalf("full feed: %d changes, want %d", len(all), total)
	}
	seen := map[string]bool{}
	for i, c := range all {
		if i > 0 && c.Seq <= all[i-1].Seq {
			t.Fatalf("seq %d after %d", c.Seq, all[i-1].Seq)
		}
		key := c.Collection + "/" + c.ID
		if seen[key] {
			t.Fatalf("%s twice", key)
		}
		seen[key] = true
		if c.Op != cloudapi.OpUpsert || len(c.Doc) == 0 {
			t.Fatalf("change %+v", c)
		}
	}
	if since != all[len(all)-1].Seq {
		t.Fatalf("next_since %d, want the last seq %d", since, all[len(all)-1].Seq)
	}

	// Caught up: nothing, next_since unchanged, no more.
	p := decodeOK[changePage](t, f.get(t, "/api/v1/catalog/changes?since="+strconv.FormatInt(since, 10)))
	if len(p.Items) != 0 || p.NextSince != since || p.More {
		t.Fatalf("caught up: %+v", p)
	}
	if body := f.get(t, "/api/v1/catalog/changes?since="+strconv.FormatInt(since, 10)).Body.String(); !strings.Contains(body, `"items":[]`) {
		t.Fatalf("empty items must be [], got %s", body)
	}

	// A price change shows exactly that change.
	applyPage(t, f.db, cloudapi.Prices, 0, priceChange("P0005", 2, 999))
	p = decodeOK[changePage](t, f.get(t, "/api/v1/catalog/changes?since="+strconv.FormatInt(since, 10)))
	if len(p.Items) != 1 || p.More {
		t.Fatalf("after one price change: %+v", p)
	}
	c := p.Items[0]
	if c.Collection != cloudapi.Prices || c.ID != "P0005" || c.Op != cloudapi.OpUpsert || c.Rev != 2 ||
		!strings.Contains(string(c.Doc), `"amount":999`) || c.Seq != p.NextSince || c.Seq <= since {
		t.Fatalf("price change %+v, next_since %d", c, p.NextSince)
	}
	since = p.NextSince

	// A delete appears as op delete without a doc.
	applyPage(t, f.db, cloudapi.Products, 0, deleteChange(cloudapi.Products, "P0006", 2))
	rec := f.get(t, "/api/v1/catalog/changes?since="+strconv.FormatInt(since, 10))
	p = decodeOK[changePage](t, rec)
	if len(p.Items) != 1 || p.Items[0].Op != cloudapi.OpDelete || p.Items[0].ID != "P0006" || p.Items[0].Doc != nil || p.Items[0].Rev != 2 {
		t.Fatalf("delete: %+v", p)
	}
	since = p.NextSince

	// Collections filter: a stock change is not in a products,prices feed.
	applyPage(t, f.db, cloudapi.Stock, 0, stockChange("P0002", 2, 0))
	applyPage(t, f.db, cloudapi.Prices, 0, priceChange("P0002", 2, 1))
	p = decodeOK[changePage](t, f.get(t, "/api/v1/catalog/changes?collections=products,prices&since="+strconv.FormatInt(since, 10)))
	if len(p.Items) != 1 || p.Items[0].Collection != cloudapi.Prices {
		t.Fatalf("filtered feed: %+v", p)
	}
	p = decodeOK[changePage](t, f.get(t, "/api/v1/catalog/changes?collections=stock&since="+strconv.FormatInt(since, 10)))
	if len(p.Items) != 1 || p.Items[0].Collection != cloudapi.Stock {
		t.Fatalf("stock feed: %+v", p)
	}
}

// TestChangesReset follows the documented rules of the delta feed's epoch: every answer names
// it; a since beyond the last change, or sent with another epoch, is answered 410 changes-reset;
// since=0 always answers.
func TestChangesReset(t *testing.T) {
	f := newFixture(t)
	epoch := f.db.Epoch()
	all, since := drain(t, f, 0, "")
	p := decodeOK[changePage](t, f.get(t, "/api/v1/catalog/changes?since=0&limit=1"))
	if p.Epoch != epoch || len(epoch) != 16 {
		t.Fatalf("answer epoch %q, the database's %q", p.Epoch, epoch)
	}
	at := func(since int64, epoch string) string {
		return "/api/v1/catalog/changes?since=" + strconv.FormatInt(since, 10) + "&epoch=" + epoch
	}
	p = decodeOK[changePage](t, f.get(t, at(since, epoch)))
	if len(p.Items) != 0 || p.NextSince != since {
		t.Fatalf("caught up with its epoch: %+v", p)
	}
	decodeOK[changePage](t, f.get(t, at(all[0].Seq, epoch)))
	rec := f.get(t, at(since, "0123456789abcdef"))
	wantProblem(t, rec, http.StatusGone, "changes-reset", "epoch 0123456789abcdef", "now "+epoch, "since=0")
	if rec.Header().Get("Storeedge-Synced-At") == "" {
		t.Error("the reset answer lacks the data age headers")
	}
	wantProblem(t, f.get(t, "/api/v1/catalog/changes?since="+strconv.FormatInt(since+1, 10)), http.StatusGone, "changes-reset",
		"beyond the last change", strconv.FormatInt(since, 10))
	wantProblem(t, f.get(t, at(since+1, epoch)), http.StatusGone, "changes-reset")
	// Starting again is always possible, whatever epoch the device held.
	p = decodeOK[changePage](t, f.get(t, at(0, "0123456789abcdef")+"&limit=1000"))
	if len(p.Items) != len(all) || p.Epoch != epoch {
		t.Fatalf("since=0 with an old epoch: %d items, epoch %q", len(p.Items), p.Epoch)
	}
}

func TestChangesMore(t *testing.T) {
	f := newFixture(t)
	p := decodeOK[changePage](t, f.get(t, "/api/v1/catalog/changes?since=0&limit=2"))
	if len(p.Items) != 2 || !p.More || p.NextSince != p.Items[1].Seq {
		t.Fatalf("first page: %+v", p)
	}
	// The last two settings: exactly the limit, and nothing after.
	all, _ := drain(t, f, 0, "&collections=settings&limit=2")
	if len(all) != 2 {
		t.Fatalf("settings feed: %+v", all)
	}
	p = decodeOK[changePage](t, f.get(t, "/api/v1/catalog/changes?collections=settings&limit=2"))
	if p.More {
		t.Fatal("more is true on a page that holds the last changes")
	}
}

func TestDataAgeHeaders(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		target, age string
	}{
		{"/api/v1/catalog/products/P0001", "90"},
		{"/api/v1/catalog/products", "90"},
		{"/api/v1/catalog/search?q=tea", "90"},
		{"/api/v1/catalog/categories", "90"},
		{"/api/v1/catalog/barcodes/" + barcode(1), "90"},
		{"/api/v1/catalog/prices/P0001", "30"},
		{"/api/v1/catalog/stock", "600"},
		{"/api/v1/catalog/media", "0"},
		{"/api/v1/catalog/settings", "0"},
		{"/api/v1/catalog/changes", "600"},                            // the oldest of all
		{"/api/v1/catalog/changes?collections=products,prices", "90"}, // the oldest of those asked for
		{"/api/v1/catalog/products/P9999", "90"},                      // errors tell it too
		{"/api/v1/catalog/products?limit=0", "90"},
		{"/api/v1/catalog/products?limit=1&limit=2", "90"},
		{"/api/v1/catalog/changes?since=1&since=2", "600"}, // a refused query: all collections
		{"/api/v1/catalog/search?q=tea;x", "90"},
	} {
		rec := f.get(t, c.target)
		if got := rec.Header().Get(headerDataAge); got != c.age {
			t.Errorf("%s: %s %q, want %q", c.target, headerDataAge, got, c.age)
		}
		age, _ := strconv.Atoi(c.age)
		want := testNow.Add(-time.Duration(age) * time.Second).Format("2006-01-02T15:04:05Z")
		if got := rec.Header().Get(headerSyncedAt); got != want {
			t.Errorf("%s: %s %q, want %q", c.target, headerSyncedAt, got, want)
		}
	}
	rec := f.post(t, "/api/v1/catalog/lookup", "application/json", `{"ids":["P0001"]}`)
	if got := rec.Header().Get(headerDataAge); got != "600" {
		t.Errorf("lookup: data age %q, want the oldest of products, prices, stock (600)", got)
	}
}

func TestDataAgeNeverSynced(t *testing.T) {
	db := openDB(t)
	applyPage(t, db, cloudapi.Products, productsAge, productChange("P1", 1, "Bread", "Bakery"))
	f := newFixtureDB(t, db)
	for _, target := range []string{"/api/v1/catalog/prices", "/api/v1/catalog/prices/P1", "/api/v1/catalog/changes", "/api/v1/catalog/settings"} {
		rec := f.get(t, target)
		if got := rec.Header().Get(headerSyncedAt); got != "never" {
			t.Errorf("%s: %s %q, want never", target, headerSyncedAt, got)
		}
		if _, ok := rec.Header()[headerDataAge]; ok {
			t.Errorf("%s: %s present for a collection never synced", target, headerDataAge)
		}
	}
	rec := f.post(t, "/api/v1/catalog/lookup", "application/json", `{"ids":["P1"]}`)
	if got := rec.Header().Get(headerSyncedAt); got != "never" {
		t.Errorf("lookup with prices never synced: %q", got)
	}
	if got := f.get(t, "/api/v1/catalog/products").Header().Get(headerDataAge); got != "90" {
		t.Errorf("products: data age %q", got)
	}
}

func TestBadQueryParameters(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("é", maxQueryRunes+1)
	for _, c := range []struct {
		target string
		detail []string
	}{
		{"/api/v1/catalog/products?limit=0", []string{"limit", `"0"`, "1 to 1000"}},
		{"/api/v1/catalog/products?limit=1001", []string{"limit", "1 to 1000"}},
		{"/api/v1/catalog/products?limit=ten", []string{"limit", `"ten"`}},
		{"/api/v1/catalog/products?limit=", []string{"limit"}},
		{"/api/v1/catalog/products?limit=-5", []string{"limit"}},
		{"/api/v1/catalog/prices?limit=1.5", []string{"limit"}},
		{"/api/v1/catalog/stock?limit=99999999999999999999", []string{"limit"}},
		{"/api/v1/catalog/media?limit=x", []string{"limit"}},
		{"/api/v1/catalog/changes?since=-1", []string{"since", `"-1"`, "from 0 to 9223372036854775807"}},
		{"/api/v1/catalog/changes?since=%2B5", []string{"since", `"+5"`}},
		{"/api/v1/catalog/changes?since=9223372036854775808", []string{"since", "from 0 to 9223372036854775807"}},
		{"/api/v1/catalog/products?limit=%2B5", []string{"limit", `"+5"`}},
		{"/api/v1/catalog/products?limit=%205", []string{"limit"}},
		{"/api/v1/catalog/changes?since=abc", []string{"since"}},
		{"/api/v1/catalog/changes?since=", []string{"since"}},
		{"/api/v1/catalog/changes?limit=0", []string{"limit"}},
		{"/api/v1/catalog/changes?collections=products,orders", []string{"collections", `"orders"`, "products, prices, stock, media, settings"}},
		{"/api/v1/catalog/changes?collections=", []string{"collections", `""`}},
		// A list given as repeated parameters is not cut to its first value, nor is a repeated
		// number; a query that does not parse is not read in part.
		{"/api/v1/catalog/changes?collections=prices&collections=stock", []string{"collections", "given 2 times", "comma-separated"}},
		{"/api/v1/catalog/changes?since=5&since=0", []string{"since", "given 2 times"}},
		{"/api/v1/catalog/products?limit=1;after=x", []string{"not well formed"}},
		{"/api/v1/catalog/search?q=tea&q=%zz", []string{"not well formed"}},
		{"/api/v1/orders?status=new&status=new", []string{"status", "given 2 times"}},
		// What the route does not read is ignored, repeated or not; a query that does not
		// parse is refused whatever it names.
		{"/api/v1/catalog/products?utm=100%", []string{"not well formed"}},
		{"/api/v1/catalog/changes?since=1&epoch=", []string{"epoch", `""`, "16 lower-case hexadecimal digits"}},
		{"/api/v1/catalog/changes?since=1&epoch=3F9C2A71D04BE865", []string{"epoch"}},
		{"/api/v1/catalog/changes?since=1&epoch=3f9c2a71d04be86", []string{"epoch"}},
		{"/api/v1/catalog/search", []string{"q", "missing"}},
		{"/api/v1/catalog/search?q=", []string{"q", "missing"}},
		{"/api/v1/catalog/search?q=+++", []string{"q", "missing"}},
		{"/api/v1/catalog/search?q=" + url.QueryEscape(long), []string{"q", "201 characters", "1 to 200"}},
		{"/api/v1/catalog/search?q=tea&limit=0", []string{"limit"}},
		{"/api/v1/catalog/search?q=tea&cursor=-1", []string{"cursor"}},
		{"/api/v1/catalog/search?q=tea&cursor=abc", []string{"cursor"}},
		{"/api/v1/catalog/search?q=tea&cursor=%2B1", []string{"cursor"}},
		{"/api/v1/catalog/search?q=tea&cursor=99999", []string{"cursor"}},
		// What was sent counts, spaces around the words too.
		{"/api/v1/catalog/search?q=noir" + strings.Repeat("+", maxQueryRunes), []string{"q", "204 characters", "1 to 200"}},
		// A path parameter no item can have is no missing item: 400, not 404.
		{"/api/v1/catalog/barcodes/" + strings.Repeat("4", 65), []string{"code", "not a barcode"}},
		{"/api/v1/catalog/barcodes/4000%20000", []string{"code", `"4000 000"`}},
		{"/api/v1/catalog/barcodes/ABC_1", []string{"code"}},
		{"/api/v1/catalog/products/" + strings.Repeat("p", 129), []string{"id", "longer than 128 bytes"}},
		{"/api/v1/catalog/stock/P%0A1", []string{"id", "control character"}},
		{"/api/v1/catalog/media/%FF", []string{"id", "UTF-8"}},
	} {
		rec := f.get(t, c.target)
		p := wantProblem(t, rec, http.StatusBadRequest, "bad-parameter", c.detail...)
		if u, _ := url.Parse(c.target); p.Instance != u.EscapedPath() {
			t.Errorf("%s: instance %q", c.target, p.Instance)
		}
	}
	// 200 characters is allowed.
	decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/search?q="+url.QueryEscape(strings.Repeat("é", maxQueryRunes))))
	decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/products?limit=1000"))
	decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/products?limit=1"))
	// A parameter the route does not read (a cache buster, say) is ignored, repeated or not.
	if p := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/products?limit=1&_=1&_=2")); len(p.Items) != 1 {
		t.Errorf("with a repeated parameter the route does not read: %d items, want 1", len(p.Items))
	}
}

func TestUnknownRouteAndWrongMethod(t *testing.T) {
	f := newFixture(t)
	for _, target := range []string{"/", "/api/v1/nothing", "/api/v1/catalog/products/P0001/extra", "/api/v1/catalog/product"} {
		wantProblem(t, f.get(t, target), http.StatusNotFound, "not-found", target)
	}
	for _, c := range []struct {
		method, target, allow string
	}{
		{http.MethodPost, "/api/v1/catalog/products", "GET"},
		{http.MethodDelete, "/api/v1/catalog/products/P0001", "GET"},
		{http.MethodGet, "/api/v1/catalog/lookup", "POST"},
		{http.MethodPut, "/healthz", "GET"},
		{http.MethodPost, "/api/v1/status", "GET"},
		{"BREW", "/api/v1/catalog/products", "GET"},
	} {
		rec := f.do(t, httpRequest(c.method, c.target))
		wantProblem(t, rec, http.StatusMethodNotAllowed, "method-not-allowed", c.method, c.allow)
		if got := rec.Header().Values("Allow"); !slices.Equal(got, []string{c.allow}) {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.target, got, c.allow)
		}
	}
}

// A method chi does not know, on a path that does not exist, is still a 404.
func TestUnknownMethodUnknownPath(t *testing.T) {
	f := newFixture(t)
	wantProblem(t, f.do(t, httpRequest("BREW", "/coffee")), http.StatusNotFound, "not-found", "BREW /coffee")
}

func httpRequest(method, target string) *http.Request {
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		panic(err)
	}
	req.RequestURI = target
	return req
}

// The fixture's docs are what storage holds, byte for byte.
func TestItemsAreStoredBytes(t *testing.T) {
	f := newFixture(t)
	want, err := f.db.List(context.Background(), cloudapi.Prices, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeOK[pageJSON](t, f.get(t, "/api/v1/catalog/prices?limit=3"))
	for i := range want {
		if string(got.Items[i].Doc) != string(want[i].Doc) {
			t.Errorf("doc %s, stored %s", got.Items[i].Doc, want[i].Doc)
		}
	}
}

// FuzzChangesQuery asks the delta feed with arbitrary query strings: the answer is a page of
// changes naming the epoch, a bad-parameter problem or a changes-reset problem, never a panic or
// a 500.
func FuzzChangesQuery(f *testing.F) {
	fx := newFixture(f)
	epoch := fx.db.Epoch()
	f.Add("since=0&limit=5")
	f.Add("since=3&epoch=" + epoch)
	f.Add("since=3&epoch=0123456789abcdef&collections=prices,stock")
	f.Add("since=99999999&limit=1000")
	f.Add("since=1&epoch=%00%ff&limit=-1")
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/catalog/changes", nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			var p changePage
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Epoch != epoch {
				t.Fatalf("%q: %s", query, rec.Body)
			}
		case http.StatusBadRequest, http.StatusGone:
			if rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%q: %d without a problem document", query, rec.Code)
			}
		default:
			t.Fatalf("%q: status %d: %s", query, rec.Code, rec.Body)
		}
	})
}

// TestAnswersCarryContentLength reads answers over a real connection: small and large ones alike
// arrive with a Content-Length, not chunked, whether the server or net/http wrote it.
func TestAnswersCarryContentLength(t *testing.T) {
	f := newFixture(t)
	ts := httptest.NewServer(f.h)
	defer ts.Close()
	var small, large bool
	for _, path := range []string{"/api/v1/catalog/products/P0123", "/api/v1/catalog/products?limit=100"} {
		resp, err := ts.Client().Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
			t.Errorf("GET %s: status %d, Content-Length %d, Transfer-Encoding %v for a body of %d bytes; want 200 with the body's length",
				path, resp.StatusCode, resp.ContentLength, resp.TransferEncoding, len(body))
		}
		small = small || len(body) <= autoLengthMax
		large = large || len(body) > autoLengthMax
	}
	if !small || !large {
		t.Errorf("the answers were not on both sides of %d bytes", autoLengthMax)
	}
}

// While a bulk load of products runs (a first sync), what it brings is not looked up by barcode
// or searched until it ends: a barcode or a search that finds nothing is 503 not-ready with
// Retry-After, not a 404 or an empty list a device would take for "no such product"; a lookup
// by id answers. Once the load ends, all three find the product.
func TestCatalogWhileAFirstSyncLoads(t *testing.T) {
	db := openDB(t)
	f := newFixtureDB(t, db)
	page := func(more bool, changes ...cloudapi.Change) {
		t.Helper()
		if _, err := db.ApplyPage(context.Background(), storage.Page{Collection: cloudapi.Products, Changes: changes,
			End:       cloudapi.PageEnd{Cursor: fmt.Sprint("c", len(changes), more), Count: len(changes), More: more, Remaining: 100000},
			FetchedAt: testNow}); err != nil {
			t.Fatal(err)
		}
	}
	page(true, productChange("P0001", 1, "Green tea", "Drinks", "4000000000017"))
	if rec := f.get(t, "/api/v1/catalog/products/P0001"); rec.Code != http.StatusOK {
		t.Fatalf("by id during the load: %d %s", rec.Code, rec.Body)
	}
	for _, path := range []string{"/api/v1/catalog/barcodes/4000000000017", "/api/v1/catalog/search?q=tea"} {
		rec := f.get(t, path)
		wantProblem(t, rec, http.StatusServiceUnavailable, "not-ready", "being loaded")
		if rec.Header().Get("Retry-After") != "5" {
			t.Errorf("%s during the load: Retry-After %q, want 5", path, rec.Header().Get("Retry-After"))
		}
	}
	// A later page past the last result is the empty page it always is: a device paging through
	// what the index held before the load is not sent round a 503 at its end.
	if rec := f.get(t, "/api/v1/catalog/search?q=tea&cursor=20"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"items":[]`) {
		t.Errorf("a later search page past the results during the load: %d %s, want an empty 200", rec.Code, rec.Body)
	}
	// A barcode no product can carry is refused as such, load or not: no use trying again.
	wantProblem(t, f.get(t, "/api/v1/catalog/barcodes/4000%20000"), http.StatusBadRequest, "bad-parameter", "code")
	// A search with no word (punctuation, a lone accent) can match nothing, load or not.
	if rec := f.get(t, "/api/v1/catalog/search?q=%2A+%CC%81"); rec.Code != http.StatusOK {
		t.Errorf("a search without words during the load: %d %s, want an empty 200", rec.Code, rec.Body)
	}
	page(false)
	if rec := f.get(t, "/api/v1/catalog/barcodes/4000000000017"); rec.Code != http.StatusOK {
		t.Fatalf("by barcode after the load: %d %s", rec.Code, rec.Body)
	}
	if rec := f.get(t, "/api/v1/catalog/search?q=tea"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "P0001") {
		t.Fatalf("search after the load: %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, f.get(t, "/api/v1/catalog/barcodes/4000000000024"), http.StatusNotFound, "not-found")
}

// A problem's instance is the path as the device asked for it: an id holding a slash, sent as
// %2F, is one segment, and non-ASCII stays escaped, a valid URI reference.
func TestProblemInstanceIsThePathAsAsked(t *testing.T) {
	f := newFixture(t)
	for asked, want := range map[string]string{
		"/api/v1/catalog/products/a%2Fb":     "/api/v1/catalog/products/a%2Fb",
		"/api/v1/catalog/products/caf%C3%A9": "/api/v1/catalog/products/caf%C3%A9",
	} {
		var p struct {
			Instance string `json:"instance"`
		}
		rec := f.get(t, asked)
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Code != http.StatusNotFound || p.Instance != want {
			t.Errorf("%s: %d, instance %q, want 404 with %q", asked, rec.Code, p.Instance, want)
		}
	}
}

// The delta feed has no ETag (catalog.md): every answer is a 200 with what follows since, not
// kept by a cache, whatever conditional header a client sends.
func TestChangesHaveNoETag(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/catalog/changes?since=0&limit=5", nil)
	req.Header.Set("If-None-Match", "*")
	rec := f.do(t, req)
	if rec.Code != http.StatusOK || rec.Header().Get("ETag") != "" || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("status %d, ETag %q, Cache-Control %q; want 200, none, no-cache", rec.Code, rec.Header().Get("ETag"), rec.Header().Get("Cache-Control"))
	}
}
