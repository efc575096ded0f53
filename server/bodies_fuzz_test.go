package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequestBodies sends arbitrary bodies to the routes that read one (besides the order itself,
// which FuzzCreateOrderBody covers; an order's status is here, on an order of its own for each
// input): the answer is a success or a 4xx problem document, never a panic or a 5xx. (The
// fixture checks answers against openapi.yaml in tests, not while fuzzing.)
func FuzzRequestBodies(f *testing.F) {
	fx := newFixture(f)
	const orderStatus = "/api/v1/orders/{id}/status"
	orders := 0
	routes := []string{
		"/api/v1/catalog/lookup",
		"/api/v1/devices/heartbeat",
		"/api/v1/devices/pair",
		"/api/v1/admin/commands",
		"/api/v1/admin/pairing-codes",
		"/api/v1/admin/devices/" + fx.device(f, "pos").DeviceID,
		orderStatus,
	}
	for i, body := range []string{
		`{"ids":["P0001","P0002"],"barcodes":["4000000000003"]}`,
		`{"push_port":8081,"app_version":"2.1","capabilities":["orders"]}`,
		`{"enrollment_secret":"` + testEnrollment + `","kind":"pos","name":"Till","capabilities":["orders"]}`,
		`{"target":{"capability":"orders"},"type":"reload","payload":{},"ttl":"1h"}`,
		`{"ttl":"30m"}`,
		`{"name":"Till 2"}`,
		`{"status":"ready","note":"table 4"}`,
	} {
		f.Add(uint8(i), body)
	}
	f.Add(uint8(0), `{"ids":[`+strings.Repeat(`"P1",`, 300)+`"P1"]}`)
	f.Add(uint8(3), `{"target":{},"type":"","ttl":"1ms"}`)
	f.Add(uint8(1), "\xff")
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		path := routes[int(route)%len(routes)]
		if path == orderStatus { // an order of its own: what an earlier input did to one is not this input's
			orders++
			o := decodeOrder(t, fx.order(t, "pos", fmt.Sprint("k-fuzz-", orders), `{"lines":[{"product_id":"P0002","quantity":1}]}`), http.StatusCreated).Order
			path = "/api/v1/orders/" + o.ID + "/status"
		}
		method := http.MethodPost
		if strings.HasPrefix(path, "/api/v1/admin/devices/") {
			method = http.MethodPatch
		}
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("%s %s %q: status %d: %s", method, path, body, rec.Code, rec.Body)
		case rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json":
			t.Fatalf("%s %s %q: %d without a problem document", method, path, body, rec.Code)
		}
	})
}
