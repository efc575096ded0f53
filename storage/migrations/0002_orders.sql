-- Orders, from the LAN (devices) or from Service Bus (the cloud), with everything that must not
-- be lost about them: the idempotency keys that keep a retried create from making a second order,
-- the outbox of what the cloud still has to hear, the ledger of each order's life, and the event
-- log that devices follow over Server-Sent Events.

CREATE TABLE orders (
    id          TEXT PRIMARY KEY,            -- server-made, sortable by creation
    number      INTEGER NOT NULL UNIQUE,     -- short number shown to people, per shop
    source      TEXT NOT NULL,               -- lan | servicebus
    device_id   TEXT NOT NULL DEFAULT '',    -- the device that created it (lan)
    external_id TEXT NOT NULL DEFAULT '',    -- the cloud's id (servicebus)
    status      TEXT NOT NULL,
    test        INTEGER NOT NULL DEFAULT 0,  -- created while the shop was in test mode
    version     INTEGER NOT NULL DEFAULT 1,  -- grows with every change
    created_at  INTEGER NOT NULL,            -- unix milliseconds
    updated_at  INTEGER NOT NULL,
    doc         TEXT NOT NULL                -- the whole order as JSON
) WITHOUT ROWID;
CREATE INDEX orders_created ON orders(created_at, id);
CREATE INDEX orders_status ON orders(status, created_at);

-- A device's create request, remembered by its idempotency key.
CREATE TABLE order_idempotency (
    device_id    TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (device_id, key)
) WITHOUT ROWID;

-- Service Bus messages already stored, by message id: a redelivered message is completed again
-- without making a second order.
CREATE TABLE servicebus_received (
    message_id TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL,
    at         INTEGER NOT NULL
) WITHOUT ROWID;

-- What the cloud still has to hear, in the order it happened. state: pending | sent | rejected.
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL UNIQUE,        -- idempotency key sent to the cloud
    type        TEXT NOT NULL,
    order_id    TEXT NOT NULL DEFAULT '',
    at          INTEGER NOT NULL,
    data        TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    done_at     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox(state, seq);

-- Each order's life: received, stored, uploaded, rejected, status, pushed, exported, failures.
CREATE TABLE order_ledger (
    id       INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL,
    at       INTEGER NOT NULL,
    stage    TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '',
    error    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX order_ledger_order ON order_ledger(order_id, id);

-- Announcements to devices (Server-Sent Events). id is the event id a device resumes from.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    type     TEXT NOT NULL,
    order_id TEXT NOT NULL DEFAULT '',
    at       INTEGER NOT NULL,
    data     TEXT NOT NULL
);

-- What went to which back-office target: an order is exported to a target once.
CREATE TABLE order_exports (
    order_id TEXT NOT NULL,
    target   TEXT NOT NULL,               -- files | webhook
    at       INTEGER NOT NULL,
    detail   TEXT NOT NULL DEFAULT '',    -- file name or webhook answer
    PRIMARY KEY (order_id, target)
) WITHOUT ROWID;
