-- The shop's paired devices, the pairing codes an admin hands out, and the commands pushed to
-- devices over their push port. Nothing here holds a device's secret: only its SHA-256 (to
-- check API credentials) and the push key derived from it (to authenticate pushed commands).

CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,               -- tablet, kiosk, pos, signage, printer, other
    name         TEXT NOT NULL,
    app_version  TEXT NOT NULL DEFAULT '',
    address      TEXT NOT NULL DEFAULT '',    -- IP address the server dials for push
    push_port    INTEGER NOT NULL,
    capabilities TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings, e.g. ["orders","print"]
    secret_hash  BLOB NOT NULL,               -- SHA-256 of the device's secret
    push_key     BLOB NOT NULL,               -- HMAC key derived from the secret (docs/push-protocol.md)
    paired_at    INTEGER NOT NULL,            -- unix milliseconds
    paired_by    TEXT NOT NULL,               -- code | enrollment
    last_seen    INTEGER NOT NULL DEFAULT 0,
    revoked_at   INTEGER NOT NULL DEFAULT 0   -- 0: not revoked
) WITHOUT ROWID;

-- Codes are stored hashed too: a copy of the database does not pair a device.
CREATE TABLE pairing_codes (
    code_hash  BLOB PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NOT NULL DEFAULT 0,
    device_id  TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- One row per command and device, delivered in seq order per device.
-- state: queued | sent | acknowledged | expired | failed.
CREATE TABLE device_commands (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    device_id  TEXT NOT NULL,
    type       TEXT NOT NULL,
    payload    BLOB NOT NULL,
    order_id   TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    state      TEXT NOT NULL DEFAULT 'queued',
    attempts   INTEGER NOT NULL DEFAULT 0,
    sent_at    INTEGER NOT NULL DEFAULT 0,
    done_at    INTEGER NOT NULL DEFAULT 0,
    reason     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_commands_open ON device_commands(device_id, state, seq);
CREATE INDEX device_commands_expiry ON device_commands(state, expires_at);
