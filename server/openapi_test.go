package server

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/storeedge/storeedge/tools/testenv"
)

const openAPIPath = "../docs/openapi.yaml"

func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("%s: openapi %q, want 3.1.x", openAPIPath, v)
	}
	return doc
}

// resolve follows a local $ref ("#/components/…") until it reaches a definition.
func resolve(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	for range 10 {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("not an object: %v", v)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		if !strings.HasPrefix(ref, "#/") {
			t.Fatalf("non-local $ref %q", ref)
		}
		var cur any = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cm, ok := cur.(map[string]any)
			if !ok || cm[part] == nil {
				t.Fatalf("$ref %q does not resolve", ref)
			}
			cur = cm[part]
		}
		v = cur
	}
	t.Fatal("$ref chain too long")
	return nil
}

// The document is well-formed OpenAPI 3.1 for a validator that refuses keys the specification does
// not define (a description with an unquoted comma inside { } turns into such a key).
func TestOpenAPIValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
}

// An independent linter (Redocly CLI, tools/openapi-lint) finds nothing to say about the document.
func TestOpenAPILint(t *testing.T) {
	node, dir := testenv.NodeTool(t, "openapi-lint", "@redocly/cli")
	doc, err := filepath.Abs(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "node_modules", "@redocly", "cli", "bin", "cli.js"),
		"lint", "--config", filepath.Join(dir, "redocly.yaml"), "--format", "stylish", doc)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redocly lint %s: %v\n%s", openAPIPath, err, out)
	}
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// chiParam matches a chi path parameter, with or without a regexp: {id} or {id:[0-9]+}.
var chiParam = regexp.MustCompile(`\{([^}:]+)(:[^}]*)?\}`)

func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	paths, _ := doc["paths"].(map[string]any)
	documented := map[string]bool{}
	for path, item := range paths {
		for _, m := range httpMethods {
			if _, ok := item.(map[string]any)[m]; ok {
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}

	f := newFixtureDB(t, openDB(t), func(o *Options) { o.Metrics = prometheus.NewRegistry() })
	served := map[string]bool{}
	// The front door serves every route but those of the admin port alone (the metrics).
	for _, r := range []*chi.Mux{f.srv.front, f.srv.router(serviceAdmin, nil)} {
		err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
			served[method+" "+chiParam.ReplaceAllString(route, "{$1}")] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	var undocumented, unserved []string
	for r := range served {
		if !documented[r] {
			undocumented = append(undocumented, r)
		}
	}
	for r := range documented {
		if !served[r] {
			unserved = append(unserved, r)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unserved)
	if len(undocumented) > 0 {
		t.Errorf("served but missing from %s:\n  %s", openAPIPath, strings.Join(undocumented, "\n  "))
	}
	if len(unserved) > 0 {
		t.Errorf("in %s but not served by the front door nor the admin port:\n  %s", openAPIPath, strings.Join(unserved, "\n  "))
	}
	if len(served) < 17 {
		t.Errorf("only %d routes walked: %v", len(served), served)
	}
}

func TestOpenAPIErrorsAreProblems(t *testing.T) {
	doc := loadOpenAPI(t)
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		for _, m := range httpMethods {
			op, ok := item.(map[string]any)[m].(map[string]any)
			if !ok {
				continue
			}
			where := strings.ToUpper(m) + " " + path
			responses, _ := op["responses"].(map[string]any)
			if _, ok := responses["default"]; !ok {
				t.Errorf("%s: no default (problem) response", where)
			}
			for code, r := range responses {
				n, err := strconv.Atoi(code)
				if code != "default" && err != nil {
					t.Errorf("%s: response code %q", where, code)
					continue
				}
				content, _ := resolve(t, doc, r)["content"].(map[string]any)
				if code != "default" && n < 400 {
					_, isJSON := content["application/json"]
					_, isStream := content["text/event-stream"]
					_, isFile := content["*/*"]
					isMedia := path == "/api/v1/media/{id}" && (isFile || content == nil) // a file, or a 304
					// The status page is for browsers: HTML, its assets, redirects and its stream.
					isPage := path == "/" || strings.HasPrefix(path, "/status")
					_, isExposition := content["text/plain"]
					_, isYAML := content["application/yaml"] // the configuration, as its file
					if !isJSON && !(isStream && path == "/api/v1/events") && !isMedia && !isPage && !(isExposition && path == metricsPath) &&
						!(isYAML && path == "/api/v1/admin/config") {
						t.Errorf("%s %s: success not application/json", where, code)
					}
					continue
				}
				if path == "/status/login" && content["text/html"] != nil {
					continue // the login form again, saying what was wrong
				}
				if len(content) != 1 || content["application/problem+json"] == nil {
					t.Errorf("%s %s: error response content %v, want only application/problem+json", where, code, keys(content))
					continue
				}
				schema := resolve(t, doc, content["application/problem+json"].(map[string]any)["schema"])
				if props, _ := schema["properties"].(map[string]any); props["type"] == nil || props["detail"] == nil || props["instance"] == nil {
					t.Errorf("%s %s: problem schema lacks type, detail or instance", where, code)
				}
			}
		}
	}
}

// The problem types the code can answer are the ones the document lists.
func TestOpenAPIProblemTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	schema := resolve(t, doc, map[string]any{"$ref": "#/components/schemas/Problem"})
	var documented []string
	for _, v := range schema["properties"].(map[string]any)["type"].(map[string]any)["enum"].([]any) {
		documented = append(documented, v.(string))
	}
	var code []string
	for _, p := range []problemType{probNotFound, probBadParameter, probMalformedBody, probInvalidBody, probBodyTooLarge, probHeadersTooLarge, probMalformedRequest,
		probUnsupportedMediaType, probMethodNotAllowed, probNotReady, probInternal, probIdempotencyConflict, probInvalidTransition, probUnknownProduct, probBackOffice,
		probUnauthorized, probAdminOff, probThrottled, probNoTarget, probMediaUnavailable, probRangeNotSatisfiable, probPreconditionFailed, probChangesReset,
		probNoSession, probCSRF, probEarlierRefused, probBackOfficeTimeout} {
		code = append(code, problemBase+p.slug)
	}
	slices.Sort(documented)
	slices.Sort(code)
	if !slices.Equal(documented, code) {
		t.Errorf("problem types documented %v, in the code %v", documented, code)
	}
}

// Catalog answers document the data-age headers.
func TestOpenAPICatalogHeaders(t *testing.T) {
	doc := loadOpenAPI(t)
	for path, item := range doc["paths"].(map[string]any) {
		if !strings.HasPrefix(path, "/api/v1/catalog/") {
			continue
		}
		for _, m := range httpMethods {
			op, ok := item.(map[string]any)[m].(map[string]any)
			if !ok {
				continue
			}
			ok200 := resolve(t, doc, op["responses"].(map[string]any)["200"])
			headers, _ := ok200["headers"].(map[string]any)
			for _, h := range []string{headerSyncedAt, headerDataAge, "Cache-Control"} {
				if headers[h] == nil {
					t.Errorf("%s %s: 200 does not document %s", strings.ToUpper(m), path, h)
				}
			}
		}
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// A schema that refuses unknown fields names the fields it takes: an object with
// additionalProperties false and no properties refuses every body (a lost "properties:" line
// reads as YAML still). And the lookup request devices send validates against its schema.
func TestOpenAPIClosedSchemasNameTheirFields(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, ref := range doc.Components.Schemas {
		s := ref.Value
		if s.AdditionalProperties.Has != nil && !*s.AdditionalProperties.Has && len(s.Properties) == 0 {
			t.Errorf("schema %s refuses unknown fields and names none", name)
		}
	}
	var body any
	if err := json.Unmarshal([]byte(`{"ids":["P0001"],"barcodes":["3760001000017"]}`), &body); err != nil {
		t.Fatal(err)
	}
	if err := doc.Components.Schemas["LookupRequest"].Value.VisitJSON(body); err != nil {
		t.Errorf("a lookup request: %v", err)
	}
}
