package httpbench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the same driver as storage

	"github.com/storeedge/storeedge/bench/harness"
)

// Sample is what a random sample of products read over the LAN API tells.
type Sample struct {
	N        int      // products read
	AvgSize  int      // their answers' average size in bytes
	Barcodes []string // their barcodes, sorted, each once
}

// SampleProducts reads n random products (fixed seed) from the catalog at base with a few
// workers.
func SampleProducts(ctx context.Context, base string, products, n int) (Sample, error) {
	n = min(n, products)
	rng := rand.New(rand.NewPCG(1, 2))
	ids := rng.Perm(products)[:n]
	c := harness.NewClient(10*time.Second, true)
	var (
		mu       sync.Mutex // protects the fields below
		total    int64
		barcodes []string
		firstErr error
	)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for idx := range next {
				size, codes, err := GetProduct(ctx, c, fmt.Sprintf("%s/api/v1/catalog/products/P%07d", base, idx+1))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				total += int64(size)
				barcodes = append(barcodes, codes...)
				mu.Unlock()
			}
		})
	}
	for _, idx := range ids {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		next <- idx
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return Sample{}, fmt.Errorf("sample products: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return Sample{}, err
	}
	if len(barcodes) == 0 {
		return Sample{}, fmt.Errorf("sample products: no barcodes in %d products", n)
	}
	slices.Sort(barcodes)
	return Sample{N: n, AvgSize: int((total + int64(n)/2) / int64(n)), Barcodes: slices.Compact(barcodes)}, nil
}

// GetProduct reads one product answer and returns its size and the product's barcodes.
func GetProduct(ctx context.Context, c *http.Client, url string) (int, []string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var it struct {
		Doc struct {
			Barcodes []string `json:"barcodes"`
		} `json:"doc"`
	}
	if err := json.Unmarshal(body, &it); err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return len(body), it.Doc.Barcodes, nil
}

// timeStatus times n GET /api/v1/status on an otherwise idle server.
func timeStatus(ctx context.Context, base string, n int) ([]time.Duration, error) {
	c := harness.NewClient(30*time.Second, true)
	var out []time.Duration
	for range n {
		start := time.Now()
		if _, err := harness.GetStatus(ctx, c, base); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// timeGets times n GETs of url, one at a time, with a client like timeStatus's.
func timeGets(ctx context.Context, url string, n int) ([]time.Duration, error) {
	c := harness.NewClient(30*time.Second, true)
	var out []time.Duration
	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// AllBarcodes reads every barcode of the database at dbPath (read-only, beside a daemon that has
// it open), in product order.
func AllBarcodes(ctx context.Context, dbPath string) ([]string, error) {
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT code FROM barcodes ORDER BY product_id, code")
	if err != nil {
		return nil, fmt.Errorf("read the barcodes of %s: %w", dbPath, err)
	}
	defer rows.Close()
	var codes []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		codes = append(codes, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the barcodes of %s: %w", dbPath, err)
	}
	if len(codes) == 0 {
		return nil, fmt.Errorf("no barcodes in %s", dbPath)
	}
	return codes, nil
}
