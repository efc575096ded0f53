package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func openCached(t *testing.T, budget int64) *DB {
	t.Helper()
	db := openTest(t)
	if err := db.EnableReadCache(budget); err != nil {
		t.Fatal(err)
	}
	return db
}

// catalogChurn applies a random page of products: new ones, new revisions that move barcodes
// between products (the pool of codes is small), deletions and stale revisions.
func catalogChurn(t *testing.T, db *DB, r *rand.Rand, revs map[string]int64, page int) {
	t.Helper()
	var changes []cloudapi.Change
	for range 1 + r.IntN(8) {
		id := fmt.Sprintf("P%02d", r.IntN(30))
		rev := revs[id] + 1 + int64(r.IntN(2))
		switch r.IntN(5) {
		case 0:
			changes = append(changes, del(cloudapi.Products, id, rev))
		case 1:
			rev = max(revs[id]-1, 1) // stale: ignored
			changes = append(changes, product(id, rev, "stale", "X"))
			continue
		default:
			var codes []string
			for range r.IntN(3) {
				codes = append(codes, fmt.Sprintf("400%010d", r.IntN(20)))
			}
			changes = append(changes, product(id, rev, fmt.Sprintf("%s rev %d", id, rev), "C", codes...))
		}
		revs[id] = max(revs[id], rev)
	}
	apply(t, db, cloudapi.Products, fmt.Sprintf("c%d", page), changes...)
}

// checkAgainstSQLite compares every cached answer with the database's own.
func checkAgainstSQLite(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	same := func(what string, got Item, gotErr error, want Item, wantErr error) {
		t.Helper()
		if !errors.Is(gotErr, wantErr) && (gotErr == nil || wantErr == nil || gotErr.Error() != wantErr.Error()) {
			t.Fatalf("%s: cached error %v, database %v", what, gotErr, wantErr)
		}
		if got.ID != want.ID || got.Rev != want.Rev || got.Seq != want.Seq || string(got.Doc) != string(want.Doc) {
			t.Fatalf("%s: cached %s rev %d seq %d %s, database %s rev %d seq %d %s", what,
				got.ID, got.Rev, got.Seq, got.Doc, want.ID, want.Rev, want.Seq, want.Doc)
		}
	}
	// reused is a buffer as a caller reuses it: holding earlier bytes, with room to spare.
	reused := func() []byte { return append(make([]byte, 0, 4096), "earlier answer"...) }
	for i := range 30 {
		id := fmt.Sprintf("P%02d", i)
		want, wantErr := db.one(ctx, qGet(cloudapi.Products), id)
		got, gotErr := db.Get(ctx, cloudapi.Products, id)
		same("product "+id, got, gotErr, want, wantErr)
		got, gotErr = db.GetAppend(ctx, reused(), cloudapi.Products, id)
		same("product "+id+" into a reused buffer", got, gotErr, want, wantErr)
	}
	for i := range 20 {
		code := fmt.Sprintf("400%010d", i)
		want, wantErr := db.one(ctx, qProductByBarcode, code)
		got, gotErr := db.ProductByBarcode(ctx, code)
		same("barcode "+code, got, gotErr, want, wantErr)
		got, gotErr = db.ProductByBarcodeAppend(ctx, reused(), code)
		same("barcode "+code+" into a reused buffer", got, gotErr, want, wantErr)
	}
}

// Whatever the sequence of changes, lookups through the cache answer what SQLite answers: a
// changed, deleted or re-barcoded product is never served stale.
func TestReadCacheNeverStale(t *testing.T) {
	db := openCached(t, 1<<20)
	r := rand.New(rand.NewPCG(7, 7))
	revs := map[string]int64{}
	for page := range 120 {
		catalogChurn(t, db, r, revs, page)
		if page%50 == 0 {
			if _, _, err := db.WarmReadCache(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		checkAgainstSQLite(t, db) // twice: the first fills the cache, the second reads it
		checkAgainstSQLite(t, db)
	}
	if s, _ := db.ReadCacheStats(); s.Hits == 0 || s.Misses == 0 {
		t.Fatalf("stats %+v: the test did not exercise both paths", s)
	}
}

// Lookups racing with the writer may fill the cache with what they read; once the writer is
// done, nothing stale is left in it.
func TestReadCacheFillsRacingWrites(t *testing.T) {
	db := openCached(t, 1<<20)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 3))
	revs := map[string]int64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			rr := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				db.Get(ctx, cloudapi.Products, fmt.Sprintf("P%02d", rr.IntN(30)))
				db.ProductByBarcode(ctx, fmt.Sprintf("400%010d", rr.IntN(20)))
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := db.WarmReadCache(ctx); err != nil {
				panic(err)
			}
		}
	})
	for page := range 100 {
		catalogChurn(t, db, r, revs, page)
	}
	close(stop)
	wg.Wait()
	checkAgainstSQLite(t, db)
	checkAgainstSQLite(t, db)
}

// The warmer fills the cache at start, and again after a bulk load, without a lookup.
func TestReadCacheWarmer(t *testing.T) {
	db := openCached(t, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	warmed := db.warmDone.wait()
	go func() { done <- db.RunReadCacheWarmer(ctx, slog.New(slog.DiscardHandler)) }()
	waitWarm := func(ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case err := <-done:
			t.Fatalf("warmer stopped: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no warm pass in 10 s")
		}
	}
	waitWarm(warmed) // the pass at start, on an empty catalog
	warmed = db.warmDone.wait()
	var changes []cloudapi.Change
	for i := range 100 {
		changes = append(changes, product(fmt.Sprintf("P%03d", i), 1, "n", "C", fmt.Sprintf("500%010d", i)))
	}
	// A first sync is a bulk load; its last page ends it. The warm pass waits for the other
	// collections to catch up too.
	if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, Changes: changes, End: cloudapi.PageEnd{Cursor: "c1", Count: len(changes)}}); err != nil {
		t.Fatal(err)
	}
	if !db.warmWant.Load() || db.warmDue() {
		t.Fatalf("after the products: warm wanted %v, due %v; want wanted, not due", db.warmWant.Load(), db.warmDue())
	}
	for _, c := range cloudapi.Collections[1:] {
		apply(t, db, c, "c1")
	}
	waitWarm(warmed)
	if s, _ := db.ReadCacheStats(); s.Entries != 200 {
		t.Fatalf("after the bulk load the cache has %d entries; want 200 (100 products, 100 barcodes)", s.Entries)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("warmer returned %v, want context.Canceled", err)
	}
	misses := func() int64 { s, _ := db.ReadCacheStats(); return s.Misses }
	before := misses()
	if it, err := db.ProductByBarcode(ctx, "5000000000042"); err != nil || it.ID != "P042" {
		t.Fatalf("barcode lookup: %v %v", it.ID, err)
	}
	if misses() != before {
		t.Fatal("a warmed barcode went to the database")
	}
}

// A barcode is answered from memory once its product is cached, whether a lookup or the warm
// filled it, and a change of the product sends the next lookup to SQLite again.
func TestBarcodeLookupsFromMemory(t *testing.T) {
	db := openCached(t, 1<<20)
	ctx := context.Background()
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "one", "C", "4000000000001", "4000000000002"))
	hit := func(code, wantName string) bool {
		t.Helper()
		before, _ := db.ReadCacheStats()
		it, err := db.ProductByBarcode(ctx, code)
		if err != nil || it.ID != "P1" || !strings.Contains(string(it.Doc), wantName) {
			t.Fatalf("barcode %s = %s %s, %v; want P1 %q", code, it.ID, it.Doc, err, wantName)
		}
		after, _ := db.ReadCacheStats()
		return after.Hits > before.Hits
	}
	if hit("4000000000002", "one") {
		t.Fatal("the first lookup was answered from an empty cache")
	}
	if !hit("4000000000002", "one") {
		t.Fatal("the second lookup of a barcode read SQLite")
	}
	db.hot.Reset()
	if _, codes, err := db.WarmReadCache(ctx); err != nil || codes != 2 {
		t.Fatalf("warm cached %d barcodes, %v; want 2", codes, err)
	}
	if !hit("4000000000001", "one") {
		t.Fatal("a warmed barcode read SQLite")
	}
	// A barcode whose record is gone is read from SQLite once; that does not cost its product's
	// other barcodes their place.
	db.hot.Delete(hotKey(nil, hotBarcode, "4000000000002"))
	if hit("4000000000002", "one") {
		t.Fatal("a barcode whose record was dropped was answered from memory")
	}
	if !hit("4000000000001", "one") || !hit("4000000000002", "one") {
		t.Fatal("filling one barcode sent the product's other barcode to SQLite")
	}
	apply(t, db, cloudapi.Products, "c2", product("P1", 2, "uno", "C", "4000000000001"))
	if hit("4000000000001", "uno") {
		t.Fatal("the lookup after a change was answered from memory")
	}
	if !hit("4000000000001", "uno") {
		t.Fatal("the changed product's barcode was not cached again")
	}
}
