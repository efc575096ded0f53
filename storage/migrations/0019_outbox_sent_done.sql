-- The hourly prune of the outbox (storage.PruneOutbox) finds the entries acknowledged long ago by
-- when they were: without this index it read every acknowledged entry of the week kept (a daily
-- stock import of 100,000 rows is 700,000 of them) while holding the writer.
CREATE INDEX outbox_sent_done ON outbox(done_at) WHERE state = 'sent';
