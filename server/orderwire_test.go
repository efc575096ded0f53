package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzCreateOrderBody sends arbitrary bodies to POST /api/v1/orders: the answer is always a
// created order or a problem document, never a panic or a 500.
func FuzzCreateOrderBody(f *testing.F) {
	fx := newFixture(f)
	f.Add([]byte(`{"lines":[{"product_id":"P0002","quantity":3}],"note":"x","customer":{"name":"A"}}`))
	f.Add([]byte(`{"lines":[]}`))
	f.Add([]byte(`{"lines":[{"product_id":"P0002","quantity":1e99}]}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte("{\"lines\":[{\"product_id\":\"P0002\",\"quantity\":1}],\"note\":\"Caf\xe9\"}"))
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		n++
		req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(headerIdempotencyKey, "k"+string(rune('a'+n%26))+string(rune('a'+n/26%26))+string(rune('a'+n/676%26)))
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusCreated, http.StatusOK:
			var a orderAnswer
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || len(a.Order.Lines) == 0 {
				t.Fatalf("accepted %s: %s", body, rec.Body)
			}
		case http.StatusBadRequest, http.StatusConflict, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
			if rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d without a problem document", rec.Code)
			}
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}
