package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// applyPage applies one page with the given end, failing the test on error.
func applyPage(t *testing.T, db *DB, collection string, end cloudapi.PageEnd, changes ...cloudapi.Change) ApplyResult {
	t.Helper()
	end.Count = len(changes)
	res, err := db.ApplyPage(context.Background(), Page{Collection: collection, Changes: changes, End: end})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// liveIDs lists the ids a device can read from a collection.
func liveIDs(t *testing.T, db *DB, collection string) []string {
	t.Helper()
	items, err := db.List(context.Background(), collection, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids
}

// changedSince is what a device following the delta feed from since learns: each item's last op.
func changedSince(t *testing.T, db *DB, since int64) map[string]string {
	t.Helper()
	out := map[string]string{}
	changes, err := db.Changes(context.Background(), since, AnySeq, 10000, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		out[c.Collection+"/"+c.ID] = c.Op
	}
	return out
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	return out
}

// TestResnapshotReplacesTheCollection runs a re-snapshot that a restart interrupts twice and a
// second expired cursor starts again: the shop ends with exactly the last snapshot and the changes
// after it. Until then nothing is deleted; then every lookup (by id, barcode, search, through the
// read cache) and the device delta feed agree that what the snapshot lacked is gone.
func TestResnapshotReplacesTheCollection(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	open := func() *DB {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.EnableReadCache(1 << 20); err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	defer func() { db.Close() }()
	restart := func() {
		t.Helper()
		db.Close()
		db = open()
	}
	code := func(i int) string { return fmt.Sprintf("400%010d", i) }
	var catalog, prices []cloudapi.Change
	for i := 1; i <= 20; i++ {
		catalog = append(catalog, product(fmt.Sprintf("P%02d", i), int64(100+i), fmt.Sprintf("Oat drink %d", i), "Drinks", code(i)))
		prices = append(prices, price(fmt.Sprintf("P%02d", i), int64(200+i), 100))
	}
	applyPage(t, db, cloudapi.Products, cloudapi.PageEnd{Cursor: "d.1"}, catalog...)
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "d.1"}, prices...)
	if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, End: cloudapi.PageEnd{Cursor: "d.2", Count: 1},
		Malformed: []*cloudapi.MalformedError{{ID: "P21", Reason: "name: missing", Raw: []byte(`{"id":"P21"}`)}}}); err != nil {
		t.Fatal(err)
	}
	since := db.Seq()
	checkCacheAgainstSQLite(t, db, ids("P", 1, 22), code)

	// The cloud forgot the cursors. Its history was replaced: revisions start lower.
	for _, c := range []string{cloudapi.Products, cloudapi.Prices} {
		if err := db.ResetCursor(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	more := cloudapi.PageEnd{Cursor: "s.1", More: true, Remaining: 10}
	applyPage(t, db, cloudapi.Products, more,
		product("P01", 1, "Oat drink 1", "Drinks", code(1)),
		product("P02", 2, "Rice drink", "Drinks", code(2)),
		product("P03", 103, "Oat drink 3", "Drinks", code(3), code(15))) // same rev, takes P15's barcode
	restart()
	if st, _ := db.FeedState(cloudapi.Products); !st.Resnapshot {
		t.Fatal("a restart forgot the re-snapshot under way")
	}
	applyPage(t, db, cloudapi.Products, more, product("P09", 9, "Oat drink 9", "Drinks", code(9)), product("P10", 10, "Oat drink 10", "Drinks", code(10)))
	if got := liveIDs(t, db, cloudapi.Products); !slices.Equal(got, ids("P", 1, 20)) {
		t.Fatalf("before the snapshot completed the shop serves %v, want every product it held", got)
	}
	checkCacheAgainstSQLite(t, db, ids("P", 1, 22), code)

	// The snapshot's cursor expires too: a new snapshot, in which P09 and P10 are gone.
	if err := db.ResetCursor(ctx, cloudapi.Products); err != nil {
		t.Fatal(err)
	}
	applyPage(t, db, cloudapi.Products, more,
		product("P01", 1, "Oat drink 1", "Drinks", code(1)),
		product("P02", 2, "Rice drink", "Drinks", code(2)),
		product("P03", 103, "Oat drink 3", "Drinks", code(3), code(15)),
		product("P04", 4, "Oat drink 4", "Drinks", code(4)))
	restart()
	applyPage(t, db, cloudapi.Products, cloudapi.PageEnd{Cursor: "d.9"},
		product("P05", 105, "Oat drink 5", "Drinks", code(5)), // as held: not a change
		product("P22", 6, "Soy drink", "Drinks", code(22)),
		del(cloudapi.Products, "P04", 7), // deleted while the snapshot was read
		product("P01", 8, "Oat drink one", "Drinks", code(1)),
		product("P01", 1, "Oat drink 1", "Drinks", code(1))) // an older change again: ignored
	res := applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "d.9"}, price("P01", 1, 120), price("P02", 2, 100))
	if res.Removed != 18 {
		t.Errorf("prices re-snapshot removed %d, want 18", res.Removed)
	}

	wantLive := []string{"P01", "P02", "P03", "P05", "P22"}
	if got := liveIDs(t, db, cloudapi.Products); !slices.Equal(got, wantLive) {
		t.Errorf("products served after the re-snapshot: %v, want %v", got, wantLive)
	}
	if got := liveIDs(t, db, cloudapi.Prices); !slices.Equal(got, []string{"P01", "P02"}) {
		t.Errorf("prices served after the re-snapshot: %v", got)
	}
	if it, err := db.Get(ctx, cloudapi.Products, "P01"); err != nil || it.Rev != 8 || name(t, it) != "Oat drink one" {
		t.Errorf("P01: %+v %v, want rev 8 from the new history", it, err)
	}
	if it, err := db.Get(ctx, cloudapi.Prices, "P01"); err != nil || it.Rev != 1 {
		t.Errorf("price P01: %+v %v, want the snapshot's rev 1, lower than the one held", it, err)
	}
	if it, err := db.ProductByBarcode(ctx, code(15)); err != nil || it.ID != "P03" {
		t.Errorf("barcode of P15 taken by P03: %+v %v", it, err)
	}
	for _, c := range []int{4, 9, 12, 20} {
		if it, err := db.ProductByBarcode(ctx, code(c)); !errors.Is(err, ErrNotFound) {
			t.Errorf("barcode %s of a deleted product finds %s (%v)", code(c), it.ID, err)
		}
	}
	found, err := db.Search(ctx, "oat", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var foundIDs []string
	for _, it := range found {
		foundIDs = append(foundIDs, it.ID)
	}
	slices.Sort(foundIDs)
	if !slices.Equal(foundIDs, []string{"P01", "P03", "P05"}) {
		t.Errorf("search finds %v", foundIDs)
	}
	checkCacheAgainstSQLite(t, db, ids("P", 1, 22), code)
	if q, _ := db.Quarantine(ctx, cloudapi.Products, 10); len(q) != 0 {
		t.Errorf("quarantine of a product the cloud no longer has kept: %+v", q)
	}
	if st, _ := db.FeedState(cloudapi.Products); st.Resnapshot || st.Quarantined != 0 {
		t.Errorf("feed state after the re-snapshot: %+v", st)
	}

	// A device that read everything before sees exactly the differences.
	want := map[string]string{}
	for _, id := range []string{"P01", "P02", "P03", "P22"} {
		want["products/"+id] = cloudapi.OpUpsert
	}
	for _, id := range append([]string{"P04"}, ids("P", 6, 20)...) {
		want["products/"+id] = cloudapi.OpDelete
	}
	want["prices/P01"] = cloudapi.OpUpsert
	want["prices/P02"] = cloudapi.OpUpsert
	for _, id := range ids("P", 3, 20) {
		want["prices/"+id] = cloudapi.OpDelete
	}
	if got := changedSince(t, db, since); !maps.Equal(got, want) {
		t.Errorf("delta feed after the re-snapshot:\n%v\nwant\n%v", got, want)
	}
	restart()
	if err := db.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	if got := liveIDs(t, db, cloudapi.Products); !slices.Equal(got, wantLive) {
		t.Errorf("after a restart: %v", got)
	}
	var notes int
	if err := db.r.QueryRow(`SELECT count(*) FROM snapshot_seen`).Scan(&notes); err != nil || notes != 0 {
		t.Errorf("%d notes of the finished re-snapshots kept (%v)", notes, err)
	}
}

// checkCacheAgainstSQLite looks products up by id and by barcode through the read cache, twice
// (to fill it, then to read it), and compares each answer with the database's own.
func checkCacheAgainstSQLite(t *testing.T, db *DB, ids []string, code func(int) string) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		for _, id := range ids {
			want, wantErr := db.one(ctx, qGet(cloudapi.Products), id)
			got, gotErr := db.Get(ctx, cloudapi.Products, id)
			if !errors.Is(gotErr, wantErr) || got.Rev != want.Rev || got.Seq != want.Seq || string(got.Doc) != string(want.Doc) {
				t.Fatalf("product %s: cached %+v %v, database %+v %v", id, got, gotErr, want, wantErr)
			}
		}
		for i := 1; i <= 22; i++ {
			want, wantErr := db.one(ctx, qProductByBarcode, code(i))
			got, gotErr := db.ProductByBarcode(ctx, code(i))
			if !errors.Is(gotErr, wantErr) || got.ID != want.ID || got.Rev != want.Rev {
				t.Fatalf("barcode %s: cached %+v %v, database %+v %v", code(i), got, gotErr, want, wantErr)
			}
		}
	}
}

// benchmarkReapply applies again, as pages of 1,000, a catalog of 100,000 products the shop
// already holds: as a re-snapshot when resnapshot is set, else as plain pages whose changes are
// all ignored (what a re-snapshot cost before it replaced the collection), the baseline.
func benchmarkReapply(b *testing.B, resnapshot bool) {
	ctx := context.Background()
	db := openTest(b)
	const total, page = 100000, 1000
	pages := make([][]cloudapi.Change, 0, total/page)
	for start := 0; start < total; start += page {
		changes := make([]cloudapi.Change, page)
		for j := range changes {
			n := start + j + 1
			id := fmt.Sprintf("P%07d", n)
			changes[j] = product(id, int64(n), "Organic dark chocolate "+id, fmt.Sprintf("Sweets/Chocolate %d", n%200), fmt.Sprintf("4%012d", n))
		}
		pages = append(pages, changes)
	}
	load := func() {
		for i, changes := range pages {
			end := cloudapi.PageEnd{Cursor: "c", Count: page, More: i < len(pages)-1, Remaining: int64(total - (i+1)*page)}
			if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, Changes: changes, End: end}); err != nil {
				b.Fatal(err)
			}
		}
	}
	load()
	b.ResetTimer()
	for range b.N {
		if resnapshot {
			if err := db.ResetCursor(ctx, cloudapi.Products); err != nil {
				b.Fatal(err)
			}
		}
		load()
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkResnapshotUnchanged measures a re-snapshot of 100,000 products that did not change.
func BenchmarkResnapshotUnchanged(b *testing.B) { benchmarkReapply(b, true) }

// BenchmarkReapplyUnchanged is its baseline: the same pages applied again, without replacing.
func BenchmarkReapplyUnchanged(b *testing.B) { benchmarkReapply(b, false) }

// A malformed line that names no item, in a re-snapshot, could be any item's: at its end the
// re-snapshot deletes nothing, rather than an item the cloud still has; the next one, without
// such a line, deletes what the cloud no longer has.
func TestResnapshotWithAnUnnamedMalformedLineDeletesNothing(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var catalog []cloudapi.Change
	for i := 1; i <= 5; i++ {
		catalog = append(catalog, price(fmt.Sprintf("P%02d", i), int64(100+i), 100))
	}
	applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "d.1"}, catalog...)
	if err := db.ResetCursor(ctx, cloudapi.Prices); err != nil {
		t.Fatal(err)
	}
	// P01 comes; P03's line is not JSON and names no item, beside a line whose id is too long
	// (it could have been read from another key than P04's); then, on the last page, P02; P04
	// and P05 are gone.
	if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Prices, Changes: catalog[:1], End: cloudapi.PageEnd{Cursor: "d.2", Count: 3, More: true},
		Malformed: []*cloudapi.MalformedError{{Reason: "not a JSON object", Raw: []byte(`{"collection":"prices","id":`)},
			{Reason: "id longer than 128 bytes", Raw: []byte(`{"collection":"prices","id":"xxxxxxxx`)}}}); err != nil {
		t.Fatal(err)
	}
	res := applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "d.3"}, catalog[1])
	if !res.KeptUnseen || res.Removed != 0 {
		t.Errorf("re-snapshot with an unnamed malformed line: kept %v, removed %d; want kept, none removed", res.KeptUnseen, res.Removed)
	}
	if st, _ := db.FeedState(cloudapi.Prices); st.Quarantined != 2 {
		t.Errorf("%d lines in quarantine, want the two without an id", st.Quarantined)
	}
	if got := liveIDs(t, db, cloudapi.Prices); !slices.Equal(got, ids("P", 1, 5)) {
		t.Errorf("after it the shop serves %v, want every price it held", got)
	}
	if st, _ := db.FeedState(cloudapi.Prices); st.Resnapshot {
		t.Error("the re-snapshot did not end")
	}
	// The next re-snapshot is clean: what the cloud no longer has goes.
	if err := db.ResetCursor(ctx, cloudapi.Prices); err != nil {
		t.Fatal(err)
	}
	res = applyPage(t, db, cloudapi.Prices, cloudapi.PageEnd{Cursor: "d.4"}, catalog[:3]...)
	if res.KeptUnseen || res.Removed != 2 {
		t.Errorf("a clean re-snapshot: kept %v, removed %d; want 2 removed", res.KeptUnseen, res.Removed)
	}
	if st, _ := db.FeedState(cloudapi.Prices); st.Quarantined != 0 {
		t.Errorf("%d lines in quarantine after a clean re-snapshot, want none: the unnamed line is no line of it", st.Quarantined)
	}
	if got := liveIDs(t, db, cloudapi.Prices); !slices.Equal(got, ids("P", 1, 3)) {
		t.Errorf("after the clean re-snapshot the shop serves %v", got)
	}
}
