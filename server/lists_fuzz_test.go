package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzListQueries sends arbitrary query strings to the lists whose parameters are read in their
// handlers (orders: status, before; commands: state, device; products: category, and the
// shared limit and cursors): the answer is never a panic or a 5xx, and a 4xx is a problem
// document. (The fixture checks answers against openapi.yaml in tests, not while fuzzing.)
func FuzzListQueries(f *testing.F) {
	fx := newFixture(f)
	routes := []string{"/api/v1/orders", "/api/v1/admin/commands", "/api/v1/catalog/products", "/api/v1/admin/devices"}
	for i, q := range []string{"status=ready&limit=5", "state=acked&device=d-1", "category=Drinks&limit=2&cursor=P0002", "limit=1"} {
		f.Add(uint8(i), q)
	}
	f.Add(uint8(0), "before=9&status=new,ready")
	f.Add(uint8(1), "state=&device=%00")
	f.Add(uint8(2), "category=%ff&cursor=")
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
		}
	})
}
