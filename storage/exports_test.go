package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func numbered(id, first, last int64) string { return fmt.Sprintf("b%d-%d-%d", id, first, last) }

var keySeq atomic.Int64

func createN(t *testing.T, db *DB, n int, test bool) []orders.Order {
	t.Helper()
	var out []orders.Order
	for i := 0; i < n; i++ {
		o := lanOrder("pos-1")
		o.Test = test
		stored, _, err := db.CreateOrder(context.Background(), NewOrder{Order: o, IdempotencyKey: fmt.Sprint(keySeq.Add(1)), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, stored)
	}
	return out
}

// TestExportBatches hands each order of the target's kind to one batch only, oldest first, and
// records the export in the ledger once the batch is done.
func TestExportBatches(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	files := ExportTarget{Name: ExportFiles}
	real := createN(t, db, 3, false)
	test := createN(t, db, 2, true)
	real = append(real, createN(t, db, 2, false)...)

	b1, ok, err := db.CreateExportBatch(ctx, files, "csv", 3, numbered)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if b1.File != fmt.Sprintf("b%d-1-3", b1.ID) || b1.Orders != 3 || b1.State != BatchOpen || b1.Format != "csv" {
		t.Fatalf("batch %+v", b1)
	}
	b2, ok, _ := db.CreateExportBatch(ctx, files, "csv", 3, numbered)
	if !ok || b2.File != fmt.Sprintf("b%d-6-7", b2.ID) || b2.Orders != 2 {
		t.Fatalf("second batch %+v (test orders 4 and 5 must be skipped)", b2)
	}
	if _, ok, _ := db.CreateExportBatch(ctx, files, "csv", 3, numbered); ok {
		t.Fatal("a third batch with no order left")
	}
	tb, ok, _ := db.CreateExportBatch(ctx, ExportTarget{Name: ExportTestFiles, Test: true}, "json", 10, numbered)
	if !ok || tb.Orders != 2 || tb.File != fmt.Sprintf("b%d-4-5", tb.ID) {
		t.Fatalf("test batch %+v", tb)
	}
	got, err := db.ExportBatchOrders(ctx, b1.ID)
	if err != nil || len(got) != 3 || got[0].ID != real[0].ID || got[2].ID != real[2].ID {
		t.Fatalf("batch orders %v %v", got, err)
	}
	unfinished, _ := db.UnfinishedExportBatches(ctx, ExportFiles)
	if len(unfinished) != 2 || unfinished[0].ID != b1.ID || unfinished[1].File != b2.File {
		t.Fatalf("unfinished %+v", unfinished)
	}

	if err := db.MarkExportBatchWritten(ctx, b1.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkExportBatchWritten(ctx, b1.ID); !errors.Is(err, ErrBatchState) {
		t.Fatalf("marked twice: %v", err)
	}
	for i := 0; i < 2; i++ { // finishing twice is harmless
		if err := db.FinishExportBatch(ctx, b1.ID); err != nil {
			t.Fatal(err)
		}
	}
	ledger, _ := db.OrderLedger(ctx, real[0].ID)
	exported := 0
	for _, e := range ledger {
		if e.Stage == orders.StageExported {
			exported++
			if e.Detail != "files: "+b1.File {
				t.Errorf("ledger detail %q", e.Detail)
			}
		}
	}
	if exported != 1 {
		t.Fatalf("%d exported entries", exported)
	}
	stats, err := db.ExportStats(ctx, []ExportTarget{files, {Name: ExportTestFiles, Test: true}})
	if err != nil {
		t.Fatal(err)
	}
	if stats[0] != (ExportStats{Target: ExportFiles, Exported: 3, Pending: 2, Batches: 1}) || stats[1] != (ExportStats{Target: ExportTestFiles, Pending: 2, Batches: 1}) {
		t.Fatalf("stats %+v", stats)
	}
	if got, _ := db.ExportBatchOrders(ctx, tb.ID); len(got) != 2 || got[0].ID != test[0].ID || got[1].ID != test[1].ID {
		t.Fatalf("test batch orders %+v", got)
	}
}

// TestExportFloor skips settled orders and still finds what a retry or a late order puts back.
func TestExportFloor(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	hook := ExportTarget{Name: ExportWebhook}
	orders := createN(t, db, 5, false)
	createN(t, db, 3, true)
	for _, o := range orders[:4] {
		if err := db.RecordExport(ctx, ExportWebhook, o.ID, "HTTP 200"); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.RecordExport(ctx, ExportWebhook, orders[0].ID, "HTTP 200"); err != nil {
		t.Fatal(err)
	}
	if err := db.FailExport(ctx, ExportWebhook, orders[4].ID, "HTTP 422: no"); err != nil {
		t.Fatal(err)
	}
	floor, _ := exportFloor(ctx, db.r, hook)
	if floor != 5 {
		t.Fatalf("floor %d, want 5 (orders 6-8 are test orders)", floor)
	}
	if p, _ := db.PendingExports(ctx, hook, 10); len(p) != 0 {
		t.Fatalf("pending %d", len(p))
	}
	if ok, err := db.RetryExport(ctx, ExportWebhook, orders[1].ID); ok || err != nil {
		t.Fatalf("retry of an exported order: %v %v", ok, err)
	}
	if ok, err := db.RetryExport(ctx, ExportWebhook, orders[4].ID); !ok || err != nil {
		t.Fatalf("retry: %v %v", ok, err)
	}
	more := createN(t, db, 1, false)
	p, _ := db.PendingExports(ctx, hook, 10)
	if len(p) != 2 || p[0].ID != orders[4].ID || p[1].ID != more[0].ID {
		t.Fatalf("pending after a retry %+v", p)
	}
	stats, _ := db.ExportStats(ctx, []ExportTarget{hook})
	if stats[0] != (ExportStats{Target: ExportWebhook, Exported: 4, Pending: 2}) {
		t.Fatalf("stats %+v", stats)
	}
	if err := db.RecordExport(ctx, ExportWebhook, "nope", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown order: %v", err)
	}
}

// TestStockImport records a file once, queues one outbox entry per row, and counts failures. A
// resend of the latest file is not applied again; a file identical to an earlier one, with
// another applied since, is: it sets the levels back, under keys of its own.
func TestStockImport(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	changed := db.OutboxChanged()
	levels := []StockLevel{{Row: 1, ProductID: "P1", Quantity: 5}, {Row: 2, ProductID: "P2", Quantity: -1}}
	imp, applied, err := db.RecordStockImport(ctx, "a.csv", "abc", 20, levels)
	if err != nil || !applied || imp.Rows != 2 || imp.State != ImportDone {
		t.Fatalf("%+v %v %v", imp, applied, err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("outbox worker not woken")
	}
	again, applied, err := db.RecordStockImport(ctx, "b.csv", "abc", 20, levels)
	if err != nil || applied || again.ID != imp.ID || again.Name != "a.csv" {
		t.Fatalf("same content again: %+v %v %v", again, applied, err)
	}
	if prev, ok, _ := db.StockImportedLast(ctx, "abc"); !ok || prev.ID != imp.ID {
		t.Fatal("StockImportedLast: the latest import is not found by its content")
	}
	pending, _ := db.PendingOutbox(ctx, 10)
	ms := strconv.FormatInt(imp.At.UnixMilli(), 10)
	if len(pending) != 2 || pending[0].Key != "stock:abc:"+ms+":1" || pending[1].Key != "stock:abc:"+ms+":2" || pending[0].Type != OutboxStockAdjusted {
		t.Fatalf("outbox %+v", pending)
	}
	var d map[string]any
	json.Unmarshal(pending[1].Data, &d)
	if d["product_id"] != "P2" || d["quantity"] != -1.0 || d["file"] != "a.csv" || d["sha256"] != "abc" || d["row"] != 2.0 {
		t.Fatalf("data %s", pending[1].Data)
	}
	db.RecordStockImportFailure(ctx, "bad.csv", "def", 3, "line 2: oops")
	if _, ok, _ := db.StockImportedLast(ctx, "def"); ok {
		t.Fatal("a failed import counts as imported")
	}
	st, err := db.StockImportStats(ctx)
	if err != nil || st.Done != 1 || st.Failed != 1 || st.LastFailed.Error != "line 2: oops" || st.LastDone.Name != "a.csv" {
		t.Fatalf("stats %+v %v", st, err)
	}

	// The levels change (P1 to 3), then go back: the third file is the first one's content.
	second, applied, err := db.RecordStockImport(ctx, "c.csv", "xyz", 20, []StockLevel{{Row: 1, ProductID: "P1", Quantity: 3}})
	if err != nil || !applied {
		t.Fatalf("a file of other content: %+v %v %v", second, applied, err)
	}
	if _, ok, _ := db.StockImportedLast(ctx, "abc"); ok {
		t.Fatal("StockImportedLast names the first content while another was applied after it")
	}
	third, applied, err := db.RecordStockImport(ctx, "d.csv", "abc", 20, levels)
	if err != nil || !applied || third.ID == imp.ID {
		t.Fatalf("the first content after another: %+v %v %v, want applied as a new import", third, applied, err)
	}
	if !third.At.After(second.At) || !second.At.After(imp.At) {
		t.Fatalf("import times %v, %v, %v: each must be later than the one before", imp.At, second.At, third.At)
	}
	pending, _ = db.PendingOutbox(ctx, 10)
	keys := map[string]bool{}
	for _, p := range pending {
		keys[p.Key] = true
	}
	if len(pending) != 5 || len(keys) != 5 || !keys[StockAdjustmentKey("abc", third.At, 1)] || !keys[StockAdjustmentKey("xyz", second.At, 1)] {
		t.Fatalf("outbox after the levels went back: %+v", pending)
	}
	if last := pending[len(pending)-1]; last.Key != StockAdjustmentKey("abc", third.At, 2) {
		t.Fatalf("the last event queued is %s, want the third file's second row", last.Key)
	}
}

// fiveOfP1 is the content of the stock file "a.csv" (sha256 "aaa") of the restore tests.
var fiveOfP1 = []StockLevel{{Row: 1, ProductID: "P1", Quantity: 5}}

// withFirstStockFile opens a database at a path of its own and applies "a.csv" to it.
func withFirstStockFile(t *testing.T) (*DB, string, StockImport) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	first, applied, err := db.RecordStockImport(context.Background(), "a.csv", "aaa", 10, fiveOfP1)
	if err != nil || !applied {
		t.Fatalf("first file: %v %v", applied, err)
	}
	return db, path, first
}

// TestStockImportAfterRestore checks that a restore does not make the next stock file a resend:
// the files applied after the backup was made are lost with the database it replaced, so the
// restored database's latest file, dropped again, sets the levels back and reaches the cloud
// under keys of its own. After that, the same file again is a resend as usual.
func TestStockImportAfterRestore(t *testing.T) {
	ctx := context.Background()
	db, path, first := withFirstStockFile(t)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(ctx, backup, Manifest{}); err != nil {
		t.Fatal(err)
	}
	if _, applied, err := db.RecordStockImport(ctx, "b.csv", "bbb", 10, []StockLevel{{Row: 1, ProductID: "P1", Quantity: 3}}); err != nil || !applied {
		t.Fatalf("second file: %v %v", applied, err)
	}
	db.Close()
	if _, err := Restore(ctx, backup, path); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if prev, resend, err := db.StockImportedLast(ctx, "aaa"); err != nil || resend {
		t.Fatalf("after the restore, the restored database's latest file (%+v) is taken for a resend (%v): the cloud would stay at 3", prev, err)
	}
	again, applied, err := db.RecordStockImport(ctx, "a-again.csv", "aaa", 10, fiveOfP1)
	if err != nil || !applied || again.ID == first.ID || !again.At.After(first.At) {
		t.Fatalf("the first file after the restore: %+v applied %v, %v; want a new import", again, applied, err)
	}
	pending, err := db.PendingOutbox(ctx, 10)
	if err != nil || len(pending) != 2 || pending[0].Key == pending[1].Key {
		t.Fatalf("outbox after the restore: %+v %v; want the first import's entry and the new one's, under two keys", pending, err)
	}
	if _, applied, err := db.RecordStockImport(ctx, "a-third.csv", "aaa", 10, fiveOfP1); err != nil || applied {
		t.Fatalf("the same file once more: applied %v, %v; want a resend", applied, err)
	}
}

// TestStockImportAfterGoingBack: a database put back by copying its file (not with restore) is
// found to have gone back in time at open, and the stock imports are marked as after a restore.
func TestStockImportAfterGoingBack(t *testing.T) {
	ctx := context.Background()
	db, path, _ := withFirstStockFile(t)
	db.Close()
	copyFile(t, path, path+".copy")

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "Tea", "Drinks"))
	if _, applied, err := db.RecordStockImport(ctx, "b.csv", "bbb", 10, []StockLevel{{Row: 1, ProductID: "P1", Quantity: 3}}); err != nil || !applied {
		t.Fatalf("second file: %v %v", applied, err)
	}
	db.Close()

	db = putBack(t, path+".copy", path)
	defer db.Close()
	// No device was given the changes lost: the delta feed keeps its epoch, the stock imports
	// are marked all the same.
	if db.EpochRenewed() != "" {
		t.Errorf("the epoch was renewed though no device was given a change past the copy: %s", db.EpochRenewed())
	}
	if _, resend, err := db.StockImportedLast(ctx, "aaa"); err != nil || resend {
		t.Fatalf("after going back, the latest file is taken for a resend (%v)", err)
	}
}
