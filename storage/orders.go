package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/storeedge/storeedge/orders"
)

// Outbox states.
const (
	OutboxPending  = "pending"
	OutboxSent     = "sent"
	OutboxRejected = "rejected"
)

// ErrIdempotencyConflict means an idempotency key was used again for a different request.
var ErrIdempotencyConflict = errors.New("storage: idempotency key already used for a different request")

// What a Service Bus message can clash with; a *ServiceBusConflict wraps one of them.
var (
	// ErrMessageIDReused: the message id already brought an order with another fingerprint.
	ErrMessageIDReused = errors.New("message id already used for a different order")
	// ErrOrderConflict: the cloud's order id was already stored with another fingerprint.
	ErrOrderConflict = errors.New("cloud order id already stored with other contents")
)

// ServiceBusConflict is a Service Bus order that CreateOrder refused because its message id or
// its cloud order id is already stored with a different order. Nothing was stored.
type ServiceBusConflict struct {
	Err   error        // ErrMessageIDReused or ErrOrderConflict
	Order orders.Order // the order stored first
}

func (e *ServiceBusConflict) Error() string {
	return fmt.Sprintf("%v (order %d, %s)", e.Err, e.Order.Number, e.Order.ExternalID)
}

func (e *ServiceBusConflict) Unwrap() error { return e.Err }

// NewOrder is an order to store, with what makes its creation idempotent.
type NewOrder struct {
	Order orders.Order // ID, Number, Version and times are set by CreateOrder
	// For a LAN order: the device's idempotency key and a hash of its request, so a retry gets
	// the same order and a different request under the same key is refused.
	IdempotencyKey string
	RequestHash    string
	// RequestHashBefore is the same request's hash as an earlier storeedge made it (a customer
	// of no fields hashed as sent); a key stored with it matches too. "" when it is RequestHash.
	RequestHashBefore string
	// For a Service Bus order: the message id and a fingerprint of the order it carries. A
	// redelivered message, or the same cloud order (ExternalID) under a new message id, makes no
	// second order; a known message id or cloud order id with another fingerprint is a
	// *ServiceBusConflict.
	MessageID   string
	Fingerprint string
	// FingerprintsBefore are the same order's fingerprints as earlier versions of storeedge made
	// them; an order stored with one of them matches too.
	FingerprintsBefore []string
	// Detail for the ledger's "received" entry (e.g. the Service Bus delivery count).
	ReceivedDetail string
}

// Event is an announcement to devices, in id order.
type Event struct {
	ID      int64           `json:"id"`
	Type    string          `json:"type"`
	OrderID string          `json:"order_id,omitempty"`
	At      time.Time       `json:"at"`
	Data    json.RawMessage `json:"data"`
}

// OutboxEntry is an event the cloud still has to acknowledge.
type OutboxEntry struct {
	Seq       int64           `json:"seq"`
	Key       string          `json:"key"`
	Type      string          `json:"type"`
	OrderID   string          `json:"order_id,omitempty"`
	At        time.Time       `json:"at"`
	Data      json.RawMessage `json:"data"`
	State     string          `json:"state"`
	Attempts  int64           `json:"attempts"`
	LastError string          `json:"last_error,omitempty"`
}

// CreateOrder stores a new order with its outbox entry, ledger entries and event, in one
// transaction. When the idempotency key, message id or cloud order id was seen before, it returns
// the order made then and created = false; a different request under a known idempotency key is
// ErrIdempotencyConflict, a different Service Bus order a *ServiceBusConflict.
func (db *DB) CreateOrder(ctx context.Context, n NewOrder) (o orders.Order, created bool, err error) {
	now := time.Now()
	n.Order.Customer = n.Order.Customer.Known() // from any source: "customer": {} is none
	if err := db.FlushFailed(); err != nil {
		// Once the disk failed a flush, no new order is written (whatever the source): it would
		// reach the followers and the cloud while its sender is told it failed. The orders of
		// the flush that failed were written and answered 500; a resend with the same key finds
		// them after a restart, if the disk kept them.
		return orders.Order{}, false, fmt.Errorf("storage: create order: %w", err)
	}
	var made []Event
	write := db.writeEvents
	if n.MessageID != "" {
		write = db.writeDurable // the message is completed, and so gone from the queue, once stored
	}
	err = write(ctx, &made, func(tx *sql.Tx) error {
		existing, err := madeBefore(ctx, tx, n)
		if err != nil {
			return err
		}
		if existing != "" {
			o, err = getOrder(ctx, tx, existing)
			return err
		}
		var doc []byte
		if o, doc, err = insertOrder(ctx, tx, n, now); err != nil {
			return err
		}
		if db.ids != nil {
			db.ids.need(&db.ids.marks.Orders, o.Number, orderNumberBlock)
		}
		detail := "from " + o.Source
		if n.ReceivedDetail != "" {
			detail += ", " + n.ReceivedDetail
		}
		if err := ledger(ctx, tx, o.ID, now, orders.StageReceived, detail, ""); err != nil {
			return err
		}
		if err := ledger(ctx, tx, o.ID, now, orders.StageStored, "", ""); err != nil {
			return err
		}
		if err := outbox(ctx, tx, "order:"+o.ID+":created", orders.EventCreated, o.ID, now, doc); err != nil {
			return err
		}
		created = true
		return event(ctx, tx, &made, orders.EventCreated, o.ID, now, doc)
	})
	if err != nil {
		return orders.Order{}, false, fmt.Errorf("storage: create order: %w", err)
	}
	if created {
		db.events.notify()
		db.outboxSig.notify()
	}
	if n.MessageID == "" {
		// The device is told the order is stored once it is on the disk, and then forgets it
		// (a replay of its request syncs again: its first answer may have failed here).
		if err := db.syncCommitted(ctx); err != nil {
			return orders.Order{}, false, fmt.Errorf("storage: create order: committed, not known to be on the disk: %w", err)
		}
	}
	return o, created, nil
}

// insertOrder gives a new order its id, number, version and times, and stores it with what
// makes its creation idempotent. It returns the order and its stored document.
func insertOrder(ctx context.Context, tx *sql.Tx, n NewOrder, now time.Time) (orders.Order, []byte, error) {
	o := n.Order
	id, err := uuid.NewV7()
	if err != nil {
		return orders.Order{}, nil, err
	}
	o.ID = id.String()
	// Above every number given out: a power cut that undid the last orders leaves the floor
	// raised beyond their numbers (ids.go).
	if err := tx.QueryRowContext(ctx, `SELECT max((SELECT coalesce(max(number), 0) FROM orders),
		(SELECT coalesce(max(value), 0) FROM meta WHERE key = 'order_number_floor')) + 1`).Scan(&o.Number); err != nil {
		return orders.Order{}, nil, err
	}
	o.Version = 1
	o.CreatedAt = time.UnixMilli(now.UnixMilli()).UTC()
	o.UpdatedAt = o.CreatedAt
	doc, err := json.Marshal(o)
	if err != nil {
		return orders.Order{}, nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders(id, number, source, device_id, external_id, status, test, version, created_at, updated_at, doc)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, o.ID, o.Number, o.Source, o.DeviceID, o.ExternalID, o.Status, o.Test, o.Version,
		now.UnixMilli(), now.UnixMilli(), string(doc)); err != nil {
		return orders.Order{}, nil, err
	}
	if n.IdempotencyKey != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO order_idempotency(device_id, key, request_hash, order_id, created_at) VALUES (?, ?, ?, ?, ?)`,
			o.DeviceID, n.IdempotencyKey, n.RequestHash, o.ID, now.UnixMilli()); err != nil {
			return orders.Order{}, nil, err
		}
	}
	if n.MessageID != "" {
		if err := rememberMessage(ctx, tx, n, o.ID, now); err != nil {
			return orders.Order{}, nil, err
		}
	}
	if n.MessageID != "" && o.ExternalID != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO servicebus_orders(external_id, order_id, fingerprint) VALUES (?, ?, ?)`,
			o.ExternalID, o.ID, n.Fingerprint); err != nil {
			return orders.Order{}, nil, err
		}
	}
	return o, doc, nil
}

// UpdateOrder changes an order with f inside a transaction. When f changed the order (its
// result differs), the version grows and the change goes to the outbox, the ledger and the event
// log. f's error aborts and is returned as is.
func (db *DB) UpdateOrder(ctx context.Context, id string, f func(*orders.Order) error) (o orders.Order, changed bool, err error) {
	now := time.Now()
	if err := db.FlushFailed(); err != nil {
		return orders.Order{}, false, fmt.Errorf("storage: update order: %w", err)
	}
	var made []Event
	err = db.writeEvents(ctx, &made, func(tx *sql.Tx) error {
		before, err := getOrder(ctx, tx, id)
		if err != nil {
			return err
		}
		o = before
		o.Lines = append([]orders.Line(nil), before.Lines...)
		if err := f(&o); err != nil {
			return err
		}
		a, _ := json.Marshal(before)
		b, _ := json.Marshal(o)
		if string(a) == string(b) {
			return nil
		}
		o.Version = before.Version + 1
		o.UpdatedAt = time.UnixMilli(now.UnixMilli()).UTC()
		doc, err := json.Marshal(o)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, version = ?, updated_at = ?, doc = ? WHERE id = ?`,
			o.Status, o.Version, now.UnixMilli(), string(doc), o.ID); err != nil {
			return err
		}
		detail := before.Status + " → " + o.Status
		if before.Status == o.Status {
			detail = "changed"
		}
		if err := ledger(ctx, tx, o.ID, now, orders.StageStatus, detail, ""); err != nil {
			return err
		}
		// The key names the version and when it was made: after a backup is restored the
		// versions made since are made again, with other content, and the cloud must not take
		// them for the ones it has.
		if err := outbox(ctx, tx, fmt.Sprintf("order:%s:v%d:%d", o.ID, o.Version, now.UnixMilli()), orders.EventUpdated, o.ID, now, doc); err != nil {
			return err
		}
		changed = true
		return event(ctx, tx, &made, orders.EventUpdated, o.ID, now, doc)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return orders.Order{}, false, err
		}
		return orders.Order{}, false, fmt.Errorf("storage: update order: %w", err)
	}
	if changed {
		db.events.notify()
		db.outboxSig.notify()
	}
	// On the disk before it is answered, also when unchanged: a retry after an answer that
	// failed here finds the change made.
	if err := db.syncCommitted(ctx); err != nil {
		return orders.Order{}, false, fmt.Errorf("storage: update order: committed, not known to be on the disk: %w", err)
	}
	return o, changed, nil
}

// madeBefore returns the id of the order an earlier request made for n, or "": the order of the
// same idempotency key (LAN), or of the same message id or cloud order id (Service Bus).
func madeBefore(ctx context.Context, tx *sql.Tx, n NewOrder) (string, error) {
	switch {
	case n.IdempotencyKey != "":
		return idempotentOrder(ctx, tx, n.Order.DeviceID, n.IdempotencyKey, n.RequestHash, n.RequestHashBefore)
	case n.MessageID != "":
		return serviceBusMadeBefore(ctx, tx, n)
	}
	return "", nil
}

// idempotentOrder is the id of the order device made with key, or "" when none; a key known
// with another request's hash (neither requestHash nor, when set, before) is
// ErrIdempotencyConflict.
func idempotentOrder(ctx context.Context, q querier, device, key, requestHash, before string) (string, error) {
	var existing, hash string
	err := q.QueryRowContext(ctx, `SELECT order_id, request_hash FROM order_idempotency WHERE device_id = ? AND key = ?`,
		device, key).Scan(&existing, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err == nil && hash != requestHash && (before == "" || hash != before) {
		return "", ErrIdempotencyConflict
	}
	return existing, err
}

// OrderByIdempotencyKey returns the order device made with key, when it made one, for a retry
// that cannot be priced again (CreateOrder finds the key itself otherwise). A key known with
// another request is ErrIdempotencyConflict. Like CreateOrder's, the order it returns is on the
// disk: the first answer may have failed before it was.
func (db *DB) OrderByIdempotencyKey(ctx context.Context, device, key, requestHash, before string) (orders.Order, bool, error) {
	id, err := idempotentOrder(ctx, db.r, device, key, requestHash, before)
	if err != nil || id == "" {
		return orders.Order{}, false, err
	}
	o, err := getOrder(ctx, db.r, id)
	if err != nil {
		return orders.Order{}, false, err
	}
	if err := db.syncCommitted(ctx); err != nil {
		return orders.Order{}, false, fmt.Errorf("storage: order %s: not known to be on the disk: %w", id, err)
	}
	return o, true, nil
}

// serviceBusMadeBefore looks a Service Bus order up by its message id, then by the cloud's order
// id. A message id or order id known with another fingerprint is a *ServiceBusConflict; an empty
// fingerprint (stored before fingerprints were kept) matches any. The same order under a new
// message id has that message id remembered too.
func serviceBusMadeBefore(ctx context.Context, tx *sql.Tx, n NewOrder) (string, error) {
	conflict := func(sentinel error, orderID string) error {
		o, err := getOrder(ctx, tx, orderID)
		if err != nil {
			return err
		}
		return &ServiceBusConflict{Err: sentinel, Order: o}
	}
	other := func(fp string) bool { // fp names another order than n's
		return fp != "" && fp != n.Fingerprint && !slices.Contains(n.FingerprintsBefore, fp)
	}
	var existing, fp string
	err := tx.QueryRowContext(ctx, `SELECT order_id, fingerprint FROM servicebus_received WHERE message_id = ?`, n.MessageID).Scan(&existing, &fp)
	switch {
	case err == nil && other(fp):
		return "", conflict(ErrMessageIDReused, existing)
	case !errors.Is(err, sql.ErrNoRows):
		return existing, err
	case n.Order.ExternalID == "":
		return "", nil
	}
	err = tx.QueryRowContext(ctx, `SELECT order_id, fingerprint FROM servicebus_orders WHERE external_id = ?`, n.Order.ExternalID).Scan(&existing, &fp)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", err
	case other(fp):
		return "", conflict(ErrOrderConflict, existing)
	}
	return existing, rememberMessage(ctx, tx, n, existing, time.Now())
}

func rememberMessage(ctx context.Context, tx *sql.Tx, n NewOrder, orderID string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO servicebus_received(message_id, order_id, at, fingerprint) VALUES (?, ?, ?, ?)`,
		n.MessageID, orderID, at.UnixMilli(), n.Fingerprint)
	return err
}

// write runs f in a write transaction of the one writer.
func (db *DB) write(ctx context.Context, f func(*sql.Tx) error) error {
	return db.writeEvents(ctx, nil, f)
}

// writeCount runs one statement in a write of its own and returns the rows it changed; what
// names it in the error ("prune commands").
func (db *DB) writeCount(ctx context.Context, what, query string, args ...any) (int64, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("storage: %s: %w", what, err)
	}
	return n, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getOrder(ctx context.Context, q querier, id string) (orders.Order, error) {
	var doc string
	err := q.QueryRowContext(ctx, `SELECT doc FROM orders WHERE id = ?`, id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return orders.Order{}, ErrNotFound
	}
	if err != nil {
		return orders.Order{}, err
	}
	var o orders.Order
	if err := json.Unmarshal([]byte(doc), &o); err != nil {
		return orders.Order{}, fmt.Errorf("order %s: stored document: %w", id, err)
	}
	return o, nil
}

func ledger(ctx context.Context, tx *sql.Tx, orderID string, at time.Time, stage, detail, errText string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO order_ledger(order_id, at, stage, detail, error) VALUES (?, ?, ?, ?, ?)`,
		orderID, at.UnixMilli(), stage, detail, errText)
	return err
}

// outbox queues an event for the cloud. An order's events reach the cloud in the order they
// happened: while an earlier event of the order is refused, a new one is held back beside it,
// unsent, until an admin retries them (RetryOutbox).
func outbox(ctx context.Context, tx *sql.Tx, key, typ, orderID string, at time.Time, data []byte) error {
	state, reason := OutboxPending, ""
	if orderID != "" {
		var refused sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT min(seq) FROM outbox WHERE order_id = ? AND state = 'rejected'`, orderID).Scan(&refused); err != nil {
			return err
		}
		if refused.Valid {
			state, reason = OutboxRejected, heldReason(refused.Int64)
			if err := ledger(ctx, tx, orderID, at, orders.StageUploadHeld, typ, reason); err != nil {
				return err
			}
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox(key, type, order_id, at, data, state, last_error) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		key, typ, orderID, at.UnixMilli(), string(data), state, reason)
	return err
}

// heldReason is the reason given for an event held back behind the refused event seq of its
// order.
func heldReason(seq int64) string {
	return fmt.Sprintf("held back, not sent: outbox entry %d, an earlier event of this order, was refused by the cloud; retry that one", seq)
}

// event logs an event and adds it to made, for the event tail once committed.
func event(ctx context.Context, tx *sql.Tx, made *[]Event, typ, orderID string, at time.Time, data []byte) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO events(type, order_id, at, data) VALUES (?, ?, ?, ?)`, typ, orderID, at.UnixMilli(), string(data))
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	*made = append(*made, Event{ID: id, Type: typ, OrderID: orderID, At: time.UnixMilli(at.UnixMilli()).UTC(), Data: data})
	return nil
}

// GetOrder returns an order by id, or ErrNotFound.
func (db *DB) GetOrder(ctx context.Context, id string) (orders.Order, error) {
	o, err := getOrder(ctx, db.r, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return orders.Order{}, fmt.Errorf("storage: get order: %w", err)
	}
	return o, err
}

// OrderFilter selects orders for ListOrders.
type OrderFilter struct {
	Status string // "" = any
	Before string // page backwards: orders stored before this order id ("" = newest)
	Limit  int
}

// ListOrders returns orders newest first: by number, which only grows. An order's id holds the
// clock's time when it was made, which a clock set back (a box without a battery-backed clock
// that starts before it syncs its time) would sort below older orders.
func (db *DB) ListOrders(ctx context.Context, f OrderFilter) ([]orders.Order, error) {
	// The query is built for the case, so that a page deep in the list starts at its place in
	// the number's index instead of scanning down to it.
	var where []string
	var args []any
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	if f.Before != "" {
		var n int64
		err := db.r.QueryRowContext(ctx, `SELECT number FROM orders WHERE id = ?`, f.Before).Scan(&n)
		switch {
		case err == nil:
			where, args = append(where, "number < ?"), append(args, n)
		case errors.Is(err, sql.ErrNoRows):
			// An order this database does not hold (a page's next kept across a restore from an
			// older backup): the orders made before it, as its id's time says.
			where, args = append(where, "id < ?"), append(args, f.Before)
		default:
			return nil, fmt.Errorf("storage: list orders: %w", err)
		}
	}
	q := `SELECT doc FROM orders`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY number DESC LIMIT ?`
	rows, err := db.r.QueryContext(ctx, q, append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("storage: list orders: %w", err)
	}
	defer rows.Close()
	out := []orders.Order{}
	for rows.Next() {
		var doc string
		var o orders.Order
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("storage: list orders: %w", err)
		}
		if err := json.Unmarshal([]byte(doc), &o); err != nil {
			return nil, fmt.Errorf("storage: list orders: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// OrderLedger returns an order's life, oldest first.
func (db *DB) OrderLedger(ctx context.Context, id string) ([]orders.LedgerEntry, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT at, stage, detail, error FROM order_ledger WHERE order_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("storage: order ledger: %w", err)
	}
	defer rows.Close()
	out := []orders.LedgerEntry{}
	for rows.Next() {
		var e orders.LedgerEntry
		var at int64
		if err := rows.Scan(&at, &e.Stage, &e.Detail, &e.Error); err != nil {
			return nil, fmt.Errorf("storage: order ledger: %w", err)
		}
		e.At = time.UnixMilli(at).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// AppendLedger records a step of an order's life that happened outside storage (pushed to
// devices, exported, a failure).
func (db *DB) AppendLedger(ctx context.Context, orderID, stage, detail, errText string) error {
	err := db.write(ctx, func(tx *sql.Tx) error { return ledger(ctx, tx, orderID, time.Now(), stage, detail, errText) })
	if err != nil {
		return fmt.Errorf("storage: append ledger: %w", err)
	}
	return nil
}

// PendingOutbox returns up to limit pending entries in the order they happened.
func (db *DB) PendingOutbox(ctx context.Context, limit int) ([]OutboxEntry, error) {
	return db.outboxEntries(ctx, `WHERE state = 'pending' ORDER BY seq LIMIT ?`, limit)
}

// OutboxState is the state of the entry with this key (OutboxPending, OutboxSent or
// OutboxRejected), "" when there is none.
func (db *DB) OutboxState(ctx context.Context, key string) (string, error) {
	var state string
	err := db.r.QueryRowContext(ctx, `SELECT state FROM outbox WHERE key = ?`, key).Scan(&state)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("storage: outbox entry: %w", err)
	}
	return state, nil
}

// RejectedOutbox returns up to limit entries the cloud refused, newest first.
func (db *DB) RejectedOutbox(ctx context.Context, limit int) ([]OutboxEntry, error) {
	return db.outboxEntries(ctx, `WHERE state = 'rejected' ORDER BY seq DESC LIMIT ?`, limit)
}

func (db *DB) outboxEntries(ctx context.Context, where string, args ...any) ([]OutboxEntry, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT seq, key, type, order_id, at, data, state, attempts, last_error FROM outbox `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: outbox: %w", err)
	}
	defer rows.Close()
	out := []OutboxEntry{}
	for rows.Next() {
		var e OutboxEntry
		var at int64
		var data string
		if err := rows.Scan(&e.Seq, &e.Key, &e.Type, &e.OrderID, &at, &data, &e.State, &e.Attempts, &e.LastError); err != nil {
			return nil, fmt.Errorf("storage: outbox: %w", err)
		}
		e.At = time.UnixMilli(at).UTC()
		e.Data = json.RawMessage(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// OutboxResult is what the cloud did with a batch: keys delivered (accepted or known already)
// and keys refused for good, with the reason.
type OutboxResult struct {
	Delivered []string
	Rejected  map[string]string
}

// CompleteOutbox records the cloud's answer to a batch in one transaction: delivered entries are
// done, rejected ones set aside with their reason; both are written to the orders' ledgers.
func (db *DB) CompleteOutbox(ctx context.Context, r OutboxResult) error {
	now := time.Now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		update, err := tx.PrepareContext(ctx, `UPDATE outbox SET state = ?, last_error = ?, done_at = ?, attempts = attempts + 1
			WHERE key = ? AND state = 'pending' RETURNING order_id, type, seq`)
		if err != nil {
			return err
		}
		defer update.Close()
		addLedger, err := tx.PrepareContext(ctx, `INSERT INTO order_ledger(order_id, at, stage, detail, error) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer addLedger.Close()
		hold, err := tx.PrepareContext(ctx, `UPDATE outbox SET state = 'rejected', last_error = ?, done_at = ?
			WHERE order_id = ? AND seq > ? AND state = 'pending' RETURNING type`)
		if err != nil {
			return err
		}
		defer hold.Close()
		type marked struct {
			orderID string
			seq     int64
		}
		mark := func(key, state, reason, stage string) (marked, error) {
			var m marked
			var typ string
			err := update.QueryRowContext(ctx, state, reason, now.UnixMilli(), key).Scan(&m.orderID, &typ, &m.seq)
			if errors.Is(err, sql.ErrNoRows) {
				return marked{}, nil // not pending any more: an answer to a batch sent twice
			}
			if err != nil || m.orderID == "" {
				return marked{}, err
			}
			_, err = addLedger.ExecContext(ctx, m.orderID, now.UnixMilli(), stage, typ, reason)
			return m, err
		}
		for _, k := range r.Delivered {
			if _, err := mark(k, OutboxSent, "", orders.StageUploaded); err != nil {
				return err
			}
		}
		// Every refused event first, each with the cloud's reason; then the events still
		// pending after the first refused one of their order are held back behind it.
		first := map[string]int64{}
		for k, reason := range r.Rejected {
			m, err := mark(k, OutboxRejected, reason, orders.StageUploadRejected)
			if err != nil {
				return err
			}
			if m.orderID != "" && (first[m.orderID] == 0 || m.seq < first[m.orderID]) {
				first[m.orderID] = m.seq
			}
		}
		for _, orderID := range slices.Sorted(maps.Keys(first)) {
			if err := holdLater(ctx, hold, addLedger, orderID, first[orderID], now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: complete outbox: %w", err)
	}
	return nil
}

// pruneChunk bounds the entries one write of PruneOutbox deletes, so that the writer is never
// held long by a large backlog delivered at once.
const pruneChunk = 5000

// qPruneOutbox deletes up to pruneChunk entries acknowledged before a time; it reads them by the
// index outbox_sent_done, not by reading every acknowledged entry (the planner, without
// statistics, prefers outbox_pending, whose state column matches as well).
const qPruneOutbox = `DELETE FROM outbox WHERE seq IN
	(SELECT seq FROM outbox INDEXED BY outbox_sent_done WHERE state = 'sent' AND done_at < ? LIMIT ?)`

// PruneOutbox deletes the entries the cloud acknowledged before before, and returns how many:
// their events are in the cloud, and the orders themselves stay. Pending and refused entries stay.
func (db *DB) PruneOutbox(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := db.write(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, qPruneOutbox, before.UnixMilli(), pruneChunk)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("storage: prune the outbox: %w", err)
		}
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

// FailOutbox records a failed attempt at sending these entries; they stay pending.
func (db *DB) FailOutbox(ctx context.Context, keys []string, reason string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE key = ? AND state = 'pending'`, reason, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: fail outbox: %w", err)
	}
	return nil
}

// holdLater holds back the pending events of an order that come after its refused event seq,
// so that they never reach the cloud before it, and notes it in the order's ledger.
func holdLater(ctx context.Context, hold, addLedger *sql.Stmt, orderID string, seq int64, now time.Time) error {
	held := heldReason(seq)
	rows, err := hold.QueryContext(ctx, held, now.UnixMilli(), orderID, seq)
	if err != nil {
		return err
	}
	var types []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		types = append(types, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range types {
		if _, err := addLedger.ExecContext(ctx, orderID, now.UnixMilli(), orders.StageUploadHeld, t, held); err != nil {
			return err
		}
	}
	return nil
}

// ErrEarlierRefused is RetryOutbox's answer for an event whose order has an earlier event
// still refused: that one must go first.
type ErrEarlierRefused struct{ Seq int64 }

func (e *ErrEarlierRefused) Error() string {
	return fmt.Sprintf("outbox entry %d, an earlier event of the same order, is still refused: retry it first (its later events go with it)", e.Seq)
}

// RetryOutbox puts a rejected entry back in the queue (an admin decided to try again), with the
// later refused events of its order, which go after it in the order they happened. It returns
// how many entries it queued again: 0 when seq is not a refused entry, and *ErrEarlierRefused
// when an earlier event of the order is still refused.
func (db *DB) RetryOutbox(ctx context.Context, seq int64) (int64, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		var orderID string
		err := tx.QueryRowContext(ctx, `SELECT order_id FROM outbox WHERE seq = ? AND state = 'rejected'`, seq).Scan(&orderID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if orderID == "" {
			n, err = requeue(ctx, tx, `seq = ?`, seq)
			return err
		}
		var earlier sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT min(seq) FROM outbox WHERE order_id = ? AND state = 'rejected' AND seq < ?`, orderID, seq).Scan(&earlier); err != nil {
			return err
		}
		if earlier.Valid {
			return &ErrEarlierRefused{Seq: earlier.Int64}
		}
		n, err = requeue(ctx, tx, `order_id = ? AND seq >= ?`, orderID, seq)
		return err
	})
	if err != nil {
		var e *ErrEarlierRefused
		if errors.As(err, &e) {
			return 0, err
		}
		return 0, fmt.Errorf("storage: retry outbox: %w", err)
	}
	if n > 0 {
		db.outboxSig.notify()
	}
	return n, nil
}

// requeue puts the refused entries matching where back in the queue as new (no attempts, no
// error), and notes it in their orders' ledgers.
func requeue(ctx context.Context, tx *sql.Tx, where string, args ...any) (int64, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE outbox SET state = 'pending', done_at = 0, attempts = 0, last_error = ''
		WHERE state = 'rejected' AND `+where+` RETURNING order_id, type`, args...)
	if err != nil {
		return 0, err
	}
	type requeued struct{ orderID, typ string }
	var done []requeued
	for rows.Next() {
		var r requeued
		if err := rows.Scan(&r.orderID, &r.typ); err != nil {
			rows.Close()
			return 0, err
		}
		done = append(done, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	now := time.Now()
	for _, r := range done {
		if r.orderID == "" {
			continue
		}
		if err := ledger(ctx, tx, r.orderID, now, orders.StageUploadRetry, r.typ, ""); err != nil {
			return 0, err
		}
	}
	return int64(len(done)), nil
}

// OrderStats is what status shows of orders.
type OrderStats struct {
	ByStatus        map[string]int64 `json:"by_status"`
	OutboxPending   int64            `json:"outbox_pending"`
	OutboxRejected  int64            `json:"outbox_rejected"`
	OldestPendingAt *time.Time       `json:"oldest_pending_at"`
}

const qOrderCounts = `SELECT status, n FROM order_counts WHERE n > 0`

// OrderStats counts orders by status and the outbox's backlog.
func (db *DB) OrderStats(ctx context.Context) (OrderStats, error) {
	st := OrderStats{ByStatus: map[string]int64{}}
	rows, err := db.stmt(qOrderCounts).QueryContext(ctx)
	if err != nil {
		return st, fmt.Errorf("storage: order stats: %w", err)
	}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return st, fmt.Errorf("storage: order stats: %w", err)
		}
		st.ByStatus[s] = n
	}
	rows.Close()
	st.OutboxPending, st.OutboxRejected, st.OldestPendingAt, err = db.OutboxBacklog(ctx)
	return st, err
}

// OrdersCreatedSince counts the orders created at or after since (the status page's "orders
// today"); the orders_created index makes it a range count.
func (db *DB) OrdersCreatedSince(ctx context.Context, since time.Time) (int64, error) {
	var n int64
	if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE created_at >= ?`, since.UnixMilli()).Scan(&n); err != nil {
		return 0, fmt.Errorf("storage: orders created since: %w", err)
	}
	return n, nil
}

const qOutboxBacklog = `SELECT (SELECT count(*) FROM outbox WHERE state = 'pending'), (SELECT count(*) FROM outbox WHERE state = 'rejected'),
	(SELECT min(at) FROM outbox WHERE state = 'pending')`

// OutboxBacklog counts the outbox entries waiting for the cloud and those it refused for good,
// and gives when the oldest waiting one happened (nil when none waits). Unlike OrderStats it
// does not read the orders, so it stays cheap for a check that runs every few seconds.
func (db *DB) OutboxBacklog(ctx context.Context) (pending, rejected int64, oldest *time.Time, err error) {
	var at sql.NullInt64
	err = db.stmt(qOutboxBacklog).QueryRowContext(ctx).Scan(&pending, &rejected, &at)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("storage: outbox backlog: %w", err)
	}
	if at.Valid {
		t := time.UnixMilli(at.Int64).UTC()
		oldest = &t
	}
	return pending, rejected, oldest, nil
}

// EventsAfter returns up to limit events with ids greater than after, in id order. The newest
// come from memory (see EventTailSize); their Data must not be changed.
func (db *DB) EventsAfter(ctx context.Context, after int64, limit int) ([]Event, error) {
	if events, ok := db.tail.after(after, limit); ok {
		return events, nil
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, type, order_id, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: events: %w", err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var at int64
		var data string
		if err := rows.Scan(&e.ID, &e.Type, &e.OrderID, &at, &data); err != nil {
			return nil, fmt.Errorf("storage: events: %w", err)
		}
		e.At = time.UnixMilli(at).UTC()
		e.Data = json.RawMessage(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventsChanged returns a channel that is closed when the next event is committed. A follower
// reads what it has not seen with EventsAfter, then waits on a fresh channel.
func (db *DB) EventsChanged() <-chan struct{} { return db.events.wait() }

// OutboxChanged returns a channel that is closed when the outbox next gets a pending entry.
func (db *DB) OutboxChanged() <-chan struct{} { return db.outboxSig.wait() }

// signal wakes every waiter once when something is committed.
type signal struct {
	mu sync.Mutex    // protects the field below
	ch chan struct{} // closed by the next notify
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// RecordMode stores whether the shop runs in production (rather than test) mode and returns what
// was stored before; known is false the first time. The daemon logs a change, so going to
// production leaves a trace.
func (db *DB) RecordMode(ctx context.Context, production bool) (wasProduction, known bool, err error) {
	v := int64(0)
	if production {
		v = 1
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		var old int64
		switch err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'production'`).Scan(&old); {
		case err == nil:
			wasProduction, known = old == 1, true
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('production', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, v)
		return err
	})
	if err != nil {
		return false, false, fmt.Errorf("storage: record mode: %w", err)
	}
	return wasProduction, known, nil
}
