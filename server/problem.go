package server

import (
	"encoding/json"
	"net/http"
	"strconv"
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

// problem writes an error answer. detail tells the device maker what was wrong and how to fix it.
func problem(w http.ResponseWriter, r *http.Request, p problemType, detail string) {
	body := problemBody(p, detail, r.URL.Path)
	h := w.Header()
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
