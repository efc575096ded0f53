package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeedge/storeedge/orders"
)

func lanOrder(device string) orders.Order {
	return orders.Order{Source: orders.SourceLAN, DeviceID: device, Status: "new", Currency: "EUR",
		Lines: []orders.Line{{ProductID: "P1", Name: "Tea", Quantity: 2, UnitPrice: 250, LineTotal: 500}}, Total: 500}
}

func TestCreateOrderIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	changed := db.EventsChanged()
	o, created, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k1", RequestHash: "h1"})
	if err != nil || !created || o.Number != 1 || o.ID == "" || o.Version != 1 {
		t.Fatalf("first create: %+v %v %v", o, created, err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("event followers were not woken")
	}
	again, created, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k1", RequestHash: "h1"})
	if err != nil || created || again.ID != o.ID {
		t.Fatalf("retry: %+v %v %v", again, created, err)
	}
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k1", RequestHash: "other"}); !errors.Is(err, ErrIdempotencyConflict) {
		t.Fatalf("same key, other request: %v", err)
	}
	// The same key from another device is another order.
	other, created, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-2"), IdempotencyKey: "k1", RequestHash: "h1"})
	if err != nil || !created || other.Number != 2 {
		t.Fatalf("other device: %+v %v %v", other, created, err)
	}
	sb := orders.Order{Source: orders.SourceServiceBus, ExternalID: "web-77", Status: "new", Currency: "EUR"}
	a, created1, _ := db.CreateOrder(ctx, NewOrder{Order: sb, MessageID: "m-1"})
	b, created2, _ := db.CreateOrder(ctx, NewOrder{Order: sb, MessageID: "m-1"})
	if !created1 || created2 || a.ID != b.ID {
		t.Fatalf("redelivered message made a second order: %v %v", a.ID, b.ID)
	}
	pending, err := db.PendingOutbox(ctx, 10)
	if err != nil || len(pending) != 3 {
		t.Fatalf("outbox: %d entries, %v", len(pending), err)
	}
	events, _ := db.EventsAfter(ctx, 0, 10)
	if len(events) != 3 || events[0].OrderID != o.ID {
		t.Fatalf("events %+v", events)
	}
}

func TestUpdateOrderAndOutbox(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	o, _, _ := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k", RequestHash: "h"})
	u, changed, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { o.Status = "ready"; return nil })
	if err != nil || !changed || u.Version != 2 || u.Status != "ready" {
		t.Fatalf("update: %+v %v %v", u, changed, err)
	}
	if _, changed, _ := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { o.Status = "ready"; return nil }); changed {
		t.Fatal("a no-op update made a change")
	}
	if _, _, err := db.UpdateOrder(ctx, "nope", func(*orders.Order) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown order: %v", err)
	}
	pending, _ := db.PendingOutbox(ctx, 10)
	if len(pending) != 2 || pending[0].Type != "order.created" || pending[1].Type != "order.updated" {
		t.Fatalf("outbox %+v", pending)
	}
	if err := db.CompleteOutbox(ctx, OutboxResult{Delivered: []string{pending[0].Key}, Rejected: map[string]string{pending[1].Key: "unknown store"}}); err != nil {
		t.Fatal(err)
	}
	st, _ := db.OrderStats(ctx)
	if st.OutboxPending != 0 || st.OutboxRejected != 1 || st.ByStatus["ready"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	n, err := db.RetryOutbox(ctx, pending[1].Seq)
	if err != nil || n != 1 {
		t.Fatalf("retry: %v %v", n, err)
	}
	if st, _ := db.OrderStats(ctx); st.OutboxPending != 1 || st.OldestPendingAt == nil {
		t.Fatalf("after retry: %+v", st)
	}
	l, _ := db.OrderLedger(ctx, o.ID)
	var stages []string
	for _, e := range l {
		stages = append(stages, e.Stage)
	}
	want := "[received stored status uploaded upload_rejected upload_retry]"
	if got := fmt.Sprint(stages); got != want {
		t.Fatalf("ledger %s, want %s", got, want)
	}
}

// The hourly prune reads the entries acknowledged before its time by their index, not every
// acknowledged entry of the week kept, while it holds the writer.
func TestPruneOutboxReadsByTheIndex(t *testing.T) {
	db := openTest(t)
	if got := queryPlan(t, db, qPruneOutbox, 0, pruneChunk); !strings.Contains(got, "USING INDEX outbox_sent_done (done_at<?)") &&
		!strings.Contains(got, "USING COVERING INDEX outbox_sent_done (done_at<?)") {
		t.Fatalf("the prune's plan: %s", got)
	}
}

// queryPlan is SQLite's plan of query, its steps joined by "; ".
func queryPlan(t *testing.T, db *DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.w.Query(`EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}

// Pruning deletes the entries the cloud acknowledged before the time given, and only those: the
// pending and refused ones stay, and so does the order.
func TestPruneOutboxKeepsWhatIsNotDelivered(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	var keys []string
	for i := range 3 {
		if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint(i), RequestHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	pending, _ := db.PendingOutbox(ctx, 10)
	for _, e := range pending {
		keys = append(keys, e.Key)
	}
	if err := db.CompleteOutbox(ctx, OutboxResult{Delivered: keys[:1], Rejected: map[string]string{keys[1]: "unknown store"}}); err != nil {
		t.Fatal(err)
	}
	if n, err := db.PruneOutbox(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruning what was acknowledged over an hour ago: %d, %v; want none", n, err)
	}
	if n, err := db.PruneOutbox(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("pruning what was acknowledged until now: %d, %v; want the one delivered", n, err)
	}
	if state, err := db.OutboxState(ctx, keys[0]); err != nil || state != "" {
		t.Fatalf("the delivered entry is still there: %q (%v)", state, err)
	}
	if p, r, _, err := db.OutboxBacklog(ctx); err != nil || p != 1 || r != 1 {
		t.Fatalf("after pruning: %d pending, %d refused (%v); want 1 and 1", p, r, err)
	}
	if list, err := db.ListOrders(ctx, OrderFilter{Limit: 10}); err != nil || len(list) != 3 {
		t.Fatalf("after pruning: %d orders (%v), want 3", len(list), err)
	}
}

// Orders are listed newest first by the order they were stored in, not by their ids, which hold
// the clock's time: an order made after the clock was set back (a box that started before it
// synced its time) is still the newest, and paging from it goes on to the older ones.
func TestListOrdersNewestFirstWhenTheClockWentBack(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	var made []orders.Order
	for i := range 3 {
		o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint("k", i), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, o)
	}
	// The newest was made with the clock a year behind: its UUIDv7 sorts below the others.
	early := "01800000-0000-7000-8000-000000000000"
	if _, err := db.w.ExecContext(ctx, `UPDATE orders SET id = ?, doc = json_set(doc, '$.id', ?) WHERE id = ?`, early, early, made[2].ID); err != nil {
		t.Fatal(err)
	}
	list, err := db.ListOrders(ctx, OrderFilter{Limit: 2})
	if err != nil || len(list) != 2 || list[0].ID != early || list[1].ID != made[1].ID {
		t.Fatalf("first page %v (%v), want the order made last (%s), then %s", orderIDs(list), err, early, made[1].ID)
	}
	list, err = db.ListOrders(ctx, OrderFilter{Before: list[1].ID, Limit: 2})
	if err != nil || len(list) != 1 || list[0].ID != made[0].ID {
		t.Fatalf("next page %v (%v), want %s", orderIDs(list), err, made[0].ID)
	}
	// A page's next that this database does not hold (kept across a restore of an older
	// backup) goes on by the id's time, newest first, rather than ending the list.
	list, err = db.ListOrders(ctx, OrderFilter{Before: made[0].ID + "0", Status: "new", Limit: 5})
	if err != nil || len(list) != 2 || list[0].ID != early || list[1].ID != made[0].ID {
		t.Fatalf("page before an unknown id %v (%v), want %s then %s", orderIDs(list), err, early, made[0].ID)
	}
}

func orderIDs(list []orders.Order) []string {
	var ids []string
	for _, o := range list {
		ids = append(ids, o.ID)
	}
	return ids
}

func sbOrder(externalID string, total int64) orders.Order {
	return orders.Order{Source: orders.SourceServiceBus, ExternalID: externalID, Status: "new", Currency: "EUR", Total: total}
}

func TestServiceBusOrdersDeduplicateOnMessageAndOrderID(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	first, created, err := db.CreateOrder(ctx, NewOrder{Order: sbOrder("web-1", 500), MessageID: "m-1", Fingerprint: "a"})
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	for _, n := range []NewOrder{
		{Order: sbOrder("web-1", 500), MessageID: "m-1", Fingerprint: "a"}, // redelivery
		{Order: sbOrder("web-1", 500), MessageID: "m-2", Fingerprint: "a"}, // rebuilt message
		{Order: sbOrder("web-1", 500), MessageID: "m-2", Fingerprint: "a"}, // its redelivery
	} {
		o, created, err := db.CreateOrder(ctx, n)
		if err != nil || created || o.ID != first.ID {
			t.Fatalf("%s: %+v created=%v %v; want order %s again", n.MessageID, o, created, err, first.ID)
		}
	}
	for _, c := range []struct {
		n    NewOrder
		want error
	}{
		{NewOrder{Order: sbOrder("web-2", 900), MessageID: "m-2", Fingerprint: "b"}, ErrMessageIDReused},
		{NewOrder{Order: sbOrder("web-1", 750), MessageID: "m-3", Fingerprint: "c"}, ErrOrderConflict},
	} {
		_, _, err := db.CreateOrder(ctx, c.n)
		var conflict *ServiceBusConflict
		if !errors.Is(err, c.want) || !errors.As(err, &conflict) || conflict.Order.ID != first.ID {
			t.Fatalf("%s: %v; want %v naming order %s", c.n.MessageID, err, c.want, first.ID)
		}
	}
	// An order stored under the fingerprint an earlier storeedge made is the same order when the
	// message's fingerprint as written is that one.
	if o, created, err := db.CreateOrder(ctx, NewOrder{Order: sbOrder("web-1", 500), MessageID: "m-4", Fingerprint: "a2", FingerprintsBefore: []string{"a"}}); err != nil || created || o.ID != first.ID {
		t.Fatalf("web-1 with the earlier fingerprint as written: %+v created=%v %v", o, created, err)
	}
	// A refused message is not remembered: sent again with the order it should carry, it is one.
	if _, created, err := db.CreateOrder(ctx, NewOrder{Order: sbOrder("web-3", 100), MessageID: "m-3", Fingerprint: "d"}); err != nil || !created {
		t.Fatalf("m-3 with a new order: created=%v %v", created, err)
	}
	if list, _ := db.ListOrders(ctx, OrderFilter{Limit: 10}); len(list) != 2 {
		t.Fatalf("%d orders, want 2", len(list))
	}
}

// A database that stored the same cloud order twice before orders were deduplicated on the cloud's
// id upgrades, and keeps recognising that order by its first copy.
func TestServiceBusMigrationKeepsEarlierDuplicates(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	sort.Strings(names)
	for _, name := range names {
		if filepath.Base(name) >= "0006" {
			break
		}
		body, _ := migrations.ReadFile(name)
		if _, err := raw.ExecContext(ctx, string(body)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	_, err = raw.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
		INSERT INTO schema_migrations VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0);
		INSERT INTO orders(id, number, source, external_id, status, created_at, updated_at, doc) VALUES
			('o1', 1, 'servicebus', 'web-1', 'new', 0, 0, '{"id":"o1","number":1,"external_id":"web-1"}'),
			('o2', 2, 'servicebus', 'web-1', 'new', 0, 0, '{"id":"o2","number":2,"external_id":"web-1"}');
		INSERT INTO servicebus_received VALUES ('m-1', 'o1', 0), ('m-2', 'o2', 0);`)
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer db.Close()
	for _, id := range []string{"m-2", "m-9"} {
		o, created, err := db.CreateOrder(ctx, NewOrder{Order: sbOrder("web-1", 500), MessageID: id, Fingerprint: "f"})
		want := map[string]string{"m-2": "o2", "m-9": "o1"}[id]
		if err != nil || created || o.ID != want {
			t.Fatalf("%s after the upgrade: %+v created=%v %v; want %s", id, o, created, err, want)
		}
	}
}

// A durable write commits with synchronous FULL (the WAL synced before the commit returns), so
// a power cut right after cannot undo what was acknowledged on it; the writer then goes back to
// NORMAL for everything else, after a Service Bus order too. (That CreateOrder and
// RecordStockImport take writeDurable is not observed here: the connection's mode cannot be read
// from inside their transactions.)
func TestDurableWriteWaitsForTheDisk(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	const normal, full = 1, 2
	mode := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		t.Helper()
		var n int
		if err := q.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := mode(db.w); got != normal {
		t.Fatalf("at open: synchronous %d, want NORMAL", got)
	}
	var during int
	if err := db.writeDurable(ctx, nil, func(tx *sql.Tx) error { during = mode(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if during != full || mode(db.w) != normal {
		t.Fatalf("synchronous %d during a durable write and %d after, want FULL then NORMAL", during, mode(db.w))
	}
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), MessageID: "m-1", Fingerprint: "f"}); err != nil {
		t.Fatal(err)
	}
	if got := mode(db.w); got != normal {
		t.Fatalf("after a Service Bus order: synchronous %d, want NORMAL", got)
	}
}

// TestOrderUpdateKeysAfterRestore checks that an order update made after a backup was restored is
// a new event for the cloud: the restored database makes version 2 again, with other content than
// the version 2 the cloud received before the restore, and the two must not share a key.
func TestOrderUpdateKeysAfterRestore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	open := func() *DB {
		t.Helper()
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	lastKey := func(db *DB) string {
		t.Helper()
		pending, err := db.PendingOutbox(ctx, 10)
		if err != nil || len(pending) == 0 {
			t.Fatalf("outbox: %v %v", pending, err)
		}
		last := pending[len(pending)-1]
		if last.Type != orders.EventUpdated {
			t.Fatalf("last outbox entry %+v, want an order update", last)
		}
		return last.Key
	}
	db := open()
	o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	backup := filepath.Join(t.TempDir(), "backup.db")
	copyFile(t, path, backup)

	db = open()
	u, _, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { o.Status = "ready"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	before := lastKey(db)
	if want := fmt.Sprintf("order:%s:v2:%d", o.ID, u.UpdatedAt.UnixMilli()); before != want {
		t.Fatalf("update key %q, want %q", before, want)
	}
	db.Close()

	copyFile(t, backup, path)
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
	db = open()
	defer db.Close()
	again, _, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { o.Status = "cancelled"; return nil })
	if err != nil || again.Version != 2 {
		t.Fatalf("update after the restore: %+v %v", again, err)
	}
	if after := lastKey(db); after == before {
		t.Fatalf("version 2 after the restore has the key of version 2 before it (%s): the cloud would drop it as a duplicate", after)
	}
}

// A database from before held-back events may hold an order's events queued behind its refused
// one; the upgrade holds them back, as today's outbox would have, so that a retry does not send
// the order after its changes.
func TestUpgradeHoldsBackEventsBehindARefusedOne(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	all, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var before []migration
	for _, m := range all {
		if m.version < 16 {
			before = append(before, m)
		}
	}
	old, err := openOlder(ctx, path, before)
	if err != nil {
		t.Fatal(err)
	}
	_, err = old.w.ExecContext(ctx, `INSERT INTO outbox(seq, key, type, order_id, at, data, state, last_error) VALUES
		(1, 'order:o1:created', 'order.created', 'o1', 0, '{}', 'rejected', 'unknown product'),
		(2, 'order:o2:created', 'order.created', 'o2', 0, '{}', 'pending', ''),
		(3, 'order:o1:v2:5', 'order.updated', 'o1', 5, '{}', 'pending', ''),
		(4, 'stock:x:1:1', 'stock.adjusted', '', 6, '{}', 'pending', '')`)
	old.w.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer db.Close()
	pending, _ := db.PendingOutbox(ctx, 10)
	if len(pending) != 2 || pending[0].Seq != 2 || pending[1].Seq != 4 {
		t.Fatalf("pending after the upgrade %+v, want seqs 2 and 4", pending)
	}
	rejected, _ := db.RejectedOutbox(ctx, 10)
	if len(rejected) != 2 || rejected[0].Seq != 3 || rejected[0].LastError != heldReason(1) {
		t.Fatalf("set aside after the upgrade %+v, want seq 3 held back behind 1", rejected)
	}
	l, _ := db.OrderLedger(ctx, "o1")
	if len(l) != 1 || l[0].Stage != orders.StageUploadHeld || l[0].Detail != "order.updated" {
		t.Fatalf("o1's history %+v", l)
	}
	if n, err := db.RetryOutbox(ctx, 1); err != nil || n != 2 {
		t.Fatalf("retry: %d %v, want the creation and its change", n, err)
	}
}

// Two events of one order refused in one answer each keep the cloud's own reason: neither is
// taken for one held back behind the other.
func TestTwoRefusedEventsOfAnOrderKeepTheirReasons(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	o, _, _ := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k", RequestHash: "h"})
	if _, _, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { o.Status = "ready"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { o.Status = "collected"; return nil }); err != nil {
		t.Fatal(err)
	}
	p, _ := db.PendingOutbox(ctx, 10)
	if len(p) != 3 {
		t.Fatalf("outbox %+v", p)
	}
	// The last is refused first in the answer: the order of a map's keys is no order at all.
	if err := db.CompleteOutbox(ctx, OutboxResult{Rejected: map[string]string{p[2].Key: "reason 3", p[0].Key: "reason 1"}}); err != nil {
		t.Fatal(err)
	}
	rejected, _ := db.RejectedOutbox(ctx, 10)
	got := map[int64]string{}
	for _, e := range rejected {
		got[e.Seq] = e.LastError
	}
	if len(rejected) != 3 || got[p[0].Seq] != "reason 1" || got[p[2].Seq] != "reason 3" || got[p[1].Seq] != heldReason(p[0].Seq) {
		t.Fatalf("set aside %+v", rejected)
	}
	stages := map[string]int{}
	l, _ := db.OrderLedger(ctx, o.ID)
	for _, e := range l {
		stages[e.Stage]++
	}
	if stages[orders.StageUploadRejected] != 2 || stages[orders.StageUploadHeld] != 1 {
		t.Fatalf("ledger stages %v", stages)
	}
}

// A LAN order and a change of its status are answered once they are on the disk: the call
// returns after a flush of the WAL that ended with them committed (that it began after the commit
// is TestSharedFlushCoversEachCommitBeforeIt's), also for a replay of the request, priced again
// or not (its first answer may have failed at the flush). A Service Bus order is committed with
// synchronous FULL instead (TestDurableWriteWaitsForTheDisk).
func TestLANOrdersAreOnDiskWhenAnswered(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	var seen []string // at each flush of the WAL: the orders committed, as id@version
	testHookSyncedWAL = func(path string) {
		var s string
		err := db.r.QueryRowContext(ctx, `SELECT coalesce(group_concat(id || '@' || version, ' '), '') FROM (SELECT id, version FROM orders ORDER BY number)`).Scan(&s)
		if err != nil {
			t.Error(err)
		}
		seen = append(seen, s)
	}
	t.Cleanup(func() { testHookSyncedWAL = nil })
	lastFlush := func() string {
		if len(seen) == 0 {
			return "no flush"
		}
		return seen[len(seen)-1]
	}

	o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k1", RequestHash: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := o.ID + "@1"; lastFlush() != want {
		t.Fatalf("the order was answered after a flush that saw %q, want %q", lastFlush(), want)
	}
	flushes := len(seen)
	if _, created, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k1", RequestHash: "h1"}); err != nil || created {
		t.Fatalf("replay: %v, created %v", err, created)
	}
	if len(seen) != flushes+1 {
		t.Fatalf("a replay made %d flushes, want 1", len(seen)-flushes)
	}
	if again, found, err := db.OrderByIdempotencyKey(ctx, "pos-1", "k1", "h1", ""); err != nil || !found || again.ID != o.ID {
		t.Fatalf("replay that cannot be priced: %+v, %v, %v", again, found, err)
	}
	if len(seen) != flushes+2 {
		t.Fatalf("a replay that cannot be priced made %d flushes, want 1", len(seen)-flushes-1)
	}
	if _, _, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { return orders.Move(o, "accepted", "") }); err != nil {
		t.Fatal(err)
	}
	if want := o.ID + "@2"; lastFlush() != want {
		t.Fatalf("the change was answered after a flush that saw %q, want %q", lastFlush(), want)
	}
	flushes = len(seen)
	if _, changed, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { return orders.Move(o, "accepted", "") }); err != nil || changed {
		t.Fatalf("the same status again: %v, changed %v", err, changed)
	}
	if len(seen) != flushes+1 {
		t.Fatalf("the same status again made %d flushes, want 1", len(seen)-flushes)
	}
}

// Callers of the shared flush each return after a flush that began after their commit, however
// they interleave. A flush that could not start (its file not opened) is tried again for the next
// caller; one the disk failed fails every caller after it, since no later flush can say what the
// disk holds.
func TestSharedFlushCoversEachCommitBeforeIt(t *testing.T) {
	var f walFlush
	var committed atomic.Int64 // commits made, in order
	var mu sync.Mutex
	began := map[int64]int64{} // by flush number: the commits made when it began
	var fail atomic.Pointer[error]
	flush := func() error {
		mu.Lock()
		began[f.started.Load()] = committed.Load()
		mu.Unlock()
		runtime.Gosched()
		if err := fail.Load(); err != nil {
			return *err
		}
		return nil
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				mine := committed.Add(1)
				if err := f.wait(context.Background(), flush); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				covered := began[f.done.Load()]
				mu.Unlock()
				if covered < mine {
					t.Errorf("commit %d returned after a flush that began at commit %d", mine, covered)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d commits, %d flushes", committed.Load(), f.done.Load())

	setFail := func(err error) { fail.Store(&err) }
	setFail(fs.ErrPermission)
	if err := f.wait(context.Background(), flush); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("a flush that could not start: %v", err)
	}
	fail.Store(nil)
	before := f.started.Load()
	if err := f.wait(context.Background(), flush); err != nil || f.started.Load() != before+1 {
		t.Fatalf("after a flush that could not start: %v, %d flushes run, want 1", err, f.started.Load()-before)
	}
	setFail(&diskFlushError{errors.New("input/output error")})
	if err := f.wait(context.Background(), flush); err == nil || !strings.Contains(err.Error(), "repair the disk") {
		t.Fatalf("a flush the disk failed: %v", err)
	}
	fail.Store(nil)
	before = f.started.Load()
	for range 2 {
		if err := f.wait(context.Background(), flush); err == nil || !strings.Contains(err.Error(), "input/output error") {
			t.Fatalf("after a flush the disk failed: %v, want it again", err)
		}
	}
	if f.started.Load() != before {
		t.Fatalf("%d flushes run after the disk failed one: their success would say nothing", f.started.Load()-before)
	}
}
