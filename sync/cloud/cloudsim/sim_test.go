package cloudsim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func exportAll(t *testing.T, s *Sim) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, coll := range cloudapi.Collections {
		var buf bytes.Buffer
		if err := s.Export(&buf, coll); err != nil {
			t.Fatal(err)
		}
		out[coll] = buf.Bytes()
	}
	return out
}

func TestDeterministicCatalog(t *testing.T) {
	a, b, c := New(Options{Seed: 7, Products: 500}), New(Options{Seed: 7, Products: 500}), New(Options{Seed: 8, Products: 500})
	m := Mutation{PriceChanges: 20, StockChanges: 20, Deletes: 5, Adds: 9, Renames: 7}
	ra, rb := a.Mutate(m), b.Mutate(m)
	if !reflect.DeepEqual(ra, rb) {
		t.Errorf("same seed, same mutation, different results:\n%v\n%v", ra, rb)
	}
	c.Mutate(m)
	ea, eb, ec := exportAll(t, a), exportAll(t, b), exportAll(t, c)
	for _, coll := range cloudapi.Collections {
		if !bytes.Equal(ea[coll], eb[coll]) {
			t.Errorf("%s: same seed gives different exports", coll)
		}
		if coll != cloudapi.Settings && bytes.Equal(ea[coll], ec[coll]) {
			t.Errorf("%s: seeds 7 and 8 give the same export", coll)
		}
	}
	if ra2 := a.Mutate(m); reflect.DeepEqual(ra2.Upserted, ra.Upserted) {
		t.Errorf("the second mutation repeats the first")
	}
}

// TestCatalogIsValidAndRealistic checks every generated document against the contract and the
// promises of the package: unique valid EAN-13s, media that exist, a spread of categories.
func TestCatalogIsValidAndRealistic(t *testing.T) {
	s := New(Options{Seed: 5, Products: 4000})
	s.Mutate(Mutation{PriceChanges: 500, StockChanges: 500, Renames: 500, Adds: 10})
	media := map[string]bool{}
	barcodes := map[string]string{}
	categories := map[string]bool{}
	names := map[string]bool{}
	promos := 0
	for _, coll := range cloudapi.Collections {
		var buf bytes.Buffer
		if err := s.Export(&buf, coll); err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(buf.String()) {
			var it exportItem
			if err := json.Unmarshal([]byte(line), &it); err != nil {
				t.Fatal(err)
			}
			if err := cloudapi.ValidateDoc(coll, it.ID, it.Doc); err != nil {
				t.Fatalf("%s %s: %v: %s", coll, it.ID, err, it.Doc)
			}
			switch coll {
			case cloudapi.Products:
				p, _ := cloudapi.ParseProduct(it.ID, it.Doc)
				if p.SKU == "" || p.Brand == "" || p.Description == "" || len(p.Media) != 1 || len(p.Attributes) < 2 {
					t.Fatalf("thin product %s", it.Doc)
				}
				if len(p.Barcodes) < 1 || len(p.Barcodes) > 2 {
					t.Fatalf("%s has %d barcodes", it.ID, len(p.Barcodes))
				}
				for _, bc := range p.Barcodes {
					if len(bc) != 13 || eanCheckDigit([]byte(bc[:12])) != bc[12] {
						t.Fatalf("%s: %q is not an EAN-13", it.ID, bc)
					}
					if other, dup := barcodes[bc]; dup {
						t.Fatalf("barcode %s on %s and %s", bc, other, it.ID)
					}
					barcodes[bc] = it.ID
				}
				categories[p.Category] = true
				names[p.Name] = true
				media[p.Media[0]] = media[p.Media[0]] || false
			case cloudapi.Prices:
				var p cloudapi.Price
				_ = json.Unmarshal(it.Doc, &p)
				if p.Currency != "EUR" || p.Amount <= 0 || (p.ListAmount != 0 && p.ListAmount <= p.Amount) {
					t.Fatalf("odd price %s", it.Doc)
				}
				if p.ListAmount != 0 {
					promos++
				}
			case cloudapi.Stock:
				var st cloudapi.StockLevel
				_ = json.Unmarshal(it.Doc, &st)
				if _, err := time.Parse(time.RFC3339, st.UpdatedAt); err != nil || st.Quantity < 0 || st.Reserved > st.Quantity {
					t.Fatalf("odd stock %s", it.Doc)
				}
			case cloudapi.Media:
				media[it.ID] = true
			}
		}
	}
	for id, exists := range media {
		if !exists {
			t.Errorf("a product refers to media %s, which does not exist", id)
		}
	}
	if len(categories) < 180 {
		t.Errorf("only %d categories used by 4000 products", len(categories))
	}
	if len(names) < 3000 {
		t.Errorf("only %d distinct names among 4000 products", len(names))
	}
	if promos < 300 || promos > 900 {
		t.Errorf("%d of 4010 prices are promotions", promos)
	}
}

func TestMutateClampsAndCounts(t *testing.T) {
	s := New(Options{Products: 10})
	res := s.Mutate(Mutation{Deletes: 25, PriceChanges: -4})
	if got := len(res.Deleted[cloudapi.Products]); got != 10 {
		t.Fatalf("deleted %d of 10 products", got)
	}
	if len(res.Upserted[cloudapi.Prices]) != 0 {
		t.Errorf("negative count changed prices")
	}
	res = s.Mutate(Mutation{PriceChanges: 3, Adds: 2})
	if got := res.Upserted[cloudapi.Products]; !reflect.DeepEqual(got, []string{"P0000011", "P0000012"}) {
		t.Errorf("adds %v", got)
	}
	if len(res.Upserted[cloudapi.Prices]) != 2 { // the two new prices; no live product to change
		t.Errorf("prices %v", res.Upserted[cloudapi.Prices])
	}
	st := s.Stats()
	if p := st.Collections[cloudapi.Products]; p.Live != 2 || p.Deleted != 10 || p.Changes != 12 {
		t.Errorf("product stats %+v", p)
	}
	if st.Mutations != 2 || st.Head != s.Head() {
		t.Errorf("stats %+v", st)
	}
}

func TestRunAppliesBackgroundChanges(t *testing.T) {
	s := New(Options{Products: 100})
	tick := make(chan time.Time)
	s.tick = tick
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	for range 3 {
		tick <- time.Time{}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if st := s.Stats(); st.Mutations != 3 || st.Collections[cloudapi.Prices].Changes == 0 {
		t.Errorf("after 3 ticks: %+v", st)
	}

	// Without an interval Run just waits for the end.
	idle := New(Options{Products: 1})
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- idle.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("idle Run: %v", err)
	}
}

func TestControlAPI(t *testing.T) {
	h := newHarness(t, Options{Products: 50})
	var res MutationResult
	if status := h.callJSON(http.MethodPost, "/_sim/mutate", Mutation{PriceChanges: 3, Deletes: 1}, &res); status != http.StatusOK {
		t.Fatalf("mutate: %d", status)
	}
	if len(res.Upserted[cloudapi.Prices]) != 3 || len(res.Deleted[cloudapi.Stock]) != 1 || res.Seq != 1 {
		t.Errorf("mutate result %+v", res)
	}
	for _, body := range []string{`{"price_changes":-1}`, `{"bogus":1}`, `[1]`, `{"adds":2000000}`} {
		status, hdr, b := h.call(http.MethodPost, "/_sim/mutate", []byte(body))
		if status != http.StatusBadRequest {
			t.Errorf("mutate %s: %d", body, status)
			continue
		}
		assertProblem(t, body, status, hdr, b)
	}
	for _, body := range []string{`{"error_rate":1.5}`, `{"latency_ms":-1}`, `{"cut_rate":0.1,"typo":1}`} {
		if status, _, _ := h.call(http.MethodPost, "/_sim/faults", []byte(body)); status != http.StatusBadRequest {
			t.Errorf("faults %s: %d", body, status)
		}
	}
	want := Faults{MalformedRate: 0.25, RetryAfterSeconds: 3}
	h.setFaults(want)
	var got Faults
	h.callJSON(http.MethodGet, "/_sim/faults", nil, &got)
	if got != want || h.sim.Faults() != want {
		t.Errorf("faults %+v, want %+v", got, want)
	}
	var st Stats
	h.callJSON(http.MethodGet, "/_sim/stats", nil, &st)
	if st.Mutations != 1 || st.Head != h.sim.Head() || st.Collections[cloudapi.Products].Live != 49 {
		t.Errorf("stats %+v", st)
	}
	if status, _, _ := h.call(http.MethodGet, "/_sim/export/orders", nil); status != http.StatusNotFound {
		t.Errorf("export of unknown collection: %d", status)
	}
}

func TestConfigAndHeartbeat(t *testing.T) {
	h := newHarness(t, Options{Products: 5, StoreID: "shop-042", StoreName: `Le "Bon" Coin`,
		ServiceBusNamespace: "sb.example", Flags: map[string]bool{"test_mode": true}})
	var cfg cloudapi.RemoteConfig
	if status := h.callJSON(http.MethodGet, "/v1/config", nil, &cfg); status != http.StatusOK {
		t.Fatalf("config: %d", status)
	}
	if cloudapi.Text(cfg.StoreID, 128) != "shop-042" || cloudapi.Text(cfg.Name, 128) != `Le "Bon" Coin` || cfg.ServiceBus.Queue != "orders-shop-042" ||
		cloudapi.Text(cfg.ServiceBus.Namespace, 128) != "sb.example" || string(cfg.HeartbeatSeconds) != "60" || string(cfg.Flags) != `{"test_mode":true}` {
		t.Errorf("config %+v", cfg)
	}
	if status, _, _ := h.call(http.MethodGet, "/_sim/heartbeat", nil); status != http.StatusNotFound {
		t.Errorf("heartbeat before any: %d", status)
	}
	hb := cloudapi.Heartbeat{ServerID: "edge-1", Version: "v0.1.0", WAN: "ok",
		Collections: map[string]cloudapi.CollectionState{"products": {Cursor: "c", Rows: 5}}}
	if status := h.callJSON(http.MethodPost, "/v1/heartbeat", hb, nil); status != http.StatusNoContent {
		t.Errorf("heartbeat: %d", status)
	}
	if status, _, _ := h.call(http.MethodPost, "/v1/heartbeat", []byte("{nope")); status != http.StatusBadRequest {
		t.Errorf("bad heartbeat: %d", status)
	}
	var rec HeartbeatRecord
	h.callJSON(http.MethodGet, "/_sim/heartbeat", nil, &rec)
	if !reflect.DeepEqual(rec.Heartbeat, hb) || rec.ReceivedAt.IsZero() {
		t.Errorf("last heartbeat %+v", rec)
	}
	// The settings feed carries the store name, escaped.
	rep := replica{}
	h.sync(cloudapi.Settings, "", 0, false, rep)
	if got := rep["store_name"].doc; got != `{"key":"store_name","value":"Le \"Bon\" Coin"}` {
		t.Errorf("store_name setting %s", got)
	}
}

// TestMillionProductsIsCheap checks that a full-size catalog costs tens of megabytes, not the
// gigabyte its documents would, and that its last page is served at once.
func TestMillionProductsIsCheap(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a million-product sim")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := New(Options{Products: 1_000_000})
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Errorf("a million-product sim holds %d MiB", grew>>20)
	}
	pg, err := s.page(cProducts, cursor{snapshot: true, asof: s.Head(), next: 999_995}, 1000, nil)
	if err != nil || len(pg.items) != 5 || pg.more {
		t.Fatalf("last page: %d items, more %v, err %v", len(pg.items), pg.more, err)
	}
	var buf bytes.Buffer
	if err := s.Export(&buf, cloudapi.Settings); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(s)
}
