package devices

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

// orderCursor is the meta key of the last event the order follower turned into commands.
const orderCursor = "devices_order_events"

const eventBatch = 500

// initOrderCursor starts the order follower at the end of the event log the first time, so that
// the orders of a shop upgraded from a version without push are not all pushed at once.
func (m *Manager) initOrderCursor(ctx context.Context) error {
	if _, ok, err := m.db.MetaValue(ctx, orderCursor); err != nil || ok {
		return err
	}
	last, err := m.db.LastEventID(ctx)
	if err != nil {
		return err
	}
	return m.db.EnqueueCommands(ctx, nil, &storage.Cursor{Name: orderCursor, Value: last})
}

// followOrders turns every new order (from the LAN or Service Bus alike: both land in the event
// log) into an order.new command for each device that handles orders. The commands and the
// follower's position are stored together, so each order is queued once, across restarts too.
func (m *Manager) followOrders(ctx context.Context) {
	followRetrying(ctx, backoff.New(time.Second, time.Minute), backoff.Sleep, m.followOrdersOnce, func(err error, wait time.Duration) {
		m.log.Warn("devices: cannot queue new orders for devices; will retry", slog.Any(keyError, err), slog.Duration("retry_in", wait))
	})
}

// followRetrying runs follow until ctx ends, waiting with b after each failure. A follower that
// did its work since its last failure (it calls progressed) starts the waits again from the
// shortest: an error long after the last one is retried within a second, not after the longest
// wait, which would hold back every new order's push that long.
func followRetrying(ctx context.Context, b *backoff.Backoff, sleep func(context.Context, time.Duration) error,
	follow func(ctx context.Context, progressed func()) error, failed func(err error, wait time.Duration)) {
	for {
		err := follow(ctx, b.Reset)
		if ctx.Err() != nil {
			return
		}
		wait := b.Next(0)
		failed(err, wait)
		if sleep(ctx, wait) != nil {
			return
		}
	}
}

func (m *Manager) followOrdersOnce(ctx context.Context, progressed func()) error {
	cursor, _, err := m.db.MetaValue(ctx, orderCursor)
	if err != nil {
		return err
	}
	for {
		changed := m.db.EventsChanged()
		events, err := m.db.EventsAfter(ctx, cursor, eventBatch)
		if err != nil {
			return err
		}
		if len(events) > 0 {
			var cmds []storage.Command
			for _, e := range events {
				if e.Type != orders.EventCreated {
					continue
				}
				ids := m.devicesWith(CapOrders)
				payload := orderPayload(e.Data)
				for _, id := range ids {
					cmds = append(cmds, m.newCommand(id, CmdOrderNew, payload, e.OrderID, m.now(), m.o.CommandTTL))
				}
			}
			cursor = events[len(events)-1].ID
			if err := m.enqueue(ctx, cmds, &storage.Cursor{Name: orderCursor, Value: cursor}); err != nil {
				return err
			}
		}
		progressed() // read, and what it read queued: a write that keeps failing still backs off
		if len(events) == eventBatch {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// devicesWith are the live devices that declared capability.
func (m *Manager) devicesWith(capability string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var ids []string
	for id, e := range m.devs {
		if e.dev.RevokedAt.IsZero() && slices.Contains(e.dev.Capabilities, capability) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// orderPayload is the order document, or only its id and number when the order is too large for
// a frame (the device then reads it with GET /api/v1/orders/{id}).
func orderPayload(doc json.RawMessage) json.RawMessage {
	if len(doc) <= MaxPayload {
		return doc
	}
	var o struct {
		ID     string `json:"id"`
		Number int64  `json:"number"`
	}
	json.Unmarshal(doc, &o)
	b, _ := json.Marshal(struct {
		ID        string `json:"id"`
		Number    int64  `json:"number"`
		Truncated bool   `json:"truncated"`
	}{o.ID, o.Number, true})
	return b
}
