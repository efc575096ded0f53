package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// The kept counts (rows per collection, orders per status, the media cache's files and bytes) equal a count of the tables after
// every step of random work: pages of upserts and deletes (the same id twice in a page, deletes
// of ids never seen, stale revisions), bulk loads, re-snapshots that drop what the cloud forgot,
// a page that fails half way, a restart, orders created and moved on, media files stored and
// dropped.
func TestKeptCountsMatchTheTables(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { keptCountsCampaign(t, seed) })
	}
}

func keptCountsCampaign(t *testing.T, seed uint64) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	r := rand.New(rand.NewPCG(seed, 42))
	revs := map[string]int64{}
	nextRev := func(coll, id string) int64 {
		revs[coll+id] += 1 + int64(r.IntN(3))
		return revs[coll+id]
	}
	cursor := 0
	var orderIDs []string
	for step := range 60 {
		coll := []string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock}[r.IntN(3)]
		switch k := r.IntN(10); {
		case k == 0: // the cloud forgot the cursor: a snapshot of part of the catalog replaces it
			if err := db.ResetCursor(ctx, coll); err != nil {
				t.Fatal(err)
			}
			cursor++
			keep := randomChanges(r, coll, 20+r.IntN(20), false, nextRev)
			applyPage(t, db, coll, cloudapi.PageEnd{Cursor: "s" + strconv.Itoa(cursor), More: true, Remaining: 5}, keep[:len(keep)/2]...)
			applyPage(t, db, coll, cloudapi.PageEnd{Cursor: "s" + strconv.Itoa(cursor+1)}, keep[len(keep)/2:]...)
			cursor++
		case k == 1: // a page cut short by its context: nothing of it may count
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := db.ApplyPage(cctx, Page{Collection: coll, Changes: randomChanges(r, coll, 600, true, nextRev),
				End: cloudapi.PageEnd{Cursor: "x", Count: 600}}); err == nil {
				t.Fatal("a page applied with a cancelled context")
			}
		case k == 2: // a restart
			db.Close()
			if db, err = Open(ctx, path); err != nil {
				t.Fatal(err)
			}
		case k == 3:
			orderIDs = orderStep(t, db, r, orderIDs)
		case k == 4:
			mediaStep(t, db, r)
		default: // a page of changes, a bulk load now and then
			cursor++
			end := cloudapi.PageEnd{Cursor: "c" + strconv.Itoa(cursor)}
			if r.IntN(4) == 0 {
				end.More, end.Remaining = true, bulkThreshold
			}
			applyPage(t, db, coll, end, randomChanges(r, coll, 1+r.IntN(80), true, nextRev)...)
		}
		checkKeptCounts(t, db, fmt.Sprintf("step %d", step))
	}
}

// randomChanges makes n changes of ids drawn from a small range, so that they hit ids held,
// deleted and never seen; withDeletes adds deletions and repeats of an id within the page.
func randomChanges(r *rand.Rand, coll string, n int, withDeletes bool, nextRev func(coll, id string) int64) []cloudapi.Change {
	var out []cloudapi.Change
	for range n {
		id := fmt.Sprintf("P%03d", r.IntN(120))
		rev := nextRev(coll, id)
		if r.IntN(10) == 0 {
			rev -= 5 // stale: ignored
		}
		if withDeletes && r.IntN(4) == 0 {
			out = append(out, del(coll, id, rev))
			continue
		}
		if coll == cloudapi.Products {
			out = append(out, product(id, rev, "Item "+id, "Bakery", "400"+id))
		} else {
			out = append(out, price(id, rev, 100))
		}
	}
	return out
}

func orderStep(t *testing.T, db *DB, r *rand.Rand, ids []string) []string {
	t.Helper()
	ctx := context.Background()
	if len(ids) == 0 || r.IntN(2) == 0 {
		o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos"), IdempotencyKey: fmt.Sprint("k", len(ids)), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		return append(ids, o.ID)
	}
	id := ids[r.IntN(len(ids))]
	all := []string{orders.StatusNew, orders.StatusAccepted, orders.StatusPreparing, orders.StatusReady, orders.StatusCompleted, orders.StatusCancelled}
	next := all[r.IntN(len(all))]
	if _, _, err := db.UpdateOrder(ctx, id, func(o *orders.Order) error { o.Status = next; return nil }); err != nil {
		t.Fatal(err)
	}
	return ids
}

// mediaStep records or drops a cached media file, as the fetcher and the quota do.
func mediaStep(t *testing.T, db *DB, r *rand.Rand) {
	t.Helper()
	md5 := fmt.Sprintf("%032x", r.IntN(30))
	q, args := `INSERT INTO media_files(md5, size, stored_at) VALUES (?, ?, 0) ON CONFLICT(md5) DO NOTHING`, []any{md5, r.IntN(1 << 20)}
	if r.IntN(3) == 0 {
		q, args = `DELETE FROM media_files WHERE md5 = ?`, []any{md5}
	}
	if _, err := db.w.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatal(err)
	}
}

func checkKeptCounts(t *testing.T, db *DB, when string) {
	t.Helper()
	ctx := context.Background()
	var files, bytes int64
	if err := db.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(size), 0) FROM media_files`).Scan(&files, &bytes); err != nil {
		t.Fatal(err)
	}
	if kf, kb, err := db.MediaUsage(ctx); err != nil || kf != files || kb != bytes {
		t.Fatalf("%s: media usage kept %d files %d bytes (%v), the table holds %d files %d bytes", when, kf, kb, err, files, bytes)
	}
	for _, coll := range cloudapi.Collections {
		kept, err := db.Count(ctx, coll)
		if err != nil {
			t.Fatal(err)
		}
		var real int64
		if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM `+coll+` WHERE deleted = 0`).Scan(&real); err != nil {
			t.Fatal(err)
		}
		// During a first sync's bulk load, the count is the changes applied that were not
		// deletions (rowcounts.go): never below the table's, and exact again once the load ends.
		if loading := db.uncounted[coll]; kept != real && !(loading && kept > real) {
			t.Fatalf("%s: %s counts %d live rows, the table holds %d (first-sync load under way: %v)", when, coll, kept, real, loading)
		}
	}
	st, err := db.OrderStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT status, count(*) FROM orders GROUP BY status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	real := map[string]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		real[s] = n
	}
	if fmt.Sprint(real) != fmt.Sprint(st.ByStatus) {
		t.Fatalf("%s: orders by status kept %v, the table holds %v", when, st.ByStatus, real)
	}
}
