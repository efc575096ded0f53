package server

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/sync/media"
)

const testMetricsToken = "metrics-token-0123456789"

func newMetricsFixture(t *testing.T, opts ...func(*Options)) (*fixture, map[string]string, *http.Client) {
	t.Helper()
	f := newFixture(t, append([]func(*Options){func(o *Options) {
		o.Bind = "127.0.0.1"
		o.FrontDoor = EphemeralPort
		o.Services = map[string]int{"catalog": EphemeralPort, "admin": EphemeralPort}
		o.Metrics = prometheus.NewRegistry()
		o.MetricsToken = testMetricsToken
	}}, opts...)...)
	runServer(t, f.srv)
	return f, f.srv.Addrs(), testClient(t)
}

// scrape reads the exposition with a token ("" for none) and answers the status, the body and
// its content type.
func scrape(t *testing.T, c *http.Client, url, token string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
}

// sample finds the value of the series of name with exactly these labels in an exposition.
func sample(t *testing.T, body, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	mf := families[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsCountRequestsByRoutePattern(t *testing.T) {
	f, addrs, c := newMetricsFixture(t)
	for _, path := range []string{"/api/v1/catalog/products/P0001", "/api/v1/catalog/products/P0002", "/api/v1/catalog/products/NOPE", "/no/such/route/abc"} {
		f.getOver(t, c, "http://"+addrs["front_door"]+path)
	}
	f.getOver(t, c, "http://"+addrs["catalog"]+"/api/v1/catalog/products/P0003")

	code, body, ctype := scrape(t, c, "http://"+addrs["admin"]+"/metrics", testMetricsToken)
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("metrics: %d %q:\n%s", code, ctype, body)
	}
	product := "/api/v1/catalog/products/{id}"
	for _, tc := range []struct {
		listener, route, code string
		want                  float64
	}{
		{"front_door", product, "200", 2},
		{"front_door", product, "404", 1},
		{"front_door", routeUnmatched, "404", 1},
		{"catalog", product, "200", 1},
	} {
		got, ok := sample(t, body, "storeedge_http_requests_total", map[string]string{"listener": tc.listener, "route": tc.route, "code": tc.code})
		if !ok || got != tc.want {
			t.Errorf("requests %s %s %s: %v (found %v), want %v", tc.listener, tc.route, tc.code, got, ok, tc.want)
		}
	}
	if n, ok := sample(t, body, "storeedge_http_request_duration_seconds", map[string]string{"listener": "front_door", "route": product}); !ok || n != 3 {
		t.Errorf("latency histogram of %s: %v observations (found %v), want 3", product, n, ok)
	}
	if strings.Contains(body, "P0001") || strings.Contains(body, "/no/such/route") {
		t.Errorf("a raw path shows in the metrics:\n%s", body)
	}
	for _, name := range []string{"storeedge_build_info", "storeedge_outbox_depth", "storeedge_push_queue_depth", "storeedge_sync_data_age_seconds"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("no %s in the metrics", name)
		}
	}
	// The standard catalog was applied an hour before the fixture's clock.
	if age, ok := sample(t, body, "storeedge_sync_data_age_seconds", map[string]string{"collection": "products"}); !ok || age <= 0 {
		t.Errorf("data age of products: %v (found %v)", age, ok)
	}
}

// TestWANUpAbsentWithSyncOff checks that storeedge_wan_up has no series while the sync with the
// cloud is off (an alert on it would fire forever), and reads 1 and 0 otherwise.
func TestWANUpAbsentWithSyncOff(t *testing.T) {
	var state atomic.Value
	state.Store("disabled")
	_, addrs, c := newMetricsFixture(t, func(o *Options) {
		o.WAN = func() WANStatus { return WANStatus{State: state.Load().(string)} }
	})
	for _, tc := range []struct {
		state string
		want  float64
		found bool
	}{{"disabled", 0, false}, {"ok", 1, true}, {"proxy_error", 0, true}} {
		state.Store(tc.state)
		_, body, _ := scrape(t, c, "http://"+addrs["admin"]+"/metrics", testMetricsToken)
		if v, ok := sample(t, body, "storeedge_wan_up", nil); ok != tc.found || v != tc.want {
			t.Errorf("WAN %s: storeedge_wan_up %v (series present: %v), want %v (present: %v)", tc.state, v, ok, tc.want, tc.found)
		}
	}
}

func TestMetricsCredentialAndPort(t *testing.T) {
	f, addrs, c := newMetricsFixture(t)
	admin := "http://" + addrs["admin"] + "/metrics"
	for _, tc := range []struct {
		name, url, token string
		status           int
	}{
		{"metrics token", admin, testMetricsToken, 200},
		{"admin token", admin, testAdminToken, 200},
		{"no token", admin, "", 401},
		{"device token", admin, f.device(t, "pos").Token, 401},
		{"front door", "http://" + addrs["front_door"] + "/metrics", testMetricsToken, 404},
		{"catalog port", "http://" + addrs["catalog"] + "/metrics", testMetricsToken, 404},
	} {
		code, body, ctype := scrape(t, c, tc.url, tc.token)
		if code != tc.status {
			t.Errorf("%s: %d, want %d:\n%s", tc.name, code, tc.status, body)
			continue
		}
		if code != 200 && !strings.HasPrefix(ctype, "application/problem+json") {
			t.Errorf("%s: %d answered as %q, want a problem document", tc.name, code, ctype)
		}
	}
	// Wrong credentials count against their address, as on the admin API: ten spend the
	// address's minute, and then the right one waits too. From a LAN address, that is: this
	// machine (loopback, the connections above) is never held back.
	h := f.srv.listener(serviceAdmin)
	fromLAN := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.RemoteAddr = "192.0.2.50:40000"
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for i := range pageLoginBudget {
		if rec := fromLAN(fmt.Sprintf("guess-%d", i)); rec.Code != 401 {
			t.Fatalf("wrong token %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	if rec := fromLAN(testMetricsToken); rec.Code != 429 {
		t.Fatalf("the metrics token after %d wrong ones: %d, want 429:\n%s", pageLoginBudget, rec.Code, rec.Body)
	}
	for i := range pageLoginBudget {
		scrape(t, c, admin, fmt.Sprintf("guess-%d", i))
	}
	if code, body, _ := scrape(t, c, admin, testMetricsToken); code != 200 {
		t.Fatalf("the metrics token from loopback after wrong ones: %d, want 200:\n%s", code, body)
	}
}

// docs/operations.md explains every metric the server exposes, and only those.
func TestMetricsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if i := strings.Index(doc, "\n## Metrics"); i >= 0 { // the metrics' own section
		doc = doc[i+1:]
		if j := strings.Index(doc, "\n## "); j >= 0 {
			doc = doc[:j]
		}
	}
	exposed := map[string]bool{"storeedge_http_requests_total": true, "storeedge_http_request_duration_seconds": true}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, d := range statusDescs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		exposed[m[1]] = true
	}
	for name := range exposed {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("docs/operations.md does not explain %s", name)
		}
	}
	for _, name := range regexp.MustCompile("`(storeedge_[a-z_]+)").FindAllStringSubmatch(doc, -1) {
		if !exposed[name[1]] {
			t.Errorf("docs/operations.md explains %s, which the server does not expose", name[1])
		}
	}
}

// A path asked with a method it does not accept matches no route either: both count under
// "unmatched", with their status.
func TestMetricsMethodNotAllowed(t *testing.T) {
	f, addrs, c := newMetricsFixture(t)
	token := f.device(t, "pos").Token
	for _, path := range []string{"/api/v1/catalog/products/P0001", "/nowhere"} {
		req, _ := http.NewRequest(http.MethodDelete, "http://"+addrs["front_door"]+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	_, body, _ := scrape(t, c, "http://"+addrs["admin"]+"/metrics", testMetricsToken)
	for _, tc := range []struct{ route, code string }{
		{routeUnmatched, "405"},
		{routeUnmatched, "404"},
	} {
		if n, ok := sample(t, body, "storeedge_http_requests_total", map[string]string{"listener": "front_door", "route": tc.route, "code": tc.code}); !ok || n != 1 {
			t.Errorf("%s %s: %v (found %v), want 1\n%s", tc.route, tc.code, n, ok, body)
		}
	}
}

// The optional channels to the vendor show in the metrics as their status reports them, and not
// at all when they are off.
func TestMetricsOfTheRemoteSupportChannels(t *testing.T) {
	_, addrs, c := newMetricsFixture(t)
	_, off, _ := scrape(t, c, "http://"+addrs["admin"]+"/metrics", testMetricsToken)
	if strings.Contains(off, "storeedge_logship_") || strings.Contains(off, "storeedge_support_") {
		t.Errorf("channels off, yet in the metrics:\n%s", off)
	}

	f := newFixture(t, func(o *Options) {
		o.Bind, o.Services = "127.0.0.1", map[string]int{"admin": EphemeralPort}
		o.Metrics, o.MetricsToken = prometheus.NewRegistry(), testMetricsToken
		o.LogShipping = func() logship.Status {
			return logship.Status{State: logship.StateRetrying, Shipped: 1200, Buffered: 3, BufferBytes: 900, Dropped: 7, Rejected: 1}
		}
		o.Support = func() support.Status { return support.Status{State: support.LinkConnected, Answered: 4, Refused: 2} }
	})
	runServer(t, f.srv)
	_, body, _ := scrape(t, c, "http://"+f.srv.Addrs()["admin"]+"/metrics", testMetricsToken)
	for name, want := range map[string]float64{
		"storeedge_logship_up": 0, "storeedge_logship_shipped_records_total": 1200, "storeedge_logship_buffered_records": 3,
		"storeedge_logship_buffer_bytes": 900, "storeedge_logship_dropped_records_total": 7, "storeedge_logship_rejected_records_total": 1,
		"storeedge_support_connected": 1, "storeedge_support_answered_total": 4, "storeedge_support_refused_total": 2,
	} {
		if v, ok := sample(t, body, name, nil); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

// The rows of each collection are in the metrics, as the status counts them.
func TestMetricsRowsPerCollection(t *testing.T) {
	_, addrs, c := newMetricsFixture(t)
	_, body, _ := scrape(t, c, "http://"+addrs["admin"]+"/metrics", testMetricsToken)
	for coll, want := range map[string]float64{"products": nProducts, "prices": nProducts, "stock": nProducts / 2, "media": 2, "settings": 2} {
		if v, ok := sample(t, body, "storeedge_sync_rows", map[string]string{"collection": coll}); !ok || v != want {
			t.Errorf("storeedge_sync_rows{collection=%q} = %v (present %v), want %v", coll, v, ok, want)
		}
	}
}

// With media fetching off the cache's series stay and the downloads' go: nothing reads as a
// Blob storage that is down. Nor does a cache that has not needed Blob storage since the start
// (starting): storeedge_media_blob_up is 1 then, as after a contact that worked, and 0 after one
// that failed.
func TestMetricsOfMediaFetchingOff(t *testing.T) {
	c := testClient(t)
	for _, state := range []string{media.StateOK, media.StateDisabled, media.StateStarting, media.StateUnreachable} {
		fm := newFakeMedia(t)
		fm.add(t, "M1", []byte("image"))
		fm.state = state
		f := newFixture(t, func(o *Options) {
			o.Bind, o.Services = "127.0.0.1", map[string]int{"admin": EphemeralPort}
			o.Metrics, o.MetricsToken = prometheus.NewRegistry(), testMetricsToken
			o.Media = fm
		})
		runServer(t, f.srv)
		_, body, _ := scrape(t, c, "http://"+f.srv.Addrs()["admin"]+"/metrics", testMetricsToken)
		if v, ok := sample(t, body, "storeedge_media_cache_files", nil); !ok || v != 1 {
			t.Errorf("%s: storeedge_media_cache_files = %v (present %v), want 1", state, v, ok)
		}
		v, up := sample(t, body, "storeedge_media_blob_up", nil)
		_, pending := sample(t, body, "storeedge_media_pending_bytes", nil)
		if want := state != media.StateDisabled; up != want || pending != want {
			t.Errorf("%s: blob_up present %v, pending present %v", state, up, pending)
		}
		if up && v != map[bool]float64{true: 1, false: 0}[state == media.StateOK || state == media.StateStarting] {
			t.Errorf("%s: blob_up %v", state, v)
		}
	}
}
