package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzPathsAndHeaders sends what a device or anyone on the LAN may put in a path segment and in
// the headers the server reads on these routes (Authorization, Idempotency-Key, X-Request-ID),
// on every route of the fixture that takes a path parameter, on the catalog search and on the
// order POST (its body fixed): never a panic nor a 5xx but 503, every refusal a problem
// document, and a credential the fuzzer made never opens a route. (The media routes' Range and conditional
// headers are FuzzMediaRange's, Last-Event-ID FuzzQueryParams'; a fuzz target's fixture does not
// check answers against openapi.yaml, the tests' fixtures do.)
func FuzzPathsAndHeaders(f *testing.F) {
	fx := newFixture(f)
	pos := fx.device(f, "pos").Token
	routes := []struct{ method, pattern string }{ // every one needs a credential but the last
		{http.MethodGet, "/api/v1/catalog/products/%s"},
		{http.MethodGet, "/api/v1/catalog/barcodes/%s"},
		{http.MethodGet, "/api/v1/catalog/stock/%s"},
		{http.MethodGet, "/api/v1/orders/%s"},
		{http.MethodGet, "/api/v1/admin/devices/%s"},
		{http.MethodGet, "/api/v1/admin/commands/%s"},
		{http.MethodPost, "/api/v1/admin/outbox/%s/retry"},
		{http.MethodGet, "/api/v1/catalog/search?q=%s"},
		{http.MethodPost, "/api/v1/orders"},
		{http.MethodGet, "/api/v1/catalog/prices/%s"},
		{http.MethodGet, "/api/v1/catalog/media/%s"},
		{http.MethodGet, "/api/v1/catalog/settings/%s"},
		{http.MethodPost, "/api/v1/admin/devices/%s/revoke"},
		{http.MethodPost, "/api/v1/admin/backoffice/webhook/%s/retry"},
		{http.MethodPost, "/api/v1/orders/%s/status"},
		{http.MethodGet, "/api/v1/media/%s"},
		{http.MethodHead, "/api/v1/media/%s"},
		{http.MethodGet, "/status/assets/%s"},
	}
	f.Add(uint8(0), "P0001", false, "", "")
	f.Add(uint8(1), "4000000000003", false, "", "")
	f.Add(uint8(3), "%2e%2e", true, "Bearer x", "")
	f.Add(uint8(3), "o", true, "bearer  "+pos+" ", "req-1")
	f.Add(uint8(4), "dv_x", true, "Bearer "+testAdminToken+"x", "")
	f.Add(uint8(6), "12", false, "", "\x00\xff")
	f.Add(uint8(7), "tea%20cake", false, "", "")
	f.Add(uint8(8), "", false, "", "k-1")
	f.Add(uint8(2), strings.Repeat("é", 100), true, "Basic "+strings.Repeat("A", 300), "")
	f.Add(uint8(12), "dv_%2F..", true, "Bearer "+testAdminToken, "")
	f.Add(uint8(16), "../page.js", false, "", "")
	f.Add(uint8(14), "o-1\r\n", false, "", "")
	f.Fuzz(func(t *testing.T, route uint8, seg string, ownAuth bool, auth, key string) {
		rt := routes[int(route)%len(routes)]
		target := strings.Replace(rt.pattern, "%s", url.PathEscape(seg), 1)
		if strings.Contains(rt.pattern, "?q=") {
			target = strings.Replace(rt.pattern, "%s", url.QueryEscape(seg), 1)
		}
		body := ""
		switch rt.pattern {
		case "/api/v1/orders":
			body = `{"lines":[{"product_id":"P0002","quantity":1}]}`
		case "/api/v1/orders/%s/status":
			body = `{"status":"accepted"}`
		}
		req := httptest.NewRequest(rt.method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if ownAuth {
			req.Header["Authorization"] = []string{auth}
		}
		req.Header["Idempotency-Key"] = []string{key}
		req.Header["X-Request-Id"] = []string{key}
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable:
			t.Fatalf("%s %s: status %d: %s", rt.method, target, rec.Code, rec.Body)
		case rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json":
			t.Fatalf("%s %s: %d without a problem document", rt.method, target, rec.Code)
		case ownAuth && auth != "" && rec.Code < 400 && !realCredential(auth, pos) && int(route)%len(routes) != len(routes)-1:
			t.Fatalf("%s %s with Authorization %q: %d, a made-up credential opened the route", rt.method, target, auth, rec.Code)
		}
	})
}

// realCredential says whether an Authorization header carries, as the server reads it (the
// scheme in any case, spaces around the token), the admin token or the device's.
func realCredential(auth, device string) bool {
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	token = strings.TrimSpace(token)
	return token == testAdminToken || token == device
}
