-- The refused events of each order, to hold back its later events behind them: an order's events
-- reach the cloud in the order they happened.
CREATE INDEX outbox_rejected_order ON outbox(order_id, seq) WHERE state = 'rejected';
