package orderload

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/server"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// The LAN load of issue #13: 50 devices ordering 500 orders a second between them, 200 devices
// following the event stream.
const (
	lanDevices   = 50
	lanFollowers = 200
	lanRate      = 500 // orders a second, all devices together
	lanProduct   = "P0000001"
)

var lanOrderBody = []byte(`{"lines":[{"product_id":"` + lanProduct + `","quantity":2}],"note":"table 4"}`)

// BenchmarkLANOrders drives POST /api/v1/orders from lanDevices devices, each on its own
// HTTP/1.1 keep-alive connection, at an aggregate open-loop rate of lanRate orders a second,
// while lanFollowers devices follow GET /api/v1/events. Latencies are measured from the time each
// order was due, so a server that falls behind shows as queueing, not as a lower rate. The
// baseline, in the same run, is a bare net/http handler storing the same JSON with one INSERT in
// a transaction on a WAL SQLite file (synchronous=NORMAL, as storeedge), driven the same way.
func BenchmarkLANOrders(b *testing.B) {
	seconds := envInt("STOREEDGE_BENCH_SECONDS", 60)
	n := seconds * lanRate
	base := bareOrderServer(b)
	cpu0 := cpuTime()
	baseLoad := driveOrders(b, base.URL, lanTokens(lanDevices, ""), n)
	baseCPU := cpuTime() - cpu0
	base.Close()
	if baseLoad.failed > 0 {
		b.Fatalf("baseline: %d of %d orders failed: %s", baseLoad.failed, n, baseLoad.firstErr)
	}

	db, url, posTokens, followTokens := startLANShop(b)
	follow := startFollowers(b, url, followTokens, n)
	b.ResetTimer()
	cpu0 = cpuTime()
	load := driveOrders(b, url, posTokens, n)
	follow.wait(time.Minute)
	shopCPU := cpuTime() - cpu0
	b.StopTimer()
	follow.stop()
	if load.failed > 0 {
		b.Fatalf("%d of %d orders failed: %s", load.failed, n, load.firstErr)
	}
	missing, dups, toEvent := follow.deliveries(load.due, n)
	stored := countOrders(b, db)

	bp50, bp99, bmax := percentiles(baseLoad.latency)
	p50, p99, pmax := percentiles(load.latency)
	e50, e99, emax := percentiles(toEvent)
	b.ReportMetric(ms(p99), "post-p99-ms")
	b.ReportMetric(ms(e99), "event-p99-ms")
	b.ReportMetric(ms(bp99), "baseline-p99-ms")
	fmt.Printf("\nLAN orders, %d/s from %d devices for %ds (%d orders), %d followers\n", lanRate, lanDevices, seconds, n, lanFollowers)
	row := func(name string, p50, p99, max time.Duration) {
		fmt.Printf("  %-44s p50 %7.1f ms   p99 %7.1f ms   max %7.1f ms\n", name, ms(p50), ms(p99), ms(max))
	}
	row("baseline: bare handler, one INSERT (POST)", bp50, bp99, bmax)
	row("storeedge POST /api/v1/orders", p50, p99, pmax)
	row("due → event at each follower", e50, e99, emax)
	fmt.Printf("  CPU per order (server and clients): baseline %.0f µs, storeedge with %d followers %.0f µs\n",
		float64(baseCPU.Microseconds())/float64(n), lanFollowers, float64(shopCPU.Microseconds())/float64(n))
	fmt.Printf("  p99 ratio to baseline %.2f; target POST p99 ≤ 50 ms: %v\n", ms(p99)/ms(bp99), p99 <= 50*time.Millisecond)
	fmt.Printf("  events: %d missing, %d duplicated (of %d × %d); orders stored %d of %d\n", missing, dups, n, lanFollowers, stored, n)
	if missing > 0 || dups > 0 || stored != int64(n) {
		b.Fatalf("every follower must see every order once and every order be stored")
	}
}

// startLANShop runs the LAN server on a real SQLite file with a catalog of one product, and
// pairs the devices that order and those that follow.
func startLANShop(b *testing.B) (db *storage.DB, url string, pos, followers []string) {
	ctx := context.Background()
	db = openDB(b)
	product := `{"id":"` + lanProduct + `","name":"Tea","brand":"Acme","category":"drinks"}`
	price := `{"product_id":"` + lanProduct + `","currency":"EUR","amount":250}`
	for coll, doc := range map[string]string{cloudapi.Products: product, cloudapi.Prices: price} {
		page := storage.Page{Collection: coll, FetchedAt: time.Now(), End: cloudapi.PageEnd{Cursor: "c1", Count: 1},
			Changes: []cloudapi.Change{{Collection: coll, ID: lanProduct, Op: cloudapi.OpUpsert, Rev: 1, Doc: []byte(doc)}}}
		if _, err := db.ApplyPage(ctx, page); err != nil {
			b.Fatal(err)
		}
	}
	dm, err := devices.New(ctx, devices.Options{DB: db, EnrollmentSecret: benchEnrollment})
	if err != nil {
		b.Fatal(err)
	}
	pair := func(kind string) string {
		c, err := dm.Pair(ctx, devices.PairRequest{EnrollmentSecret: benchEnrollment, Kind: kind}, "127.0.0.1")
		if err != nil {
			b.Fatal(err)
		}
		return c.Token
	}
	for range lanDevices {
		pos = append(pos, pair("pos"))
	}
	for range lanFollowers {
		followers = append(followers, pair("signage"))
	}
	srv, err := server.New(server.Options{DB: db, Devices: dm})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	b.Cleanup(ts.Close)
	return db, ts.URL, pos, followers
}

const benchEnrollment = "bench-enrollment-secret-0123"

func countOrders(b *testing.B, db *storage.DB) int64 {
	st, err := db.OrderStats(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, c := range st.ByStatus {
		total += c
	}
	return total
}

// lanTokens are placeholder credentials for the baseline, which checks none.
func lanTokens(n int, prefix string) []string {
	t := make([]string, n)
	for i := range t {
		t[i] = prefix + "dev" + strconv.Itoa(i)
	}
	return t
}

// orderLoad is what the ordering devices saw.
type orderLoad struct {
	latency  []time.Duration // per answered order, from when it was due
	due      []time.Time     // by order number (index number-1), when the order was due
	failed   int
	firstErr string
}

// driveOrders sends n orders from the devices of tokens, open loop: device i's k-th order is due
// at start + (k×devices + i)/lanRate seconds, and is sent then, or as soon as the device's
// previous order is answered when the server is behind. Each device first opens its connection
// with GET /api/v1/orders?limit=1, untimed: the load measures a shop in steady state.
func driveOrders(b *testing.B, url string, tokens []string, n int) *orderLoad {
	load := &orderLoad{due: make([]time.Time, n+1)}
	clients := make([]*http.Client, len(tokens))
	for i, token := range tokens {
		clients[i] = &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
		defer clients[i].CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, url+"/api/v1/orders?limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := clients[i].Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var mu sync.Mutex
	start := time.Now().Add(100 * time.Millisecond)
	var wg sync.WaitGroup
	for i, token := range tokens {
		client := clients[i]
		wg.Go(func() {
			for k := 0; k*len(tokens)+i < n; k++ {
				due := start.Add(time.Duration(k*len(tokens)+i) * time.Second / lanRate)
				time.Sleep(time.Until(due))
				number, err := postOrder(client, url, token, fmt.Sprintf("%s-%d", token, k))
				took := time.Since(due)
				mu.Lock()
				if err != nil {
					if load.failed++; load.firstErr == "" {
						load.firstErr = err.Error()
					}
				} else {
					load.latency = append(load.latency, took)
					if number > 0 && number < int64(len(load.due)) {
						load.due[number] = due
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return load
}

// postOrder creates one order and returns its number.
func postOrder(client *http.Client, url, token, key string) (int64, error) {
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/orders", bytes.NewReader(lanOrderBody))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
	}
	return jsonNumber(body), nil
}

// jsonNumber reads the first "number" field of an order document without decoding all of it:
// the followers read 100,000 events a second between them.
func jsonNumber(doc []byte) int64 {
	const field = `"number":`
	i := bytes.Index(doc, []byte(field))
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range doc[i+len(field):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// followers are the devices following the event stream: when each saw each order's event.
type followers struct {
	arrived [][]int64 // per follower, by order number, Unix nanoseconds of the event (0: not yet)
	dups    atomic.Int64
	seen    atomic.Int64 // events seen, all followers together
	want    int64
	all     chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startFollowers opens one event stream per token (order.created events only) and returns once
// every stream is open.
func startFollowers(b *testing.B, url string, tokens []string, n int) *followers {
	ctx, cancel := context.WithCancel(context.Background())
	f := &followers{arrived: make([][]int64, len(tokens)), want: int64(n * len(tokens)), all: make(chan struct{}), cancel: cancel}
	b.Cleanup(f.stop)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: len(tokens)}}
	for i, token := range tokens {
		f.arrived[i] = make([]int64, n+1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/events?types=order.created", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("event stream: HTTP %d", resp.StatusCode)
		}
		f.wg.Go(func() { f.read(resp.Body, f.arrived[i]) })
	}
	return f
}

func (f *followers) read(body io.ReadCloser, arrived []int64) {
	defer body.Close()
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data: ")) {
			continue
		}
		now := time.Now().UnixNano()
		number := jsonNumber(line)
		if number <= 0 || number >= int64(len(arrived)) {
			continue
		}
		if arrived[number] != 0 {
			f.dups.Add(1)
			continue
		}
		arrived[number] = now
		if f.seen.Add(1) == f.want {
			close(f.all)
		}
	}
}

// wait returns once every follower saw every order, or after limit.
func (f *followers) wait(limit time.Duration) {
	select {
	case <-f.all:
	case <-time.After(limit):
	}
}

// stop closes the streams and waits for their readers.
func (f *followers) stop() {
	f.cancel()
	f.wg.Wait()
}

// deliveries counts the events no follower saw and those seen twice, and gives the latency of
// each one seen, from when its order was due. Call it after stop.
func (f *followers) deliveries(due []time.Time, n int) (missing, dups int64, lat []time.Duration) {
	lat = make([]time.Duration, 0, n*len(f.arrived))
	for _, arrived := range f.arrived {
		for number := 1; number <= n; number++ {
			if arrived[number] == 0 {
				missing++
				continue
			}
			lat = append(lat, time.Unix(0, arrived[number]).Sub(due[number]))
		}
	}
	return missing, f.dups.Load(), lat
}

// bareOrderServer is the baseline: net/http and one INSERT of the posted JSON in a transaction,
// on a WAL SQLite file with storeedge's synchronous setting and one writer connection.
func bareOrderServer(b *testing.B) *httptest.Server {
	path := filepath.Join(b.TempDir(), "bare.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE orders (number INTEGER PRIMARY KEY, key TEXT NOT NULL, doc TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet { // a device opening its connection
			w.WriteHeader(http.StatusOK)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tx, err := db.BeginTx(r.Context(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		res, err := tx.Exec(`INSERT INTO orders (key, doc) VALUES (?, ?)`, r.Header.Get("Idempotency-Key"), body)
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		number, _ := res.LastInsertId()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"order":{"number":%d}}`, number)
	})
	return httptest.NewServer(h)
}
