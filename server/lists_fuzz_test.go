package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
)

// FuzzListQueries sends arbitrary query strings to the lists whose parameters are read in their
// handlers (orders: status, before; commands: state, device; products: category, and the
// shared limit and cursors): the answer is never a panic or a 5xx, a 4xx is a problem document,
// and a page holds at most the limit asked for. (The fixture checks answers against
// openapi.yaml in tests, not while fuzzing.)
func FuzzListQueries(f *testing.F) {
	fx := newFixture(f)
	for _, key := range []string{"k1", "k2", "k3"} { // lists with more than one item to page
		if rec := fx.order(f, "pos", key, `{"lines":[{"product_id":"P0002","quantity":1}]}`); rec.Code != http.StatusCreated {
			f.Fatalf("order: %d %s", rec.Code, rec.Body)
		}
	}
	type page struct {
		Items []json.RawMessage `json:"items"`
		Next  any               `json:"next"`
	}
	if rec := fx.get(f, "/api/v1/orders?status=new&limit=2"); len(decodeOK[page](f, rec).Items) != 2 {
		f.Fatalf("the seeds' first page: %d %s, want 2 orders", rec.Code, rec.Body)
	}
	routes := []string{"/api/v1/orders", "/api/v1/admin/commands", "/api/v1/catalog/products", "/api/v1/admin/devices"}
	for i, q := range []string{"status=new&limit=2", "state=acknowledged&device=d-1", "category=Drinks&limit=2&after=P0002", "limit=1"} {
		f.Add(uint8(i), q)
	}
	f.Add(uint8(0), "before=3&limit=1")
	f.Add(uint8(0), "before=9&status=new,ready")
	f.Add(uint8(1), "state=&device=%00")
	f.Add(uint8(2), "category=%ff&after=")
	f.Add(uint8(2), "limit=1&after=P0001")
	f.Fuzz(func(t *testing.T, route uint8, query string) {
		path := routes[int(route)%len(routes)]
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("GET %s?%s: status %d: %s", path, query, rec.Code, rec.Body)
		case rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json":
			t.Fatalf("GET %s?%s: %d without a problem document", path, query, rec.Code)
		case rec.Code != http.StatusOK:
			return
		}
		var got page
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("GET %s?%s: 200 with %v: %s", path, query, err, rec.Body)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		// The devices list takes no limit (it holds every device); the others do.
		if limit, err := strconv.Atoi(q.Get("limit")); err == nil && path != "/api/v1/admin/devices" && len(got.Items) > limit {
			t.Fatalf("GET %s?%s: %d items, more than the limit", path, query, len(got.Items))
		}
	})
}
