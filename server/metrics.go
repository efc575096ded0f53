package server

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/storeedge/storeedge/devices"
)

// metricsPath is where the admin port serves the Prometheus exposition (docs/operations.md).
const metricsPath = "/metrics"

// routeUnmatched is the route label of requests no route matched (404s, and 405s: a path asked
// with a method it does not accept): one series for all of them, whatever the path, so that
// scanning for paths cannot grow the metrics without bound.
const routeUnmatched = "unmatched"

// requestBuckets are the latency buckets of the HTTP metrics, in seconds. LAN answers from
// SQLite take well under a millisecond when all is well, so the buckets start there; the last
// ones catch media waiting for a download and the write timeout.
var requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// httpMetrics are the request counters and latency histograms of every listener, registered once
// per Server.
type httpMetrics struct {
	requests *prometheus.CounterVec   // listener, route, code
	duration *prometheus.HistogramVec // listener, route
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeedge_http_requests_total",
			Help: "LAN HTTP requests answered, by listener, route pattern and status code.",
		}, []string{"listener", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "storeedge_http_request_duration_seconds",
			Help:    "Time from a LAN HTTP request's arrival to the end of its answer, by listener and route pattern.",
			Buckets: requestBuckets,
		}, []string{"listener", "route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// listener returns the metrics of one listener, its label resolved once.
func (m *httpMetrics) listener(name string) *listenerMetrics {
	labels := prometheus.Labels{"listener": name}
	l := &listenerMetrics{
		requests: m.requests.MustCurryWith(labels),
		duration: m.duration.MustCurryWith(labels),
	}
	l.byRoute.Store(&map[routeCode]routeMetrics{})
	return l
}

// listenerMetrics keeps the series of one listener resolved by route and status, so a request
// after the first of its kind costs one map lookup, with no lock and no allocation: the map is
// replaced whole when a series is added, which happens once per route and status.
type listenerMetrics struct {
	requests *prometheus.CounterVec
	duration prometheus.ObserverVec

	byRoute atomic.Pointer[map[routeCode]routeMetrics] // never modified once stored
	mu      sync.Mutex                                 // serializes the replacements of byRoute
}

type routeCode struct {
	route string
	code  int
}

type routeMetrics struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

func (l *listenerMetrics) series(route string, code int) routeMetrics {
	k := routeCode{route, code}
	if m, ok := (*l.byRoute.Load())[k]; ok {
		return m
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.byRoute.Load()
	if m, ok := old[k]; ok {
		return m
	}
	m := routeMetrics{
		count:   l.requests.WithLabelValues(route, strconv.Itoa(code)),
		latency: l.duration.WithLabelValues(route),
	}
	next := maps.Clone(old)
	next[k] = m
	l.byRoute.Store(&next)
	return m
}

// measure counts each request of a listener by route pattern and status, and times it from the
// request's arrival (observe's clock). It runs inside observe, whose recorder knows the status;
// a handler that panics before answering is counted as the 500 observe answers for it.
func (s *Server) measure(l *listenerMetrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			finished := false
			defer func() {
				st := stateOf(r.Context())
				code := http.StatusOK // net/http's answer to a handler that wrote nothing
				if st.rec.status != 0 {
					code = st.rec.status
				} else if !finished {
					code = http.StatusInternalServerError
				}
				m := l.series(routePattern(r), code)
				m.count.Inc()
				m.latency.Observe(time.Since(st.start).Seconds())
			}()
			next.ServeHTTP(w, r)
			finished = true
		})
	}
}

// routePattern is the pattern of the route chi matched ("/api/v1/products/{id}"), never the
// raw path, or routeUnmatched.
func routePattern(r *http.Request) string {
	rc := chi.RouteContext(r.Context())
	if rc == nil || len(rc.RoutePatterns) == 0 {
		return routeUnmatched
	}
	if len(rc.RoutePatterns) == 1 {
		// Every route here is registered on one mux (groups share its tree), so the pattern is
		// the one registered: no need for RoutePattern's joining, which allocates.
		return rc.RoutePatterns[0]
	}
	return rc.RoutePattern()
}

// metricsRoute serves the exposition on the admin port only: the front door carries every
// service but this one, so the metrics never share a port with devices.
func (s *Server) metricsRoute(r chi.Router) {
	h := promhttp.HandlerFor(s.o.Metrics, promhttp.HandlerOpts{
		// A source that fails (a database read) leaves its series out of one scrape rather
		// than failing all of them; the error is logged. No timeout or in-flight limit here:
		// promhttp answers those in plain text, not as problems; the collector bounds its reads
		// with metricsTimeout, and only holders of a credential scrape.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{s},
	})
	r.With(s.requireMetrics, noStore).Method(http.MethodGet, metricsPath, h)
}

// requireMetrics lets through requests with the metrics credential (metrics.token) or the admin
// credential. A wrong one counts against its address as on the admin API (requireAdmin).
func (s *Server) requireMetrics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.o.MetricsToken == "" && s.o.AdminToken == "" {
			problem(w, r, probAdminOff, "this server has no metrics credential: set metrics.token (or STOREEDGE_METRICS_TOKEN) or admin.token to read the metrics")
			return
		}
		token, ok := bearer(r)
		wrong := ok && !s.readsMetrics(token)
		if s.guessesSpent(w, r, wrong, "metrics: scrape refused: wrong credential") { // whatever it sends, as on the admin API
			return
		}
		if !ok || wrong {
			problem(w, r, probUnauthorized, "the metrics need a credential: send Authorization: Bearer <metrics.token> (or the admin token)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readsMetrics tells whether token is the metrics or the admin credential. Both comparisons
// are made, so the time taken does not tell which one was near.
func (s *Server) readsMetrics(token string) bool {
	metrics := s.o.MetricsToken != "" && devices.EqualSecret(token, s.o.MetricsToken)
	admin := s.o.AdminToken != "" && devices.EqualSecret(token, s.o.AdminToken)
	return metrics || admin
}

// promLogger logs the errors of a scrape at WARN: a series left out is retried at the next one.
type promLogger struct{ s *Server }

func (l promLogger) Println(v ...any) {
	l.s.log.LogAttrs(context.Background(), slog.LevelWarn, "metrics: scrape incomplete", slog.String(keyError, fmt.Sprint(v...)))
}
