-- A re-snapshot (the cloud forgot the cursor, so the feed starts again from an empty one)
-- replaces the collection. While it runs (resnapshot = 1) every id its pages mention is noted in
-- snapshot_seen, in the transaction of its page; the page that catches up deletes every live item
-- not noted, and forgets the notes, in its own transaction. A new re-snapshot starts with no
-- notes, so a kill at any point neither loses an item the cloud has nor keeps one it deleted.
ALTER TABLE feed_state ADD COLUMN resnapshot INTEGER NOT NULL DEFAULT 0;

CREATE TABLE snapshot_seen (
    collection TEXT NOT NULL,
    id         TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
