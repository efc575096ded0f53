package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
)

// Log attribute keys.
const (
	keyListener  = "listener"
	keyAddr      = "addr"
	keyGrace     = "grace"
	keyRequestID = "request_id"
	keyMethod    = "method"
	keyPath      = "path"
	keyStatus    = "status"
	keyBytes     = "bytes"
	keyDuration  = "duration"
	keyRemote    = "remote"
	keyPanic     = "panic"
	keyStack     = "stack"
	keyError     = "err"
)

const headerRequestID = "X-Request-Id"

type ctxKey struct{}

// requestState is what the middleware learns of a request, put in its context once by observe
// and filled in by the middleware after it: one allocation and one copy of the request for all
// of them and the router, on the path of every device lookup.
type requestState struct {
	rec     recorder
	start   time.Time // when observe saw the request
	id      string    // request id
	idValue [1]string // the X-Request-Id header value: id
	device  string    // authenticated device id, set by requireDevice
}

// requestContext is a request's context once observe has seen it: its state and chi's routing
// context answered by one value, so that a request costs one context and one copy of the
// *http.Request for both (chi, finding its routing context there, adds none of its own).
type requestContext struct {
	context.Context
	st    requestState
	route *chi.Context
}

func (c *requestContext) Value(key any) any {
	switch key {
	case ctxKey{}:
		return &c.st
	case chi.RouteCtxKey:
		return c.route
	}
	return c.Context.Value(key)
}

// routeContexts are chi's routing contexts, reused across requests as chi itself does.
var routeContexts = sync.Pool{New: func() any { return chi.NewRouteContext() }}

func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(ctxKey{}).(*requestState)
	return st
}

// requestID returns the id of the request that ctx belongs to, or "".
func requestID(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.id
	}
	return ""
}

// Request ids made here are a random per-process prefix and a counter: unique enough to find a
// request in the log, and cheap.
var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "-"
}

func newRequestID() string {
	var b [32]byte
	return string(strconv.AppendUint(append(b[:0], idPrefix...), idCounter.Add(1), 10))
}

// validRequestID accepts a device's own request id when it is short visible ASCII, so it can be
// echoed and logged safely.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// observe gives every request an id (the device's X-Request-Id, or a new one, echoed in the
// answer), turns a panic into a logged 500 problem so one bad request cannot stop the server, and
// writes a DEBUG access log line. It wraps a listener's router from outside, giving the request
// the routing context the router then uses. A successful lookup of direct it answers itself
// (see directLookup).
func (s *Server) observe(next http.Handler, direct []directLookup) http.Handler {
	routes, _ := next.(chi.Routes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if direct != nil && s.serveDirect(w, r, direct, start) {
			return
		}
		id := r.Header.Get(headerRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		route := routeContexts.Get().(*chi.Context)
		route.Reset()
		route.Routes = routes
		ctx := &requestContext{Context: r.Context(), route: route,
			st: requestState{rec: recorder{ResponseWriter: w}, start: start, id: id, idValue: [1]string{id}}}
		w.Header()[headerRequestID] = ctx.st.idValue[:]
		r = r.WithContext(ctx)
		rec := &ctx.st.rec
		defer func() {
			if v := recover(); v != nil {
				s.panicked(ctx, rec, r, v, id, start)
			}
			s.accessLog(ctx, r, rec, id, start)
			routeContexts.Put(route)
		}()
		next.ServeHTTP(rec, r)
	})
}

// panicked answers a request whose handler panicked with v: a logged 500 problem, or, when part
// of the answer is out already, a cut connection, so that the device sees a failure rather than a
// short answer.
func (s *Server) panicked(ctx context.Context, rec *recorder, r *http.Request, v any, id string, start time.Time) {
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.LogAttrs(ctx, slog.LevelError, "request handler panicked",
		slog.String(keyRequestID, id), slog.String(keyMethod, r.Method), slog.String(keyPath, r.URL.Path),
		slog.String(keyPanic, fmt.Sprint(v)), slog.String(keyStack, string(debug.Stack())))
	if rec.status != 0 {
		s.accessLog(ctx, r, rec, id, start)
		panic(http.ErrAbortHandler)
	}
	problem(rec, r, probInternal, "the server failed on this request; its log has the details under request id "+id)
}

func (s *Server) accessLog(ctx context.Context, r *http.Request, rec *recorder, id string, start time.Time) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "request",
		slog.String(keyRequestID, id), slog.String(keyMethod, r.Method), slog.String(keyPath, r.URL.Path),
		slog.Int(keyStatus, rec.status), slog.Int64(keyBytes, rec.bytes),
		slog.Duration(keyDuration, time.Since(start)), slog.String(keyRemote, r.RemoteAddr))
}

// recorder remembers the status and size of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps net/http's own ReadFrom reachable through the wrapper: for a file it sends with
// sendfile, the kernel copying from the page cache to the socket; without it every media byte
// would be copied through the program.
func (w *recorder) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := readFrom(w.ResponseWriter, src)
	w.bytes += n
	return n, err
}

// Flush lets streaming answers (the event stream, later) through the wrapper.
func (w *recorder) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the real writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// limitBody caps every request body at MaxBodyBytes: a body announced larger is refused at once,
// and one that turns out larger fails its read, which handlers answer with 413.
func (s *Server) limitBody(next http.Handler) http.Handler {
	limit := s.o.MaxBodyBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			problem(w, r, probBodyTooLarge, tooLarge(limit))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

func tooLarge(limit int64) string {
	return fmt.Sprintf("the request body is larger than %d bytes (lan.max_body_bytes)", limit)
}

// notFound answers unknown routes. On a service's own port it says when the route exists on
// another port, the usual mistake when a device is set up with the wrong port.
func (s *Server) notFound(listener string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		detail := "no route " + r.Method + " " + r.URL.Path + "; the routes are listed in the storeedge OpenAPI document"
		p := r.URL.Path
		adminOnly := s.o.FrontDoorWithoutAdmin && listener != serviceAdmin &&
			(p == "/api/v1/status" || strings.HasPrefix(p, "/api/v1/admin/") || p == "/status" || strings.HasPrefix(p, "/status/"))
		switch {
		case adminOnly && listener == frontDoor:
			detail = "the admin API and the status page are on the admin port only (lan.front_door_admin is false)"
		case adminOnly:
			detail = "this port carries only the " + listener + " service; the admin API and the status page are on the admin port only (lan.front_door_admin is false)"
		case listener != frontDoor && s.front.Match(chi.NewRouteContext(), r.Method, routePath(r)):
			detail = "this port carries only the " + listener + " service; " + r.Method + " " + r.URL.Path +
				" is served by the front door and by its own service's port"
		}
		return refuse(probNotFound, detail)
	}
}

// allowMethods are the methods a 405 answer may list in Allow.
var allowMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// methodNotAllowed answers a known path asked with the wrong method, listing the right ones in
// Allow (chi passes them only to its own default handler, so they are looked up again). chi also
// sends here methods it does not know, whatever the path: an unknown path is still a 404.
func (s *Server) methodNotAllowed(mux *chi.Mux, notFound handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		path := routePath(r)
		var allowed []string
		for _, m := range allowMethods {
			if mux.Match(chi.NewRouteContext(), m, path) {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) == 0 {
			return notFound(w, r)
		}
		for _, m := range allowed {
			w.Header().Add("Allow", m)
		}
		return refuse(probMethodNotAllowed, r.URL.Path+" does not accept "+r.Method+"; it accepts "+strings.Join(allowed, ", "))
	}
}

// routePath is the path chi routes on.
func routePath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.Path
}

// noCache marks catalog answers as revalidate-every-time: the data changes with every sync.
func noCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Cache-Control"] = noCacheValue
		next.ServeHTTP(w, r)
	})
}
