package main

import (
	"io"
	"net/http/httptest"
	"testing"
)

func TestHandlerSendsTheContractHeadersWhenAsked(t *testing.T) {
	body := fixedBody(400)
	for _, headers := range []bool{false, true} {
		h, seen := handler(body, headers), map[string]bool{}
		for range 2 {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/catalog/products/P0000001", nil))
			got, _ := io.ReadAll(rec.Body)
			if len(got) != 400 || rec.Header().Get("Content-Length") != "400" {
				t.Fatalf("headers=%v: a body of %d bytes, Content-Length %q; want 400", headers, len(got), rec.Header().Get("Content-Length"))
			}
			for _, h := range []string{"X-Request-Id", "Cache-Control", "Storeedge-Synced-At", "Storeedge-Data-Age"} {
				if v := rec.Header().Get(h); (v != "") != headers {
					t.Fatalf("headers=%v: %s is %q", headers, h, v)
				}
			}
			id := rec.Header().Get("X-Request-Id")
			if headers && seen[id] {
				t.Fatalf("request id %q sent twice", id)
			}
			seen[id] = true
		}
	}
}
