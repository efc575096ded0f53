package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/tools/testenv"
)

func TestMain(m *testing.M) {
	// After refusing a request it cannot read, net/http lingers half a second on the connection
	// before closing it (closeWriteAndWait), on purpose and by itself: not a leak.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// testNow is the injected clock of every test server.
var testNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// Catalog of the standard fixture.
const (
	nProducts   = 250
	productsAge = 90 * time.Second // products last synced 90 s before testNow
	pricesAge   = 30 * time.Second
	stockAge    = 600 * time.Second
)

var categories = []string{"Bakery", "Drinks", "Sweets"}

func productID(i int) string { return fmt.Sprintf("P%04d", i) }
func barcode(i int) string   { return fmt.Sprintf("400%010d", i) }

// productName gives a few products words worth searching for.
func productName(i int) string {
	switch i {
	case 7:
		return "Dark chocolate"
	case 8:
		return "Milk chocolate"
	case 9:
		return "Chocolate cookies"
	case 10:
		return "Green tea"
	}
	return fmt.Sprintf("Item %d", i)
}

func productChange(id string, rev int64, name, category string, codes ...string) cloudapi.Change {
	doc, err := json.Marshal(cloudapi.Product{ID: id, Name: name, Brand: "Acme", Category: category, Barcodes: codes})
	if err != nil {
		panic(err)
	}
	return cloudapi.Change{Collection: cloudapi.Products, ID: id, Op: cloudapi.OpUpsert, Rev: rev, Doc: doc}
}

func priceChange(id string, rev, amount int64) cloudapi.Change {
	doc := fmt.Sprintf(`{"product_id":%q,"currency":"EUR","amount":%d}`, id, amount)
	return cloudapi.Change{Collection: cloudapi.Prices, ID: id, Op: cloudapi.OpUpsert, Rev: rev, Doc: json.RawMessage(doc)}
}

func stockChange(id string, rev, qty int64) cloudapi.Change {
	doc := fmt.Sprintf(`{"product_id":%q,"quantity":%d}`, id, qty)
	return cloudapi.Change{Collection: cloudapi.Stock, ID: id, Op: cloudapi.OpUpsert, Rev: rev, Doc: json.RawMessage(doc)}
}

func mediaChange(id string, rev int64) cloudapi.Change {
	doc := fmt.Sprintf(`{"id":%q,"blob":"img/%s.jpg","size":1234,"md5":"1B2M2Y8AsgTpgAmY7PhCfg==","content_type":"image/jpeg"}`, id, id)
	return cloudapi.Change{Collection: cloudapi.Media, ID: id, Op: cloudapi.OpUpsert, Rev: rev, Doc: json.RawMessage(doc)}
}

func settingChange(key string, rev int64, value string) cloudapi.Change {
	doc := fmt.Sprintf(`{"key":%q,"value":%s}`, key, value)
	return cloudapi.Change{Collection: cloudapi.Settings, ID: key, Op: cloudapi.OpUpsert, Rev: rev, Doc: json.RawMessage(doc)}
}

func deleteChange(collection, id string, rev int64) cloudapi.Change {
	return cloudapi.Change{Collection: collection, ID: id, Op: cloudapi.OpDelete, Rev: rev}
}

// testReadCache is the read cache of the tests' databases: the daemon runs with one.
const testReadCache = 1 << 20

func openDB(t testing.TB) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.EnableReadCache(testReadCache); err != nil {
		t.Fatal(err)
	}
	return db
}

// applyPage commits one feed page that was fetched age before testNow.
func applyPage(t testing.TB, db *storage.DB, collection string, age time.Duration, changes ...cloudapi.Change) {
	t.Helper()
	_, err := db.ApplyPage(context.Background(), storage.Page{
		Collection: collection,
		Changes:    changes,
		End:        cloudapi.PageEnd{Cursor: fmt.Sprintf("c.%s.%d", collection, time.Now().UnixNano()), Count: len(changes)},
		FetchedAt:  testNow.Add(-age),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fillCatalog loads the standard catalog: nProducts products in three categories, each with a
// barcode and a price, stock for the even ones, two media manifests and two settings. Settings
// synced age 0; nothing else is left never synced.
func fillCatalog(t testing.TB, db *storage.DB) {
	t.Helper()
	var products, prices, stock []cloudapi.Change
	for i := 1; i <= nProducts; i++ {
		id := productID(i)
		products = append(products, productChange(id, 1, productName(i), categories[i%len(categories)], barcode(i)))
		prices = append(prices, priceChange(id, 1, int64(100*i)))
		if i%2 == 0 {
			stock = append(stock, stockChange(id, 1, int64(i)))
		}
	}
	applyPage(t, db, cloudapi.Products, productsAge, products...)
	applyPage(t, db, cloudapi.Prices, pricesAge, prices...)
	applyPage(t, db, cloudapi.Stock, stockAge, stock...)
	applyPage(t, db, cloudapi.Media, 0, mediaChange("M1", 1), mediaChange("M2", 1))
	applyPage(t, db, cloudapi.Settings, 0, settingChange("currency", 1, `"EUR"`), settingChange("receipt_footer", 1, `"Merci !"`))
}

// Credentials of every test server.
const (
	testAdminToken = "test-admin-token-0123456789"
	testEnrollment = "test-enrollment-secret-0123"
)

type fixture struct {
	db    *storage.DB
	srv   *Server
	dm    *devices.Manager
	clock *testenv.Clock
	raw   http.Handler // the front door as devices see it, every answer checked against the document
	// contract checks the answers against docs/openapi.yaml and remembers what was answered.
	contract *contract
	// h is the front door with a credential added to requests that carry none: the admin
	// token on admin routes, else the token of the device "pos".
	h      http.Handler
	tokens map[string]devices.Credentials // by device name, see device
}

// device returns the credentials of the test device with that name, pairing it on first use.
func (f *fixture) device(t testing.TB, name string) devices.Credentials {
	t.Helper()
	if c, ok := f.tokens[name]; ok {
		return c
	}
	c, err := f.dm.Pair(context.Background(), devices.PairRequest{EnrollmentSecret: testEnrollment, Kind: "pos", Name: name, Capabilities: []string{"orders"}}, "127.0.0.1")
	if err != nil {
		t.Fatalf("pair %s: %v", name, err)
	}
	f.tokens[name] = c
	return c
}

// isAdminPath tells the admin routes, which want the admin credential.
func isAdminPath(p string) bool {
	return p == "/api/v1/status" || strings.HasPrefix(p, "/api/v1/admin/")
}

// newFixture is a server over the standard catalog; opts adjust its options.
func newFixture(t testing.TB, opts ...func(*Options)) *fixture {
	t.Helper()
	db := openDB(t)
	fillCatalog(t, db)
	return newFixtureDB(t, db, opts...)
}

func newFixtureDB(t testing.TB, db *storage.DB, opts ...func(*Options)) *fixture {
	t.Helper()
	clk := testenv.NewClock(testNow)
	dm, err := devices.New(context.Background(), devices.Options{DB: db, EnrollmentSecret: testEnrollment, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		DB:         db,
		Devices:    dm,
		AdminToken: testAdminToken,
		ServerID:   "srv-test",
		ShopName:   "Lyon Part-Dieu",
		Version:    "1.2.3",
		StartedAt:  testNow.Add(-time.Hour),
		Now:        func() time.Time { return testNow },
	}
	for _, f := range opts {
		f(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c := newContract(t)
	f := &fixture{db: db, srv: s, dm: o.Devices, clock: clk, raw: c.wrap(s.Handler()), contract: c, tokens: map[string]devices.Credentials{}}
	pos := f.device(t, "pos").Token
	f.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			token := pos
			if isAdminPath(r.URL.Path) {
				token = testAdminToken
			}
			r.Header.Set("Authorization", "Bearer "+token)
		}
		f.raw.ServeHTTP(w, r)
	})
	return f
}

func (f *fixture) do(t testing.TB, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func (f *fixture) get(t testing.TB, target string) *httptest.ResponseRecorder {
	t.Helper()
	return f.do(t, httptest.NewRequest(http.MethodGet, target, nil))
}

func (f *fixture) post(t testing.TB, target, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return f.do(t, req)
}

// decodeOK checks a 200 JSON answer and decodes it.
func decodeOK[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var v T
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode answer: %v", err)
	}
	return v
}

// wantProblem checks an answer is the problem of the given status and type, whose detail holds
// every piece of text in details.
func wantProblem(t testing.TB, rec *httptest.ResponseRecorder, status int, slug string, details ...string) problemDoc {
	t.Helper()
	body := rec.Body.String()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p problemDoc
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	if p.Type != problemBase+slug || p.Status != status || p.Title == "" || p.Instance == "" || p.Detail == "" {
		t.Fatalf("problem %+v, want type %s and status %d with title, detail and instance", p, problemBase+slug, status)
	}
	for _, d := range details {
		if !strings.Contains(p.Detail, d) {
			t.Errorf("problem detail %q lacks %q", p.Detail, d)
		}
	}
	return p
}

type itemJSON struct {
	ID  string          `json:"id"`
	Rev int64           `json:"rev"`
	Seq int64           `json:"seq"`
	Doc json.RawMessage `json:"doc"`
}

type pageJSON struct {
	Items []itemJSON `json:"items"`
	Next  string     `json:"next"`
}

func productOf(t testing.TB, it itemJSON) cloudapi.Product {
	t.Helper()
	var p cloudapi.Product
	if err := json.Unmarshal(it.Doc, &p); err != nil {
		t.Fatalf("product doc %s: %v", it.Doc, err)
	}
	return p
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// getOver GETs url with client c and the credential f.h would add.
func (f *fixture) getOver(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	token := f.device(t, "pos").Token
	if isAdminPath(req.URL.Path) {
		token = testAdminToken
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body)
}
