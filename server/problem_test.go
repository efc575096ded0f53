package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

// serveErr runs a handler that returns err through the middleware and the adapter, as a route
// would, and returns the answer.
func serveErr(t *testing.T, s *Server, h handlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/thing", nil)
	req.Header.Set(headerRequestID, "req-1")
	s.observe(s.handle(h), nil).ServeHTTP(rec, req)
	return rec
}

// Every kind of error a handler returns is answered by the adapter with its problem type, the
// detail a device maker reads, and the headers that go with it.
func TestHandlerErrorsBecomeProblems(t *testing.T) {
	f := newFixture(t)
	storeErr := errors.New("storage: disk I/O error")
	for _, c := range []struct {
		name   string
		err    error
		status int
		slug   string
		detail string
		header string // "Name: value" the answer must carry
	}{
		{"refusal", refuse(probBadParameter, "limit: \"x\" is not allowed"), 400, "bad-parameter", "limit: \"x\" is not allowed", ""},
		{"wrapped refusal", fmt.Errorf("read body: %w", refuse(probMalformedBody, "syntax error at offset 3")), 400, "malformed-body", "syntax error at offset 3", ""},
		{"not found with its words", whenMissing(fmt.Errorf("read order: %w", storage.ErrNotFound), `no order "o1"`), 404, "not-found", `no order "o1"`, ""},
		{"device not found", whenMissing(fmt.Errorf("read device: %w", devices.ErrNotFound), "no such device"), 404, "not-found", "no such device", ""},
		{"not found without words", fmt.Errorf("read thing: %w", storage.ErrNotFound), 404, "not-found", "what the request names does not exist", ""},
		{"words of a not-found that is another error", whenMissing(fmt.Errorf("read order: %w", storeErr), `no order "o1"`), 500, "internal", "its log has the details under request id req-1", ""},
		{"idempotency conflict", fmt.Errorf("store order: %w", storage.ErrIdempotencyConflict), 409, "idempotency-conflict", "this Idempotency-Key was already used by this device for a different order", ""},
		{"invalid transition", fmt.Errorf("update order: %w", &orders.TransitionError{From: "completed", To: "new"}), 409, "invalid-transition", "the order is completed and cannot become new", ""},
		{"invalid field", fmt.Errorf("rename device: %w", &devices.InvalidError{Field: "name", Msg: "empty"}), 400, "invalid-body", "name: empty", ""},
		{"throttled", fmt.Errorf("pair device: %w", &devices.ThrottledError{RetryAfter: 1500 * time.Millisecond}), 429, "too-many-attempts", "try again in 2s", "Retry-After: 2"},
		{"throttled under a second", &devices.ThrottledError{RetryAfter: 200 * time.Millisecond}, 429, "too-many-attempts", "try again in 0s", "Retry-After: 1"},
		{"bad pairing", fmt.Errorf("pair device: %w", devices.ErrBadPairing), 401, "unauthorized", "the pairing code is unknown", `Www-Authenticate: Bearer realm="storeedge"`},
		{"revoked", devices.ErrRevoked, 401, "unauthorized", "this device was revoked by an admin", `Www-Authenticate: Bearer realm="storeedge"`},
		{"enrollment off", devices.ErrEnrollment, 403, "admin-disabled", "enrollment with the shop secret is off", ""},
		{"no target, in the registry's words", fmt.Errorf("queue command: %w", fmt.Errorf("%w: device d1 is revoked", devices.ErrNoTarget)), 422, "no-target", "devices: no paired device matches: device d1 is revoked", ""},
		{"failure of the server's own", fmt.Errorf("list products: %w", storeErr), 500, "internal", "the server failed on this request (its database or its disk, say); its log has the details under request id req-1", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := serveErr(t, f.srv, func(w http.ResponseWriter, r *http.Request) error { return c.err })
			p := wantProblem(t, rec, c.status, c.slug, c.detail)
			if c.name == "no target, in the registry's words" && p.Detail != c.detail {
				t.Errorf("detail %q, want exactly %q", p.Detail, c.detail)
			}
			if c.header != "" {
				name, value, _ := strings.Cut(c.header, ": ")
				if got := rec.Header().Get(name); got != value {
					t.Errorf("%s: %q, want %q", name, got, value)
				}
			}
			if c.status != 401 && rec.Header().Get("Www-Authenticate") != "" {
				t.Errorf("a %d answer carries WWW-Authenticate", c.status)
			}
		})
	}
}

// A failure of the server's own is logged once, at ERROR, with the operation and the request id
// the device is told; a request the device gave up is not answered and not logged as an error.
func TestHandlerFailureIsLogged(t *testing.T) {
	logs := newLogSink()
	f := newFixture(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	rec := serveErr(t, f.srv, func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("count orders: %w", errors.New("database is locked"))
	})
	wantProblem(t, rec, 500, "internal", "req-1")
	if out := logs.String(); strings.Count(out, "level=ERROR") != 1 || !strings.Contains(out, `err="count orders: database is locked"`) || !strings.Contains(out, "request_id=req-1") {
		t.Errorf("log %s", out)
	}

	logs = newLogSink()
	f.srv.log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec = httptest.NewRecorder()
	f.srv.observe(f.srv.handle(func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("list products: %w", r.Context().Err())
	}), nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/thing", nil).WithContext(ctx))
	if rec.Body.Len() != 0 {
		t.Errorf("answered a request the device gave up: %d %s", rec.Code, rec.Body)
	}
	if out := logs.String(); strings.Contains(out, "level=ERROR") || !strings.Contains(out, "request abandoned by the client") {
		t.Errorf("log %s", out)
	}
}

// A handler that fails once its answer has started gets no second header and no problem spliced
// into its body: the failure is logged and the answer ends.
func TestHandlerFailureAfterAnswerStarted(t *testing.T) {
	logs := newLogSink()
	f := newFixture(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	rec := serveErr(t, f.srv, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("retry: 2000\n\n"))
		return fmt.Errorf("event stream: read events: %w", errors.New("database is locked"))
	})
	if rec.Code != http.StatusOK || rec.Body.String() != "retry: 2000\n\n" || rec.Header().Get("Content-Type") != "text/event-stream" {
		t.Errorf("answer %d %q %q, want the stream as it was", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "database is locked") || !strings.Contains(out, "request_id=req-1") {
		t.Errorf("log %s", out)
	}
}
