package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// A product asked for by id or by barcode is answered by observe directly; the same request with
// its path escaped goes through the router. A device cannot tell the two answers apart: same
// status, headers and body, the same access log line.
func TestDirectLookupAnswersAsTheRouter(t *testing.T) {
	logs := newLogSink()
	f := newFixture(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	token := f.device(t, "scanner").Token
	ds := f.srv.directLookups(frontDoor, nil)
	for _, tc := range []struct{ direct, routed string }{
		{"/api/v1/catalog/products/" + productID(7), "/api/v1/catalog/products/P%30" + productID(7)[2:]},
		{"/api/v1/catalog/barcodes/" + barcode(7), "/api/v1/catalog/barcodes/%34" + barcode(7)[1:]},
	} {
		req := func(target string) *http.Request {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set(headerRequestID, "scan-1")
			return req
		}
		direct := f.srv.serveDirect(httptest.NewRecorder(), req(tc.direct), ds, time.Now())
		routed := f.srv.serveDirect(httptest.NewRecorder(), req(tc.routed), ds, time.Now())
		ask := func(target string) (*httptest.ResponseRecorder, string) {
			n := len(logs.String())
			rec := httptest.NewRecorder()
			f.raw.ServeHTTP(rec, req(target))
			return rec, logs.String()[n:]
		}
		a, logA := ask(tc.direct)
		b, logB := ask(tc.routed)
		if !direct || routed {
			t.Fatalf("%s answered directly: %v; %s: %v; want the first only", tc.direct, direct, tc.routed, routed)
		}
		if a.Code != http.StatusOK || a.Code != b.Code || !bytes.Equal(a.Body.Bytes(), b.Body.Bytes()) {
			t.Errorf("%s: %d %s\n%s: %d %s", tc.direct, a.Code, a.Body, tc.routed, b.Code, b.Body)
		}
		ha, hb := a.Header().Clone(), b.Header().Clone()
		if !equalHeaders(ha, hb) {
			t.Errorf("%s headers %v\n%s headers %v", tc.direct, ha, tc.routed, hb)
		}
		if ha.Get(headerRequestID) != "scan-1" || ha.Get(headerSyncedAt) == "" || ha.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s headers %v: want its request id, data age and no-cache", tc.direct, ha)
		}
		if !strings.Contains(logA, "msg=request request_id=scan-1 method=GET") || !strings.Contains(logA, "status=200") ||
			strings.Count(logA, "msg=request ") != 1 || strings.Count(logB, "msg=request ") != 1 {
			t.Errorf("access log of %s:\n%s\nof %s:\n%s", tc.direct, logA, tc.routed, logB)
		}
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// Whatever is not a plain successful lookup is left to the router, which answers it as for any
// route: a missing or refused credential, an unknown key, another method, a body.
func TestDirectLookupLeavesTheRestToTheRouter(t *testing.T) {
	f := newFixture(t)
	token := f.device(t, "scanner").Token
	revoked := f.device(t, "lost")
	if _, err := f.dm.Revoke(t.Context(), revoked.DeviceID); err != nil {
		t.Fatal(err)
	}
	ds := f.srv.directLookups(frontDoor, nil)
	product := "/api/v1/catalog/products/" + productID(7)
	for _, tc := range []struct {
		name, method, target, token, body string
		status                            int
		slug                              string
	}{
		{"no credential", http.MethodGet, product, "", "", 401, "unauthorized"},
		{"unknown credential", http.MethodGet, product, "dv_nobody.secret", "", 401, "unauthorized"},
		{"revoked device", http.MethodGet, product, revoked.Token, "", 401, "unauthorized"},
		{"unknown product", http.MethodGet, "/api/v1/catalog/products/NOPE", token, "", 404, "not-found"},
		{"unknown barcode", http.MethodGet, "/api/v1/catalog/barcodes/0000", token, "", 404, "not-found"},
		{"no key", http.MethodGet, "/api/v1/catalog/barcodes/", token, "", 404, "not-found"},
		{"HEAD", http.MethodHead, product, token, "", 405, ""},
		{"a body", http.MethodGet, product, token, "{}", 200, ""},
	} {
		req := func() *http.Request {
			req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			return req
		}
		if f.srv.serveDirect(httptest.NewRecorder(), req(), ds, time.Now()) {
			t.Errorf("%s: answered directly", tc.name)
		}
		rec := httptest.NewRecorder()
		f.raw.ServeHTTP(rec, req())
		switch {
		case rec.Code != tc.status:
			t.Errorf("%s: %d, want %d: %s", tc.name, rec.Code, tc.status, rec.Body)
		case tc.slug != "":
			wantProblem(t, rec, tc.status, tc.slug)
		}
	}
}
