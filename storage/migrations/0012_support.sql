-- The support requests taken (docs/remote-support.md), so that a request captured and sent
-- again in another message is refused. A row is kept until the request would be refused as
-- expired anyway ("until": its expiry plus the clock skew allowed, in Unix milliseconds); seq is
-- the Service Bus sequence number of the message that brought it, which a redelivery of that
-- message keeps and a copy sent again does not.
CREATE TABLE support_requests (
    id          TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    until       INTEGER NOT NULL
) WITHOUT ROWID;
