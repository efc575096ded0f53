package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/media"
)

// problemBase is the prefix of every problem type URI.
const problemBase = "https://storeedge.dev/problems/"

// problemType is one kind of error answer (RFC 9457).
type problemType struct {
	slug   string // the type URI is problemBase + slug
	title  string
	status int
}

var (
	probNotFound             = problemType{"not-found", "Not found", http.StatusNotFound}
	probBadParameter         = problemType{"bad-parameter", "Bad parameter", http.StatusBadRequest}
	probMalformedBody        = problemType{"malformed-body", "Malformed request body", http.StatusBadRequest}
	probInvalidBody          = problemType{"invalid-body", "Invalid request body", http.StatusBadRequest}
	probBodyTooLarge         = problemType{"body-too-large", "Request body too large", http.StatusRequestEntityTooLarge}
	probUnsupportedMediaType = problemType{"unsupported-media-type", "Unsupported media type", http.StatusUnsupportedMediaType}
	probMethodNotAllowed     = problemType{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed}
	probNotReady             = problemType{"not-ready", "Not ready", http.StatusServiceUnavailable}
	probInternal             = problemType{"internal", "Internal server error", http.StatusInternalServerError}
	probHeadersTooLarge      = problemType{"headers-too-large", "Request header fields too large", http.StatusRequestHeaderFieldsTooLarge}
	probMalformedRequest     = problemType{"malformed-request", "Malformed HTTP request", http.StatusBadRequest}
)

// problemDoc is the body of an error answer.
type problemDoc struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
}

// authenticateValue is the WWW-Authenticate header of every 401 answer (RFC 9110, 11.6.1).
var authenticateValue = []string{`Bearer realm="storeedge"`}

// problem writes an error answer. detail tells the device maker what was wrong and how to fix it.
// Handlers return their errors to handle instead; middleware that answers before routing calls
// problem itself.
func problem(w http.ResponseWriter, r *http.Request, p problemType, detail string) {
	body := problemBody(p, detail, r.URL.EscapedPath()) // the path as asked: a%2Fb stays one segment
	h := w.Header()
	if p.status == http.StatusUnauthorized {
		h["Www-Authenticate"] = authenticateValue
	}
	h["Content-Type"] = []string{"application/problem+json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(p.status)
	w.Write(body)
}

// problemBody is the problem document of an error answer; instance is the request path.
func problemBody(p problemType, detail, instance string) []byte {
	body, err := json.Marshal(problemDoc{
		Type:     problemBase + p.slug,
		Title:    p.title,
		Status:   p.status,
		Detail:   detail,
		Instance: instance,
	})
	if err != nil { // cannot happen with strings and an int
		body = []byte(`{"type":"` + problemBase + `internal","title":"Internal server error","status":500}`)
	}
	return body
}

// Handlers return their failure instead of answering it, as caddy's admin handlers do, and
// handle answers it: the one place where errors become statuses (the package doc, "Errors", says
// what a handler returns).

// handlerFunc is a handler that returns its failure: nil once it has answered, else the error
// that handle answers for it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts h to net/http, answering the error h returns.
func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.answerError(w, r, err)
		}
	}
}

// apiError is a refusal: the problem type and the detail a device maker reads.
type apiError struct {
	typ        problemType
	detail     string
	retryAfter time.Duration // sent as Retry-After (whole seconds) when > 0
}

func (e *apiError) Error() string { return e.typ.slug + ": " + e.detail }

// refuse returns the refusal of type p that detail explains.
func refuse(p problemType, detail string) error { return &apiError{typ: p, detail: detail} }

// missing carries the words of the not-found answer an error may lead to.
type missing struct {
	err    error
	detail string
}

func (e *missing) Error() string { return e.err.Error() }
func (e *missing) Unwrap() error { return e.err }

// whenMissing gives err the detail of its answer should it be a not-found error (storage's or the
// device registry's): what was asked for and not found. Whether it is one is still decided from
// err alone; any other error is answered as if whenMissing had not been called. nil stays nil.
func whenMissing(err error, detail string) error {
	if err == nil {
		return nil
	}
	return &missing{err: err, detail: detail}
}

// answerError answers err as a problem document, logging what a human must see.
//
// A handler that fails once its answer has started (an event stream whose database read fails)
// can no longer change the status: a second header would be ignored by net/http and the problem
// would be spliced into the stream. Such an error is logged at WARN and the answer ends there;
// the device sees its stream end and reconnects. A request the device gave up is no error of the
// server's: it is logged at DEBUG and not answered.
func (s *Server) answerError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	id := requestID(ctx)
	switch {
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		s.log.LogAttrs(ctx, slog.LevelDebug, "request abandoned by the client", slog.String(keyRequestID, id), slog.String(keyError, err.Error()))
		return
	case answerStarted(ctx):
		s.log.LogAttrs(ctx, slog.LevelWarn, "request failed after its answer started; the answer ends here", slog.String(keyRequestID, id),
			slog.String(keyMethod, r.Method), slog.String(keyPath, r.URL.Path), slog.String(keyError, err.Error()))
		return
	}
	if e := problemOf(err); e != nil {
		if e.retryAfter > 0 {
			w.Header()["Retry-After"] = []string{strconv.FormatInt(int64(e.retryAfter/time.Second), 10)}
		}
		problem(w, r, e.typ, e.detail)
		return
	}
	s.log.LogAttrs(ctx, slog.LevelError, "request failed", slog.String(keyRequestID, id),
		slog.String(keyMethod, r.Method), slog.String(keyPath, r.URL.Path), slog.String(keyError, err.Error()))
	problem(w, r, probInternal, "the server failed on this request (its database or its disk, say); its log has the details under request id "+id)
}

// answerStarted reports whether the answer of the request that ctx belongs to has sent its
// status already (observe, around every router, records it).
func answerStarted(ctx context.Context) bool {
	st := stateOf(ctx)
	return st != nil && st.rec.status != 0
}

// problemOf maps an error to the refusal it is answered with, or nil for a failure of the
// server's own.
func problemOf(err error) *apiError {
	var (
		refusal   *apiError
		move      *orders.TransitionError
		note      *orders.NoteError
		pricing   *orders.PricingError
		invalid   *devices.InvalidError
		throttled *devices.ThrottledError
		away      *media.UnavailableError
	)
	switch {
	case errors.As(err, &refusal):
		return refusal
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, devices.ErrNotFound), errors.Is(err, media.ErrUnknown):
		detail := "what the request names does not exist"
		var m *missing
		if errors.As(err, &m) {
			detail = m.detail
		}
		return &apiError{typ: probNotFound, detail: detail}
	case errors.Is(err, storage.ErrIdempotencyConflict):
		return &apiError{typ: probIdempotencyConflict, detail: "this Idempotency-Key was already used by this device for a different order; use a new key for a new order"}
	case errors.As(err, &move):
		return &apiError{typ: probInvalidTransition, detail: move.Error()}
	case errors.As(err, &note):
		return &apiError{typ: probInvalidBody, detail: note.Error()}
	case errors.As(err, &pricing):
		return &apiError{typ: probUnknownProduct, detail: pricing.Error()}
	case errors.As(err, &invalid):
		return &apiError{typ: probInvalidBody, detail: invalid.Error()}
	case errors.As(err, &throttled):
		wait := throttled.RetryAfter.Round(time.Second)
		return &apiError{typ: probThrottled, detail: throttled.Why() + "; try again in " + wait.String(), retryAfter: max(wait, time.Second)}
	case errors.As(err, &away):
		return &apiError{typ: probMediaUnavailable, detail: "the media item cannot be served now: " + away.Reason,
			retryAfter: max(away.RetryAfter.Round(time.Second), time.Second)}
	case errors.Is(err, devices.ErrUnauthorized):
		// Not told apart from the admin token, which would let a device route (not throttled
		// as the admin API is) confirm a guess of it.
		return &apiError{typ: probUnauthorized, detail: "the device credential is not valid: this route needs the token a device received when it paired (not the admin token); pair the device again if it was reset"}
	case errors.Is(err, devices.ErrBadPairing):
		return &apiError{typ: probUnauthorized, detail: "the pairing code is unknown, expired or already used, or the enrollment secret is wrong; ask an admin for a new code"}
	case errors.Is(err, devices.ErrEnrollment):
		return &apiError{typ: probAdminOff, detail: "enrollment with the shop secret is off on this server (devices.enrollment_secret is empty); pair with a code an admin creates"}
	case errors.Is(err, devices.ErrRevoked):
		return &apiError{typ: probUnauthorized, detail: "this device was revoked by an admin; pair it again to use it"}
	case errors.Is(err, devices.ErrNoTarget):
		// The registry's own words say which target matched nothing; the operation's name that
		// the handler put before them is for the log.
		msg := err.Error()
		return &apiError{typ: probNoTarget, detail: msg[strings.Index(msg, devices.ErrNoTarget.Error()):]}
	}
	return nil
}
