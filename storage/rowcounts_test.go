package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func TestCountTriggersMatchSchema(t *testing.T) {
	db := openTest(t)
	for c := range secondaryIndexes {
		for _, tr := range countTriggers(c) {
			var q string
			if err := db.w.QueryRow(`SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?`, tr.name).Scan(&q); err != nil {
				t.Fatalf("%s: trigger %s: %v", c, tr.name, err)
			}
			if q != tr.create {
				t.Errorf("%s: trigger %s is\n\t%s\nin the migrations, but the end of a bulk load creates\n\t%s", c, tr.name, q, tr.create)
			}
		}
	}
}

// countTriggersOf says how many of collection's count triggers the schema holds.
func countTriggersOf(t *testing.T, db *DB, collection string) int {
	t.Helper()
	n := 0
	for _, tr := range countTriggers(collection) {
		var found int
		if err := db.w.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?`, tr.name).Scan(&found); err != nil {
			t.Fatal(err)
		}
		n += found
	}
	return n
}

func wantRows(t *testing.T, db *DB, collection string, want int64, when string) {
	t.Helper()
	got, err := db.Count(context.Background(), collection)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("%s: %s counts %d live rows, want %d", when, collection, got, want)
	}
}

// A first sync loads an empty table without the count triggers, counts as it goes, survives a
// restart in the middle, and leaves the triggers and an exact count once it catches up. A bulk
// load of a table that holds rows keeps its triggers.
func TestFirstSyncLoadsWithoutCountTriggers(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	const P = cloudapi.Products
	more := cloudapi.PageEnd{Cursor: "c1", More: true, Remaining: 10}
	applyPage(t, db, P, more,
		product("P1", 1, "Bread", "Bakery", "4001"), product("P2", 1, "Milk", "Dairy", "4002"),
		del(P, "P3", 1), product("P1", 2, "Bread, sliced", "Bakery", "4001"))
	if n := countTriggersOf(t, db, P); n != 0 {
		t.Fatalf("%d count triggers during the first sync's load, want none", n)
	}
	// P1 twice: the load's count says 3 until it ends; the table holds 2.
	wantRows(t, db, P, 3, "first page")

	db.Close()
	if db, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	if n := countTriggersOf(t, db, P); n != 0 {
		t.Fatalf("%d count triggers after a restart in the middle of the load, want none", n)
	}
	wantRows(t, db, P, 2, "after the restart, counted once")
	applyPage(t, db, P, cloudapi.PageEnd{Cursor: "c2", More: true, Remaining: 5}, product("P4", 1, "Eggs", "Dairy", "4004"))
	wantRows(t, db, P, 3, "second page")
	applyPage(t, db, P, cloudapi.PageEnd{Cursor: "c3"}, product("P5", 1, "Jam", "Grocery", "4005"), del(P, "P2", 2))
	if n := countTriggersOf(t, db, P); n != 3 {
		t.Fatalf("%d count triggers once the load caught up, want 3", n)
	}
	wantRows(t, db, P, 3, "caught up") // P1, P4, P5
	applyPage(t, db, P, cloudapi.PageEnd{Cursor: "c4"}, del(P, "P4", 2), product("P6", 1, "Tea", "Grocery", "4006"), product("P2", 3, "Milk", "Dairy", "4002"))
	wantRows(t, db, P, 4, "a page after, counted by the triggers") // P1, P2, P5, P6

	// A large backlog on a table that holds rows: a bulk load with the triggers kept.
	applyPage(t, db, P, cloudapi.PageEnd{Cursor: "c5", More: true, Remaining: bulkThreshold}, product("P7", 1, "Oil", "Grocery", "4007"), product("P7", 2, "Oil", "Grocery", "4007"))
	if n := countTriggersOf(t, db, P); n != 3 {
		t.Fatalf("%d count triggers in a bulk load of a table holding rows, want 3", n)
	}
	wantRows(t, db, P, 5, "bulk load of a table holding rows")
	applyPage(t, db, P, cloudapi.PageEnd{Cursor: "c6"})
	wantRows(t, db, P, 5, "its end")
}

// A load that meets no item twice keeps its own count at the end instead of counting the table,
// in every collection a first sync loads in chunks; that count is exact, tombstones of items
// never held included. One that meets an item twice keeps the newer revision, and its count is
// taken from the table at the end.
func TestCleanFirstSyncKeepsItsOwnCount(t *testing.T) {
	item := func(c, id string, rev int64) cloudapi.Change {
		if c == cloudapi.Products {
			return product(id, rev, "Item "+id, "Grocery", "40"+id[1:])
		}
		return cloudapi.Change{Collection: c, ID: id, Op: cloudapi.OpUpsert, Rev: rev, Doc: []byte(fmt.Sprintf(`{"id":%q,"rev":%d}`, id, rev))}
	}
	for _, c := range []string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock, cloudapi.Media} {
		t.Run(c, func(t *testing.T) {
			db := openTest(t)
			applyPage(t, db, c, cloudapi.PageEnd{Cursor: "c1", More: true, Remaining: 3}, item(c, "P1", 1), del(c, "P2", 1), item(c, "P3", 1))
			if !db.countExact[c] {
				t.Fatal("a load of new items only does not take its count as exact")
			}
			applyPage(t, db, c, cloudapi.PageEnd{Cursor: "c2"}, item(c, "P4", 1), del(c, "P5", 1))
			if n := countTriggersOf(t, db, c); n != 3 {
				t.Fatalf("%d count triggers once the load caught up, want 3", n)
			}
			var kept int64
			if err := db.w.QueryRow(`SELECT live FROM row_counts WHERE collection = ?`, c).Scan(&kept); err != nil {
				t.Fatal(err)
			}
			if kept != 3 {
				t.Fatalf("row_counts holds %d live rows after the load, want 3", kept)
			}
			wantRows(t, db, c, 3, "caught up")

			// The same item twice in one chunk and again in the next page, an older revision
			// after a newer one.
			db = openTest(t)
			applyPage(t, db, c, cloudapi.PageEnd{Cursor: "c1", More: true, Remaining: 3},
				item(c, "P1", 1), item(c, "P2", 1), item(c, "P1", 3), item(c, "P1", 2))
			if db.countExact[c] {
				t.Fatal("a load that met an item twice takes its count as exact")
			}
			// Until the load catches up, an item met twice can count twice (P1's newer copy),
			// never one whose copy was older: between the 2 items the table holds and 3.
			if n, err := db.Count(context.Background(), c); err != nil || n < 2 || n > 3 {
				t.Fatalf("during the load, items met twice: %d live rows (%v), want 2 or 3", n, err)
			}
			applyPage(t, db, c, cloudapi.PageEnd{Cursor: "c2"}, item(c, "P2", 2), item(c, "P3", 1))
			wantRows(t, db, c, 3, "caught up after items met twice")
			for id, rev := range map[string]int64{"P1": 3, "P2": 2, "P3": 1} {
				it, err := db.Get(context.Background(), c, id)
				if err != nil {
					t.Fatalf("%s: %v", id, err)
				}
				if it.Rev != rev {
					t.Fatalf("%s holds rev %d, want %d", id, it.Rev, rev)
				}
			}
		})
	}
}
