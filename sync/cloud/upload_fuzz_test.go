package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// FuzzUploadAnswer feeds arbitrary answers to POST /v1/events through the client, as the
// platform, a gateway or a proxy may give them (cloud-api.md, Event upload): never a panic; a
// 200 as JSON is the answer, a malformed answer (what could be read of it with it) or one too
// large; any other status is an *Error of that status (401: ErrUnauthorized) whose detail is
// bounded and never quotes the store key, which a gateway's page may echo.
func FuzzUploadAnswer(f *testing.F) {
	const storeKey = "store-key-0123456789abcdef"
	type answer struct {
		status int
		ctype  string
		body   []byte
	}
	var current atomic.Pointer[answer]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := current.Load()
		w.Header().Set("Content-Type", a.ctype)
		w.WriteHeader(a.status)
		w.Write(a.body)
	}))
	f.Cleanup(srv.Close)
	c, err := New(srv.URL, storeKey, srv.Client(), "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	statuses := []int{200, 400, 401, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 302}
	ctypes := []string{"application/json", "application/problem+json", "text/html", "", "application/json; charset=utf-8"}
	f.Add(uint8(0), uint8(0), []byte(`{"accepted":["k1"],"duplicate":[],"rejected":[]}`))
	f.Add(uint8(0), uint8(0), []byte(`{"accepted":"k1","duplicate":["k1"],"rejected":[{"key":"k1","reason":5}]}`))
	f.Add(uint8(0), uint8(2), []byte(`<html>captive portal</html>`))
	f.Add(uint8(1), uint8(1), []byte(`{"type":"about:blank","title":"Bad Request","detail":"event k1: type is missing"}`))
	f.Add(uint8(9), uint8(2), []byte(`<pre>POST /v1/events Authorization: Bearer `+storeKey+`</pre>`))
	f.Add(uint8(5), uint8(1), []byte(`{"detail":"`+strings.Repeat("é", 400)+storeKey+`"}`))
	f.Add(uint8(0), uint8(4), []byte(`{"accepted":[`))
	f.Add(uint8(2), uint8(3), []byte(``))
	f.Fuzz(func(t *testing.T, status, ctype uint8, body []byte) {
		a := &answer{statuses[int(status)%len(statuses)], ctypes[int(ctype)%len(ctypes)], body}
		current.Store(a)
		resp, err := c.Upload(context.Background(), []cloudapi.Event{{Key: "k1", Type: "order.created", Data: json.RawMessage(`{}`)}})
		if a.status == http.StatusOK {
			// The answer is its first JSON value, as decodeAnswer reads it (what follows is not read).
			var want cloudapi.UploadResponse
			if err == nil && json.NewDecoder(bytes.NewReader(body)).Decode(&want) != nil {
				t.Fatalf("200 %q %q: taken as an answer", a.ctype, body)
			}
			return
		}
		var ce *Error
		switch {
		case err == nil:
			t.Fatalf("%d: no error (%+v)", a.status, resp)
		case a.status == http.StatusUnauthorized:
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("401: %v", err)
			}
		case !errors.As(err, &ce) || ce.Status != a.status:
			t.Fatalf("%d: %v, want an *Error of that status", a.status, err)
		case len(ce.Detail) > maxDetailBytes+len("…") || strings.Contains(err.Error(), storeKey):
			t.Fatalf("%d: detail of %d bytes, or quoting the store key: %v", a.status, len(ce.Detail), err)
		}
	})
}
