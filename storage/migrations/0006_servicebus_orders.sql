-- Service Bus orders are deduplicated on the cloud's order id as well as on the message id: a
-- publisher that rebuilds a message on retry sends the same order under a new message id. Each
-- is remembered with a fingerprint of the order it carried, so that a message id or an order id
-- that comes back with a different order is told apart from a redelivery (and dead-lettered).
-- Rows from before this migration have no fingerprint (''): they only recognise duplicates.

ALTER TABLE servicebus_received ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';

-- The cloud's order ids stored, each with the shop's order made for it.
CREATE TABLE servicebus_orders (
    external_id TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- An order id stored twice before this migration keeps its first order.
INSERT OR IGNORE INTO servicebus_orders(external_id, order_id)
    SELECT external_id, min(id) FROM orders
    WHERE source = 'servicebus' AND external_id != ''
    GROUP BY external_id;
