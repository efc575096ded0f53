package regress

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/bench/httpbench"
)

// lookupWorkers is how many requests each side of the lookup benchmark keeps in flight.
const lookupWorkers = 4

// LookupRates measures product-by-id answers per second of the daemon at base (its catalog of
// products from cloudsim), as the device with token, and of fixedserver answering the same
// size, rounds times each for per, alternating, through one client with the same number of
// connections to each.
func LookupRates(ctx context.Context, base, token, fixedBin string, products, rounds int, per time.Duration, w io.Writer) (daemon, baseline []float64, err error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: bearer{token, harness.NewClient(0, true).Transport}}
	size, _, err := httpbench.GetProduct(ctx, c, productURL(base, 0))
	if err != nil {
		return nil, nil, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return nil, nil, err
	}
	bare, err := harness.Start("fixedserver", fixedBin, []string{"-listen", "127.0.0.1:" + strconv.Itoa(port), "-size", strconv.Itoa(size)}, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	defer bare.Kill()
	bareURL := harness.LocalURL(port)
	if _, err := harness.WaitFirst200(ctx, bare, bareURL+"/", 10*time.Millisecond, 30*time.Second); err != nil {
		return nil, nil, err
	}
	onDaemon := func(i int) string { return productURL(base, i%products) }
	onBare := func(i int) string { return bareURL + "/api/v1/catalog/products/" + strconv.Itoa(i) }
	// A warm-up on each: connections open, caches and the page cache filled.
	for _, u := range []func(int) string{onDaemon, onBare} {
		if _, err := requestRate(ctx, c, u, per/2); err != nil {
			return nil, nil, err
		}
	}
	for i := range rounds {
		var d, b float64
		err := harness.Alternate(i, func() (err error) {
			d, err = requestRate(ctx, c, onDaemon, per)
			return err
		}, func() (err error) {
			b, err = requestRate(ctx, c, onBare, per)
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		daemon, baseline = append(daemon, d), append(baseline, b)
		fmt.Fprintf(w, "lookup: daemon %.0f req/s, bare handler %.0f req/s (%d bytes)\n", d, b, size)
	}
	return daemon, baseline, nil
}

// requestRate runs GET url(i) on lookupWorkers workers for d and returns answers per second;
// any answer but 200 is an error.
func requestRate(ctx context.Context, c *http.Client, url func(int) string, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range lookupWorkers {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i += lookupWorkers {
				if _, _, err := httpbench.GetProduct(ctx, c, url(i)); err != nil {
					if ctx.Err() == nil {
						first.CompareAndSwap(nil, err)
					}
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// productURL is the lookup of the i-th product (0-based) of cloudsim's catalog.
func productURL(base string, i int) string {
	return fmt.Sprintf("%s/api/v1/catalog/products/P%07d", base, i+1)
}

// bearer sends every request with the device's token.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
