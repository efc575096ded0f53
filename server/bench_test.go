package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// BenchmarkProductByID is GET /api/v1/catalog/products/{id} through the front-door handler, with
// the whole middleware chain and a real database.
func BenchmarkProductByID(b *testing.B) {
	f := newFixture(b)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/catalog/products/P0123", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// BenchmarkProductByIDHTTP and BenchmarkBareHTTP compare the same answer over a loopback HTTP
// connection: the server's handler against a bare net/http handler writing the same bytes. Their
// ratio is the overhead of routing, middleware and the database lookup.
func BenchmarkProductByIDHTTP(b *testing.B) {
	f := newFixture(b)
	benchHTTP(b, f.h, "/api/v1/catalog/products/P0123")
}

// BenchmarkBarcodeHTTP is GET /api/v1/catalog/barcodes/{code} the same way: its answer is the
// same as BenchmarkProductByIDHTTP's, read through the barcode's record.
func BenchmarkBarcodeHTTP(b *testing.B) {
	f := newFixture(b)
	benchHTTP(b, f.h, "/api/v1/catalog/barcodes/"+barcode(123))
}

func BenchmarkBareHTTP(b *testing.B) {
	f := newFixture(b)
	rec := f.get(b, "/api/v1/catalog/products/P0123")
	body := rec.Body.Bytes()
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	benchHTTP(b, bare, "/api/v1/catalog/products/P0123")
}

func benchHTTP(b *testing.B, h http.Handler, path string) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := srv.URL + path
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkMetricsOverhead is BenchmarkProductByID without and with the HTTP metrics, in the
// same run: the difference is what counting and timing each request costs.
func BenchmarkMetricsOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			f := newFixture(b, func(o *Options) {
				if on {
					o.Metrics = prometheus.NewRegistry()
				}
			})
			h := f.srv.Handler()
			req := httptest.NewRequest(http.MethodGet, "/api/v1/catalog/products/P0123", nil)
			req.Header.Set("Authorization", "Bearer "+f.device(b, "pos").Token)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}

// scrapeProducts is the catalog of BenchmarkMetricsScrape: a large shop's.
const scrapeProducts = 100_000

// BenchmarkMetricsScrape gathers every metric the server exposes, against the status document
// (which counts each catalog table's rows) in the same run, over a large catalog: a scrape's
// cost must not grow with the catalog.
func BenchmarkMetricsScrape(b *testing.B) {
	db := openDB(b)
	for start := 1; start <= scrapeProducts; start += 5000 {
		var page []cloudapi.Change
		for i := start; i < start+5000; i++ {
			page = append(page, productChange(productID(i), 1, productName(i), categories[i%len(categories)], barcode(i)))
		}
		applyPage(b, db, cloudapi.Products, productsAge, page...)
	}
	reg := prometheus.NewRegistry()
	f := newFixtureDB(b, db, func(o *Options) { o.Metrics = reg })
	b.Run("status", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.srv.StatusDocument(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("metrics", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
