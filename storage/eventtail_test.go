package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/storeedge/storeedge/orders"
)

// The events served from memory are exactly those SQLite holds, from any cursor and with any
// limit, across trims of the tail and for a database opened again (whose tail starts empty).
func TestEventTailMatchesTheLog(t *testing.T) {
	t.Run("trimmed by count", func(t *testing.T) { testEventTail(t, 5, 1<<20) })
	t.Run("trimmed by bytes", func(t *testing.T) { testEventTail(t, 1000, 2000) })
}

func testEventTail(t *testing.T, size, bytes int) {
	ctx := context.Background()
	db := openTest(t)
	db.tail.size, db.tail.bytes = size, bytes
	for i := range 40 {
		o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint("k", i), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, _, err := db.UpdateOrder(ctx, o.ID, func(o *orders.Order) error { o.Status = "ready"; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		// A retry makes no event.
		if _, again, _ := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: fmt.Sprint("k", i), RequestHash: "h"}); again {
			t.Fatal("a retried order was created again")
		}
	}
	last, _ := db.LastEventID(ctx)
	if last != 40+14 {
		t.Fatalf("last event %d, want 54", last)
	}
	fromSQL := func(after int64, limit int) []Event {
		db.tail.mu.RLock()
		floor := db.tail.floor
		db.tail.mu.RUnlock()
		if after >= floor {
			// Read the log itself, bypassing the tail.
			db.tail.mu.Lock()
			saved := db.tail.floor
			db.tail.floor = last + 1
			db.tail.mu.Unlock()
			defer func() { db.tail.mu.Lock(); db.tail.floor = saved; db.tail.mu.Unlock() }()
		}
		es, err := db.EventsAfter(ctx, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	served := 0
	for after := int64(0); after <= last; after++ {
		for _, limit := range []int{1, 3, 500} {
			got, err := db.EventsAfter(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := db.tail.after(after, limit); ok {
				served++
			}
			if want := fromSQL(after, limit); !sameEvents(got, want) {
				t.Fatalf("after %d limit %d: got %d events, want %d", after, limit, len(got), len(want))
			}
		}
	}
	if served == 0 {
		t.Fatal("no read was served from memory")
	}
	if db.tail.floor == 0 {
		t.Fatal("the tail was never trimmed")
	}
	if got, _ := db.EventsAfter(ctx, last, 10); len(got) != 0 {
		t.Fatalf("%d events after the last", len(got))
	}
}

func sameEvents(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.ID != y.ID || x.Type != y.Type || x.OrderID != y.OrderID || !x.At.Equal(y.At) || !jsonEqual(x.Data, y.Data) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
