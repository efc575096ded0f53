package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Every answer the test fixtures get is checked against docs/openapi.yaml by kin-openapi's
// openapi3filter: status, headers, content type and body of a documented route against its
// operation, and any other answer (an unknown route, a wrong method) against the problem
// document. Objects are checked as closed: a field the document does not list is an error too,
// so the document and the code cannot drift apart in either direction while the tests pass.

// apiDoc is docs/openapi.yaml, loaded once, and a router of its operations by path alone (the
// document's server URL names a host the tests do not use).
var apiDoc = sync.OnceValues(func() (*contractDoc, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(openAPIPath)
	if err != nil {
		return nil, err
	}
	closeObjects(doc)
	byPath := *doc
	byPath.Servers = nil
	router, err := legacy.NewRouter(&byPath)
	if err != nil {
		return nil, err
	}
	return &contractDoc{doc: doc, router: router}, nil
})

type contractDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// cloudDocuments are the schemas of documents the server passes on as the cloud sent them: the
// cloud may add fields, so they stay open.
var cloudDocuments = []string{"Product", "Price", "StockLevel", "MediaManifest", "Setting"}

// closeObjects makes every object schema of the answers that lists its properties and says
// nothing of others refuse them (additionalProperties: false), but the cloud's documents.
func closeObjects(doc *openapi3.T) {
	done := map[*openapi3.Schema]bool{}
	for _, name := range cloudDocuments {
		done[doc.Components.Schemas[name].Value] = true
	}
	var walk func(*openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || done[ref.Value] {
			return
		}
		s := ref.Value
		done[s] = true
		if s.Type.Includes("object") && len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			closed := false
			s.AdditionalProperties.Has = &closed
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		for _, list := range [][]*openapi3.SchemaRef{s.AllOf, s.AnyOf, s.OneOf} {
			for _, sub := range list {
				walk(sub)
			}
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, resp := range op.Responses.Map() {
				for _, media := range resp.Value.Content {
					walk(media.Schema)
				}
			}
		}
	}
}

func init() {
	// The event stream's schema is a string: its text is what is checked.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	for _, ct := range []string{"text/html", "text/javascript", "text/css"} { // the status page
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

// contract checks the answers of one fixture and remembers which operations answered what.
type contract struct {
	t   testing.TB
	doc *contractDoc

	mu   sync.Mutex      // protects the field below
	seen map[string]bool // "GET /api/v1/orders/{id} 200"
}

func newContract(t testing.TB) *contract {
	t.Helper()
	doc, err := apiDoc()
	if err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	return &contract{t: t, doc: doc, seen: map[string]bool{}}
}

// wrap checks every answer of h. Benchmarks are not checked, as they measure the server alone,
// nor fuzz targets, which check their answers themselves (and may not fail through f).
func (c *contract) wrap(h http.Handler) http.Handler {
	switch c.t.(type) {
	case *testing.B, *testing.F:
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tee := &teeWriter{ResponseWriter: w}
		h.ServeHTTP(tee, r)
		if err := c.check(r, tee.code(), w.Header(), tee.body.Bytes()); err != nil {
			c.t.Errorf("%s %s: the answer %d breaks %s: %v", r.Method, r.URL.RequestURI(), tee.code(), openAPIPath, err)
		}
	})
}

// check validates one answer. An answer of a documented operation is validated against it; any
// other must be a problem document.
func (c *contract) check(r *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := c.doc.router.FindRoute(routedRequest(r))
	if err != nil {
		return c.checkProblem(status, header, body)
	}
	c.mu.Lock()
	c.seen[route.Method+" "+route.Path+" "+strconv.Itoa(status)] = true
	c.mu.Unlock()
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.Options.WithCustomSchemaErrorFunc(schemaReason)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// checkProblem validates an answer of no documented operation: an error, as a problem document.
func (c *contract) checkProblem(status int, header http.Header, body []byte) error {
	if status < 400 {
		return fmt.Errorf("status %d from a route the document does not list", status)
	}
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("status %d with Content-Type %q, want application/problem+json", status, ct)
	}
	schema := c.doc.doc.Components.Schemas["Problem"].Value
	v, err := openapi3filter.JSONBodyDecoder(bytes.NewReader(body), header, nil, nil)
	if err != nil {
		return fmt.Errorf("problem document: %w", err)
	}
	return schema.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors(), openapi3.SetSchemaErrorMessageCustomizer(schemaReason))
}

// schemaReason keeps a schema error to its reason, which names the place in the answer: the
// whole schema and value would bury it.
func schemaReason(err *openapi3.SchemaError) string { return err.Reason }

// answered reports whether operation ("GET /api/v1/status") gave an answer of a status in
// [from, to].
func (c *contract) answered(operation string, from, to int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.seen {
		i := strings.LastIndexByte(k, ' ')
		n, _ := strconv.Atoi(k[i+1:])
		if k[:i] == operation && n >= from && n <= to {
			return true
		}
	}
	return false
}

// routedRequest is r with the path as sent (escaped), so an id holding an escaped slash is one
// path segment for the router too.
func routedRequest(r *http.Request) *http.Request {
	if r.URL.RawPath == "" {
		return r
	}
	c := r.Clone(r.Context())
	c.URL.Path = r.URL.RawPath
	c.URL.RawPath = ""
	return c
}

// teeWriter passes an answer on and keeps a copy of its status and body.
type teeWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func (w *teeWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *teeWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
