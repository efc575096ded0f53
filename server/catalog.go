package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Data-age headers of every catalog answer.
const (
	headerSyncedAt = "Storeedge-Synced-At"
	headerDataAge  = "Storeedge-Data-Age"
)

// catalogRoutes are the catalog service: products, prices, stock, media manifests and settings,
// read from the local database, and the delta feed devices keep their own cache with.
func (s *Server) catalogRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(noCache)
		r.Get("/api/v1/catalog/products", s.handle(s.listProducts))
		r.Get(routeProduct, s.handle(s.getItem(cloudapi.Products)))
		r.Get(routeBarcode, s.handle(s.productByBarcode))
		r.Get("/api/v1/catalog/search", s.handle(s.search))
		r.Get("/api/v1/catalog/categories", s.handle(s.categories))
		for _, c := range []string{cloudapi.Prices, cloudapi.Stock, cloudapi.Media} {
			r.Get("/api/v1/catalog/"+c, s.handle(s.listItems(c)))
			r.Get("/api/v1/catalog/"+c+"/{id}", s.handle(s.getItem(c)))
		}
		r.Get("/api/v1/catalog/settings", s.handle(s.settings))
		r.Post("/api/v1/catalog/lookup", s.handle(s.lookup))
		r.Get("/api/v1/catalog/changes", s.handle(s.changes))
	})
}

// setDataAge tells the device how fresh the answer is: the last successful sync of the oldest of
// the collections it comes from, or "never". Read before the data, so that it never claims a
// sync newer than what the answer holds.
func (s *Server) setDataAge(w http.ResponseWriter, collections ...string) {
	putDataAge(w.Header(), s.dataAge(collections...))
}

// putDataAge sets the data-age headers to v, or to "never" when v is nil.
func putDataAge(h http.Header, v *dataAge) {
	if v == nil {
		h[headerSyncedAt] = neverValue
		return
	}
	h[headerSyncedAt] = v.syncedAtValue
	h[headerDataAge] = v.ageValue
}

// dataAge returns the data-age headers' values for the collections, nil when one never synced.
func (s *Server) dataAge(collections ...string) *dataAge {
	var oldest time.Time
	for _, c := range collections {
		st, _ := s.o.DB.FeedState(c)
		if st.LastSuccess.IsZero() {
			oldest = time.Time{}
			break
		}
		if oldest.IsZero() || st.LastSuccess.Before(oldest) {
			oldest = st.LastSuccess
		}
	}
	if oldest.IsZero() {
		return nil
	}
	age := int64(max(s.now().Sub(oldest), 0) / time.Second)
	v := s.lastAge.Load()
	if v == nil || !v.syncedAt.Equal(oldest) || v.age != age {
		// Formatted once per second and sync rather than for every answer.
		var buf [64]byte
		v = &dataAge{syncedAt: oldest, age: age,
			syncedAtValue: []string{string(oldest.UTC().AppendFormat(buf[:0], time.RFC3339))},
			ageValue:      []string{strconv.FormatInt(age, 10)},
		}
		s.lastAge.Store(v)
	}
	return v
}

// dataAge is a pair of data-age header values, shared by the answers that carry them (header
// value slices set whole are never modified in place).
type dataAge struct {
	syncedAt                time.Time
	age                     int64
	syncedAtValue, ageValue []string
}

// Header values shared by every answer that carries them; never modified.
var (
	neverValue       = []string{"never"}
	noCacheValue     = []string{"no-cache"}
	jsonContentValue = []string{"application/json"}
)

// pathParam returns a path parameter decoded: chi routes on the escaped path when it has escapes
// such as %2F, so its parameters are still escaped then.
func pathParam(r *http.Request, name string) (string, bool) {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v, true
	}
	u, err := url.PathUnescape(v)
	return u, err == nil
}

// pathID returns the path's id decoded. An id no item can have (cloud-api.md: 1-128 bytes of
// UTF-8 without control characters) is a bad parameter, not an item that is missing.
func pathID(r *http.Request) (string, error) {
	id, ok := pathParam(r, "id")
	if !ok {
		return "", refuse(probNotFound, "the id in the path is not validly escaped")
	}
	if err := cloudapi.ValidateID(id); err != nil {
		return "", refuse(probBadParameter, "id: "+clip.Quoted(id, 80)+": "+err.Error())
	}
	return id, nil
}

// writeItems sends a page of items; next is the value of after (or cursor) for the page that
// follows, "" on the last page.
func writeItems(w http.ResponseWriter, items []storage.Item, next string) {
	b := getBuffer()
	*b = appendItems(*b, items, next)
	writeBody(w, http.StatusOK, *b)
	putBuffer(b)
}

// page trims a result fetched with limit+1 rows to limit and returns the value that continues it.
func page(items []storage.Item, limit int) ([]storage.Item, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, items[limit-1].ID
}

func (s *Server) listProducts(w http.ResponseWriter, r *http.Request) error {
	s.setDataAge(w, cloudapi.Products)
	q, err := query(r, "limit", "after", "category")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	after := q.Get("after")
	var items []storage.Item
	if cat, ok := q["category"]; ok {
		items, err = s.o.DB.ProductsInCategory(r.Context(), cat[0], after, limit+1)
	} else {
		items, err = s.o.DB.List(r.Context(), cloudapi.Products, after, limit+1)
	}
	if err != nil {
		return fmt.Errorf("list products: %w", err)
	}
	items, next := page(items, limit)
	writeItems(w, items, next)
	return nil
}

func (s *Server) listItems(collection string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		s.setDataAge(w, collection)
		q, err := query(r, "limit", "after")
		if err != nil {
			return err
		}
		limit, err := limitParam(q)
		if err != nil {
			return err
		}
		items, err := s.o.DB.List(r.Context(), collection, q.Get("after"), limit+1)
		if err != nil {
			return fmt.Errorf("list %s: %w", collection, err)
		}
		items, next := page(items, limit)
		writeItems(w, items, next)
		return nil
	}
}

// singular names an item of a collection in messages.
var singular = map[string]string{
	cloudapi.Products: "product",
	cloudapi.Prices:   "price",
	cloudapi.Stock:    "stock level",
	cloudapi.Media:    "media manifest",
	cloudapi.Settings: "setting",
}

func (s *Server) getItem(collection string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		s.setDataAge(w, collection)
		id, err := pathID(r)
		if err != nil {
			return err
		}
		doc := getBuffer()
		defer putBuffer(doc)
		it, err := s.o.DB.GetAppend(r.Context(), *doc, collection, id)
		if err != nil {
			return whenMissing(fmt.Errorf("get %s: %w", singular[collection], err),
				"no "+singular[collection]+" with id "+strconv.Quote(id)+" in the catalog as last synced")
		}
		writeItem(w, &it)
		return nil
	}
}

func (s *Server) productByBarcode(w http.ResponseWriter, r *http.Request) error {
	s.setDataAge(w, cloudapi.Products)
	code, ok := pathParam(r, "code")
	if !ok {
		return refuse(probNotFound, "the barcode in the path is not validly escaped")
	}
	if !cloudapi.IsBarcode(code) { // no product carries it, loaded or not: not worth a retry
		return refuse(probBadParameter, "code: "+clip.Quoted(code, 80)+" is not a barcode (1-64 of 0-9, A-Z, a-z and -)")
	}
	doc := getBuffer()
	defer putBuffer(doc)
	it, err := s.o.DB.ProductByBarcodeAppend(r.Context(), *doc, code)
	if errors.Is(err, storage.ErrNotFound) && s.o.DB.LoadingProducts() {
		return errCatalogLoading("barcodes are looked up")
	}
	if err != nil {
		return whenMissing(fmt.Errorf("get product by barcode: %w", err),
			"no product carries barcode "+strconv.Quote(code)+" in the catalog as last synced")
	}
	writeItem(w, &it)
	return nil
}

// catalogLoadingRetry is the Retry-After of an answer that waits for a bulk load of products.
const catalogLoadingRetry = 5 * time.Second

// errCatalogLoading answers a lookup that finds nothing while a bulk load of products is under
// way (a first sync, say): what it brings is not looked up by barcode or searched until it ends,
// and a 404 or an empty list would tell a device that the product does not exist.
func errCatalogLoading(what string) error {
	return &apiError{typ: probNotReady, retryAfter: catalogLoadingRetry,
		detail: "the catalog is being loaded from the cloud: " + what + " once the load ends; try again in a few seconds (lookups by id answer meanwhile)"}
}

func writeItem(w http.ResponseWriter, it *storage.Item) {
	b := getBuffer()
	*b = appendItem(*b, it)
	writeBody(w, http.StatusOK, *b)
	putBuffer(b)
}

// search pages through relevance-ordered results with an opaque cursor (an offset today).
func (s *Server) search(w http.ResponseWriter, r *http.Request) error {
	s.setDataAge(w, cloudapi.Products)
	q, err := query(r, "q", "cursor", "limit")
	if err != nil {
		return err
	}
	query, offset, err := searchParams(q)
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	limit = min(limit, maxSearchSkip-offset) // paging reaches the first maxSearchSkip results
	items, err := s.o.DB.Search(r.Context(), query, offset, limit+1)
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	// Only a first page: a later one past the last result is the empty page it always is (the
	// device pages through what the index held before the load).
	if len(items) == 0 && offset == 0 && s.o.DB.LoadingProducts() && len(storage.SearchWords(query)) > 0 { // no words: nothing could match
		return errCatalogLoading("search finds what it brings")
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		if offset+limit < maxSearchSkip {
			next = strconv.Itoa(offset + limit)
		}
	}
	writeItems(w, items, next)
	return nil
}

func (s *Server) categories(w http.ResponseWriter, r *http.Request) error {
	s.setDataAge(w, cloudapi.Products)
	cats, err := s.o.DB.Categories(r.Context())
	if err != nil {
		return fmt.Errorf("list categories: %w", err)
	}
	if cats == nil {
		cats = []storage.Category{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Items []storage.Category `json:"items"`
	}{cats})
}

// settings sends every setting at once: a shop has a handful, capped at maxSettings.
func (s *Server) settings(w http.ResponseWriter, r *http.Request) error {
	s.setDataAge(w, cloudapi.Settings)
	items, err := s.o.DB.List(r.Context(), cloudapi.Settings, "", maxSettings)
	if err != nil {
		return fmt.Errorf("list settings: %w", err)
	}
	writeItems(w, items, "")
	return nil
}

// probChangesReset answers a since that is no position of this database's delta feed.
var probChangesReset = problemType{"changes-reset", "Delta feed reset", http.StatusGone}

// changesResetDetail says why a since no longer holds and what the device must do.
func changesResetDetail(since int64, held string, head int64, epoch string) string {
	why := fmt.Sprintf("since %d is beyond the last change of this server's delta feed (%d)", since, head)
	if held != "" && held != epoch {
		why = fmt.Sprintf("epoch %s is not this server's delta feed (now %s)", held, epoch)
	}
	return why + ": its database was replaced or restored. Build your copy of the catalog again from since=0"
}

// changes is the device delta feed: every change after since, in local sequence order, each item
// once in its latest state (deletions included), so a device keeps its own cache in step. Every
// answer names the feed's epoch; a since beyond the last change, or sent with another epoch, is
// answered 410 changes-reset so the device starts again from 0.
func (s *Server) changes(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "collections", "since", "epoch", "limit")
	if err != nil {
		s.setDataAge(w, cloudapi.Collections...)
		return err
	}
	colls, err := collectionsParam(q)
	if err != nil {
		s.setDataAge(w, cloudapi.Collections...)
		return err
	}
	s.setDataAge(w, colls...)
	since, err := sinceParam(q)
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	held, err := epochParam(q)
	if err != nil {
		return err
	}
	epoch := s.o.DB.Epoch()
	// Only changes on the disk are given out (DurableHead): a power cut cannot take back a
	// position a device holds.
	head, err := s.o.DB.DurableHead(r.Context())
	if err != nil {
		return fmt.Errorf("read changes: %w", err)
	}
	if since > 0 && (since > head || held != "" && held != epoch) {
		return refuse(probChangesReset, changesResetDetail(since, held, head, epoch))
	}
	changes, err := s.o.DB.Changes(r.Context(), since, head, limit+1, colls)
	if err != nil {
		return fmt.Errorf("read changes: %w", err)
	}
	more := len(changes) > limit
	if more {
		changes = changes[:limit]
	}
	next := since
	if len(changes) > 0 {
		next = changes[len(changes)-1].Seq
	}
	b := getBuffer()
	*b = append(*b, `{"items":[`...)
	for i := range changes {
		if i > 0 {
			*b = append(*b, ',')
		}
		*b = appendChange(*b, &changes[i])
	}
	*b = append(*b, `],"next_since":`...)
	*b = strconv.AppendInt(*b, next, 10)
	*b = append(*b, `,"more":`...)
	*b = strconv.AppendBool(*b, more)
	*b = append(*b, `,"epoch":"`...)
	*b = append(*b, epoch...) // hexadecimal digits: nothing to escape
	*b = append(*b, `"}`...)
	writeBody(w, http.StatusOK, *b)
	putBuffer(b)
	return nil
}
