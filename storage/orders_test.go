package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func lanOrder(device string) Order {
	return Order{Source: SourceLAN, DeviceID: device, Status: "new", Currency: "EUR",
		Lines: []OrderLine{{ProductID: "P1", Name: "Tea", Quantity: 2, UnitPrice: 250, LineTotal: 500}}, Total: 500}
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
	sb := Order{Source: SourceServiceBus, ExternalID: "web-77", Status: "new", Currency: "EUR"}
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
	u, changed, err := db.UpdateOrder(ctx, o.ID, func(o *Order) error { o.Status = "ready"; return nil })
	if err != nil || !changed || u.Version != 2 || u.Status != "ready" {
		t.Fatalf("update: %+v %v %v", u, changed, err)
	}
	if _, changed, _ := db.UpdateOrder(ctx, o.ID, func(o *Order) error { o.Status = "ready"; return nil }); changed {
		t.Fatal("a no-op update made a change")
	}
	if _, _, err := db.UpdateOrder(ctx, "nope", func(*Order) error { return nil }); !errors.Is(err, ErrNotFound) {
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
	ok, err := db.RetryOutbox(ctx, pending[1].Seq)
	if err != nil || !ok {
		t.Fatalf("retry: %v %v", ok, err)
	}
	if st, _ := db.OrderStats(ctx); st.OutboxPending != 1 || st.OldestPendingAt == nil {
		t.Fatalf("after retry: %+v", st)
	}
	l, _ := db.OrderLedger(ctx, o.ID)
	var stages []string
	for _, e := range l {
		stages = append(stages, e.Stage)
	}
	want := "[received stored status uploaded upload_rejected]"
	if got := fmt.Sprint(stages); got != want {
		t.Fatalf("ledger %s, want %s", got, want)
	}
}
