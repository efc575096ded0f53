-- Synced collections. Every table keeps the cloud revision (rev) that decides whether a change
-- is newer, and a local change sequence (seq) so devices can pull deltas with changes?since=.
-- A deleted item stays as a tombstone (deleted = 1, doc NULL) so the delta feed can report it and
-- a late, older upsert cannot bring it back.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- seq: last local change sequence. fts_stale: 1 while products_fts is behind products because a
-- bulk load skipped its upkeep; the page that ends the bulk load rebuilds it.
INSERT INTO meta(key, value) VALUES ('seq', 0), ('fts_stale', 0);

CREATE TABLE products (
    id       TEXT NOT NULL UNIQUE,
    rev      INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    deleted  INTEGER NOT NULL DEFAULT 0,
    name     TEXT NOT NULL DEFAULT '',
    brand    TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    doc      TEXT
);
CREATE INDEX products_seq ON products(seq);
CREATE INDEX products_category ON products(category, id) WHERE deleted = 0;

CREATE TABLE barcodes (
    code       TEXT PRIMARY KEY,
    product_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX barcodes_product ON barcodes(product_id);

-- Full-text search over the fields a shop assistant types. External content: the text lives in
-- products. The index is kept in step row by row by the storage code, except during a bulk load
-- (first sync of a large catalog), where it is rebuilt once at the end: row-by-row upkeep would
-- make a first sync of a million products several times slower.
CREATE VIRTUAL TABLE products_fts USING fts5(
    name, brand, category,
    content = 'products', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE prices (
    id      TEXT PRIMARY KEY,
    rev     INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    doc     TEXT
) WITHOUT ROWID;
CREATE INDEX prices_seq ON prices(seq);

CREATE TABLE stock (
    id      TEXT PRIMARY KEY,
    rev     INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    doc     TEXT
) WITHOUT ROWID;
CREATE INDEX stock_seq ON stock(seq);

CREATE TABLE media (
    id      TEXT PRIMARY KEY,
    rev     INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    doc     TEXT
) WITHOUT ROWID;
CREATE INDEX media_seq ON media(seq);

CREATE TABLE settings (
    id      TEXT PRIMARY KEY,
    rev     INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    doc     TEXT
) WITHOUT ROWID;
CREATE INDEX settings_seq ON settings(seq);

-- Feed position and health per collection. cursor moves only in the transaction that applies
-- the page it closes.
CREATE TABLE feed_state (
    collection    TEXT PRIMARY KEY,
    cursor        TEXT NOT NULL DEFAULT '',
    last_success  INTEGER NOT NULL DEFAULT 0, -- unix milliseconds of the last page committed
    remaining     INTEGER NOT NULL DEFAULT 0,
    pages         INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    last_error_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO feed_state(collection) VALUES ('products'), ('prices'), ('stock'), ('media'), ('settings');

-- Feed lines that broke the contract, with the reason. A later valid change of the same item
-- removes its entry.
CREATE TABLE quarantine (
    id         INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    item_id    TEXT NOT NULL DEFAULT '',
    rev        INTEGER NOT NULL DEFAULT 0,
    reason     TEXT NOT NULL,
    raw        TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX quarantine_item ON quarantine(collection, item_id);
