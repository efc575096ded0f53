-- An order's events reach the cloud in the order they happened: while one is refused, the
-- order's later events are held back beside it (state rejected, last_error saying so) until an
-- admin retries it. The two indexes find an order's refused events and its pending ones.
CREATE INDEX outbox_rejected_order ON outbox(order_id, seq) WHERE state = 'rejected';
CREATE INDEX outbox_pending_order ON outbox(order_id, seq) WHERE state = 'pending';

-- Events queued before this version behind a refused event of their order are held back now,
-- with the reason storage.heldReason gives and a line in the order's history.
UPDATE outbox SET state = 'rejected', done_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000,
    last_error = 'held back, not sent: outbox entry ' ||
        (SELECT min(r.seq) FROM outbox r WHERE r.order_id = outbox.order_id AND r.state = 'rejected' AND r.seq < outbox.seq) ||
        ', an earlier event of this order, was refused by the cloud; retry that one'
WHERE state = 'pending' AND order_id != '' AND EXISTS
    (SELECT 1 FROM outbox r WHERE r.order_id = outbox.order_id AND r.state = 'rejected' AND r.seq < outbox.seq);
INSERT INTO order_ledger(order_id, at, stage, detail, error)
    SELECT order_id, done_at, 'upload_held', type, last_error FROM outbox
    WHERE state = 'rejected' AND last_error LIKE 'held back, not sent: outbox entry %' ORDER BY seq;
