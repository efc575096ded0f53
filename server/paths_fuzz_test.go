package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzPathsAndHeaders sends what a device or anyone on the LAN may put in a path segment and in
// the headers the server reads (Authorization, Idempotency-Key, X-Request-ID, Last-Event-ID,
// Range and the conditional ones), on every route that takes a path parameter and on the
// catalog search: never a panic nor a 5xx, every refusal a problem document (the fixture checks
// each answer against openapi.yaml too), and a credential the fuzzer made never opens a route
// (an empty one is replaced by the fixture with the device's, as for every request).
func FuzzPathsAndHeaders(f *testing.F) {
	fx := newFixture(f)
	routes := []struct{ method, pattern string }{
		{http.MethodGet, "/api/v1/catalog/products/%s"},
		{http.MethodGet, "/api/v1/catalog/barcodes/%s"},
		{http.MethodGet, "/api/v1/catalog/stock/%s"},
		{http.MethodGet, "/api/v1/media/%s"},
		{http.MethodHead, "/api/v1/media/%s"},
		{http.MethodGet, "/api/v1/orders/%s"},
		{http.MethodGet, "/api/v1/admin/devices/%s"},
		{http.MethodGet, "/api/v1/admin/commands/%s"},
		{http.MethodPost, "/api/v1/admin/outbox/%s/retry"},
		{http.MethodPost, "/api/v1/admin/backoffice/webhook/%s/retry"},
		{http.MethodGet, "/api/v1/catalog/search?q=%s"},
		{http.MethodPost, "/api/v1/orders"},
	}
	f.Add(uint8(0), "P0001", false, "", "", "", "")
	f.Add(uint8(1), "4000000000003", false, "", "", "", "")
	f.Add(uint8(3), "M0001", false, "", "", "bytes=0-10", "")
	f.Add(uint8(3), "M0001", false, "", "req-1", "bytes=5-1,-0", `"abc", W/"x"`)
	f.Add(uint8(5), "%2e%2e", true, "Bearer x", "", "", "")
	f.Add(uint8(8), "12", false, "", "\x00\xff", "", "*")
	f.Add(uint8(10), "tea%20cake", false, "", "", "", "")
	f.Add(uint8(11), "", false, "", "k-1", "", "")
	f.Add(uint8(2), strings.Repeat("é", 100), true, "Basic "+strings.Repeat("A", 300), "", "", "")
	f.Fuzz(func(t *testing.T, route uint8, seg string, ownAuth bool, auth, key, rng, match string) {
		rt := routes[int(route)%len(routes)]
		target := strings.Replace(rt.pattern, "%s", url.PathEscape(seg), 1)
		if strings.Contains(rt.pattern, "?q=") {
			target = strings.Replace(rt.pattern, "%s", url.QueryEscape(seg), 1)
		}
		var body *strings.Reader
		if rt.method == http.MethodPost && rt.pattern == "/api/v1/orders" {
			body = strings.NewReader(`{"lines":[{"product_id":"P0002","quantity":1}]}`)
		} else {
			body = strings.NewReader("")
		}
		req := httptest.NewRequest(rt.method, target, body)
		req.Header.Set("Content-Type", "application/json")
		if ownAuth {
			req.Header["Authorization"] = []string{auth}
		}
		req.Header["Idempotency-Key"] = []string{key}
		req.Header["X-Request-Id"] = []string{key}
		req.Header["Last-Event-Id"] = []string{key}
		req.Header["Range"] = []string{rng}
		req.Header["If-None-Match"] = []string{match}
		req.Header["If-Range"] = []string{match}
		req.Header["If-Modified-Since"] = []string{rng}
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable:
			t.Fatalf("%s %s: status %d: %s", rt.method, target, rec.Code, rec.Body)
		case rec.Code >= 400 && rt.method != http.MethodHead && rec.Header().Get("Content-Type") != "application/problem+json":
			t.Fatalf("%s %s: %d without a problem document", rt.method, target, rec.Code)
		case ownAuth && auth != "" && rec.Code < 400 && !strings.Contains(auth, testAdminToken) && !strings.Contains(auth, fx.device(t, "pos").Token):
			t.Fatalf("%s %s with Authorization %q: %d, a made-up credential opened the route", rt.method, target, auth, rec.Code)
		}
	})
}
