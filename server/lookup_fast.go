package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Routes of the lookups devices make most, shared by the router and the direct path below.
const (
	routeProduct = "/api/v1/catalog/products/{id}"
	routeBarcode = "/api/v1/catalog/barcodes/{code}"
)

// directLookup is a lookup that observe answers itself when it succeeds, without the router,
// the middleware chain and a context of its own: a product by id or by barcode is most of what
// a shop's devices ask, and the routed path costs about a sixth of the CPU of such an answer
// (docs/PERFORMANCE.md). The answer is the routed one to the byte, with the same metrics series
// and log line. Anything but a plain success (another method, an escaped path, a body, a
// missing or refused credential, an unknown key, a failure) is left to the router, which
// answers it as it answers every request: it asks the registry and the database again then.
type directLookup struct {
	prefix     string // the route pattern up to its parameter
	pattern    string // the route pattern, for the metrics
	collection string // whose data age the answer carries
	lookup     func(ctx context.Context, buf []byte, key string) (storage.Item, error)
	series     *routeMetrics // the series of its 200 answers; nil without metrics
}

// directLookups are the direct lookups of a listener: the catalog's, on the front door and the
// catalog port.
func (s *Server) directLookups(name string, lm *listenerMetrics) []directLookup {
	if name != frontDoor && name != serviceCatalog {
		return nil
	}
	ds := []directLookup{
		{pattern: routeProduct, collection: cloudapi.Products,
			lookup: func(ctx context.Context, buf []byte, id string) (storage.Item, error) {
				return s.o.DB.GetAppend(ctx, buf, cloudapi.Products, id)
			}},
		{pattern: routeBarcode, collection: cloudapi.Products, lookup: s.o.DB.ProductByBarcodeAppend},
	}
	for i := range ds {
		d := &ds[i]
		d.prefix = d.pattern[:strings.IndexByte(d.pattern, '{')]
		if lm != nil {
			m := lm.series(d.pattern, http.StatusOK)
			d.series = &m
		}
	}
	return ds
}

// serveDirect answers r and returns true when it is a successful lookup of one of ds; false
// leaves r, unanswered, to the router.
func (s *Server) serveDirect(w http.ResponseWriter, r *http.Request, ds []directLookup, start time.Time) bool {
	if r.Method != http.MethodGet || r.URL.RawPath != "" || r.ContentLength != 0 {
		return false
	}
	for i := range ds {
		d := &ds[i]
		key, ok := strings.CutPrefix(r.URL.Path, d.prefix)
		if ok && key != "" && strings.IndexByte(key, '/') < 0 {
			return s.lookupDirect(w, r, d, key, start)
		}
	}
	return false
}

func (s *Server) lookupDirect(w http.ResponseWriter, r *http.Request, d *directLookup, key string, start time.Time) (answered bool) {
	token, ok := bearer(r)
	if !ok {
		return false
	}
	if _, err := s.o.Devices.Authenticate(token); err != nil {
		return false
	}
	id := r.Header.Get(headerRequestID)
	if !validRequestID(id) {
		id = newRequestID()
	}
	rec := recorder{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			w.Header()[headerRequestID] = []string{id}
			s.panicked(r.Context(), &rec, r, v, id, start)
			answered = true
		}
	}()
	age := s.dataAge(d.collection) // before the data, as the routed path reads it
	doc := getBuffer()
	defer putBuffer(doc)
	it, err := d.lookup(r.Context(), *doc, key)
	if err != nil {
		return false
	}
	h := w.Header()
	h[headerRequestID] = []string{id}
	h["Cache-Control"] = noCacheValue
	putDataAge(h, age)
	b := getBuffer()
	defer putBuffer(b)
	*b = appendItem(*b, &it)
	rec.status, rec.bytes = http.StatusOK, int64(len(*b))
	writeBody(w, http.StatusOK, *b)
	if d.series != nil {
		d.series.count.Inc()
		d.series.latency.Observe(time.Since(start).Seconds())
	}
	s.accessLog(r.Context(), r, &rec, id, start)
	return true
}
