package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

type lookupJSON struct {
	Items []struct {
		ID      string          `json:"id"`
		Barcode string          `json:"barcode"`
		Product json.RawMessage `json:"product"`
		Price   json.RawMessage `json:"price"`
		Stock   json.RawMessage `json:"stock"`
	} `json:"items"`
	Missing []string `json:"missing"`
}

func TestLookup(t *testing.T) {
	f := newFixture(t)
	applyPage(t, f.db, cloudapi.Products, 0, cloudapi.Change{Collection: cloudapi.Products, ID: "P0003", Op: cloudapi.OpUpsert, Rev: 2,
		Doc: json.RawMessage(`{"id":"P0003","name":"Fish & chips <large>","category":"Food"}`)})
	body := `{"ids":["P0002","P0003","NOPE","P0002"],"barcodes":["` + barcode(10) + `","9999"]}`
	got := decodeOK[lookupJSON](t, f.post(t, "/api/v1/catalog/lookup", "application/json; charset=utf-8", body))

	type want struct{ id, barcode, price, stock string }
	wants := []want{
		{"P0002", "", `"amount":200`, `"quantity":2`},
		{"P0003", "", `"amount":300`, "null"}, // odd products have no stock
		{"P0010", barcode(10), `"amount":1000`, `"quantity":10`},
	}
	if len(got.Items) != len(wants) {
		t.Fatalf("items %+v, want %d", got.Items, len(wants))
	}
	for i, w := range wants {
		it := got.Items[i]
		var p cloudapi.Product
		if err := json.Unmarshal(it.Product, &p); err != nil || p.ID != w.id {
			t.Errorf("item %d: product %s, want %s", i, it.Product, w.id)
		}
		if it.ID != w.id || it.Barcode != w.barcode || !strings.Contains(string(it.Price), w.price) || !strings.Contains(string(it.Stock), w.stock) {
			t.Errorf("item %d: %s barcode %q price %s stock %s; want %+v", i, it.ID, it.Barcode, it.Price, it.Stock, w)
		}
	}
	if !strings.Contains(string(got.Items[1].Product), `"Fish & chips <large>"`) {
		t.Errorf("product document not passed as stored: %s", got.Items[1].Product)
	}
	if fmt.Sprint(got.Missing) != "[NOPE 9999]" {
		t.Errorf("missing %q, want [NOPE 9999]", got.Missing)
	}

	// Nothing found is a normal answer, with empty lists rather than nulls.
	rec := f.post(t, "/api/v1/catalog/lookup", "application/json", `{"barcodes":["123"]}`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"items":[]`) || !strings.Contains(rec.Body.String(), `"missing":["123"]`) {
		t.Fatalf("nothing found: %d %s", rec.Code, rec.Body)
	}
}

// Every route that reads a JSON body refuses one sent as something else, with the 415 its
// document lists (the fixture checks each answer against openapi.yaml).
func TestJSONRoutesRefuseOtherBodies(t *testing.T) {
	f := newFixture(t)
	for _, route := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/devices/pair"},
		{http.MethodPost, "/api/v1/devices/heartbeat"},
		{http.MethodPatch, "/api/v1/admin/devices/" + f.device(t, "pos").DeviceID},
		{http.MethodPost, "/api/v1/admin/pairing-codes"},
		{http.MethodPost, "/api/v1/admin/commands"},
		{http.MethodPost, "/api/v1/catalog/lookup"},
		{http.MethodPost, "/api/v1/orders"},
	} {
		req := httptest.NewRequest(route.method, route.path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Idempotency-Key", "k-415")
		wantProblem(t, f.do(t, req), 415, "unsupported-media-type", "text/plain")
	}
}

func TestLookupBadBodies(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBodyBytes = 4096 })
	ids := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"P%d"`, i)
		}
		return b.String()
	}
	for _, c := range []struct {
		name, contentType, body string
		status                  int
		slug                    string
		detail                  []string
	}{
		{"no content type", "", `{"ids":["P0001"]}`, 415, "unsupported-media-type", []string{"application/json", "none"}},
		{"text", "text/plain", `{"ids":["P0001"]}`, 415, "unsupported-media-type", []string{"text/plain"}},
		{"form", "application/x-www-form-urlencoded", `ids=P0001`, 415, "unsupported-media-type", nil},
		{"oversized", "application/json", `{"ids":[` + ids(1000) + `]}`, 413, "body-too-large", []string{"4096 bytes", "lan.max_body_bytes"}},
		{"oversized after a complete value", "application/json", `{"ids":["P0001"]}` + strings.Repeat(" ", 5000), 413, "body-too-large", nil},
		{"syntax", "application/json", `{"ids":["P0001",]}`, 400, "malformed-body", []string{"syntax error at offset 17"}},
		{"unknown field", "application/json", `{"ids":["P0001"],"sku":"x"}`, 400, "malformed-body", []string{`unknown field "sku"`}},
		{"wrong type", "application/json", `{"ids":"P0001"}`, 400, "malformed-body", []string{`wrong type for field "ids"`, "array of strings"}},
		{"wrong element type", "application/json", `{"ids":[1]}`, 400, "malformed-body", []string{`wrong type for field "ids"`, "number"}},
		{"array body", "application/json", `["P0001"]`, 400, "malformed-body", []string{"want an object"}},
		{"empty body", "application/json", ``, 400, "malformed-body", []string{"empty"}},
		{"cut body", "application/json", `{"ids":["P00`, 400, "malformed-body", []string{"ends before"}},
		{"trailing data", "application/json", `{"ids":["P0001"]} {}`, 400, "malformed-body", []string{"after the JSON object"}},
		{"trailing brace", "application/json", `{"ids":["P0001"]} }`, 400, "malformed-body", []string{"after the JSON object"}},
		{"trailing word", "application/json", `{"ids":["P0001"]}x`, 400, "malformed-body", []string{"after the JSON object"}},
		{"empty", "application/json", `{}`, 400, "invalid-body", []string{"at least one"}},
		{"empty lists", "application/json", `{"ids":[],"barcodes":[]}`, 400, "invalid-body", []string{"at least one"}},
		{"null", "application/json", `null`, 400, "invalid-body", []string{"at least one"}},
		{"too many ids", "application/json", `{"ids":[` + ids(201) + `]}`, 400, "invalid-body", []string{`"ids" has 201 entries`, "at most 200"}},
		{"too many barcodes", "application/json", `{"barcodes":[` + ids(201) + `]}`, 400, "invalid-body", []string{`"barcodes" has 201`}},
		{"empty id", "application/json", `{"ids":["P0001",""]}`, 400, "invalid-body", []string{"ids[1]: empty"}},
		{"long barcode", "application/json", `{"barcodes":["` + strings.Repeat("9", 129) + `"]}`, 400, "invalid-body", []string{"barcodes[0]", "128 bytes"}},
		{"control character", "application/json", `{"ids":["P\u0001"]}`, 400, "invalid-body", []string{"control character"}},
		{"C1 control character", "application/json", `{"barcodes":["40\u00851"]}`, 400, "invalid-body", []string{"control character"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Sent without a length, as a chunked body is: the limit is met while reading.
			req := httptest.NewRequest(http.MethodPost, "/api/v1/catalog/lookup", strings.NewReader(c.body))
			req.ContentLength = -1
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			p := wantProblem(t, f.do(t, req), c.status, c.slug, c.detail...)
			if p.Instance != "/api/v1/catalog/lookup" {
				t.Errorf("instance %q", p.Instance)
			}
		})
	}
	// 200 of each is allowed.
	decodeOK[lookupJSON](t, f.post(t, "/api/v1/catalog/lookup", "application/json", `{"ids":[`+ids(200)+`]}`))
}

// A body announced larger than the limit is refused before it is read, on any route.
func TestBodyLimitAnnounced(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBodyBytes = 1024 })
	req := httpRequest(http.MethodPost, "/api/v1/catalog/lookup")
	req.Header.Set("Content-Type", "application/json")
	req.Body = http.NoBody
	req.ContentLength = 1 << 20
	wantProblem(t, f.do(t, req), http.StatusRequestEntityTooLarge, "body-too-large", "1024 bytes")
}
