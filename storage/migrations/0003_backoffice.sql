-- The exchange with the shop's back office (ERP): which order went to which export target and
-- in which file, the files being written, and the stock files imported.

-- order_exports (0002) gets a state. A row, whatever its state, keeps the order from being
-- picked again for that target:
--   pending  the order is in an export batch whose file is not in the drop folder yet;
--   done     the file is in the drop folder (files targets), or the ERP answered 2xx (webhook);
--   failed   the ERP refused the order for good (webhook 4xx); detail holds its answer. Only an
--            admin's retry (which deletes the row) sends it again.
-- batch_id is the export batch of a file target, 0 for the webhook.
ALTER TABLE order_exports ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
ALTER TABLE order_exports ADD COLUMN batch_id INTEGER NOT NULL DEFAULT 0;
CREATE INDEX order_exports_batch ON order_exports(batch_id) WHERE batch_id <> 0;
CREATE INDEX order_exports_target ON order_exports(target, state);

-- Orders by kind (test or not) and number: what an export run scans.
CREATE INDEX orders_test_number ON orders(test, number);

-- One order file for a drop folder, recorded before the file is written so that a crash at any
-- point is finished from here, with the same orders under the same name:
--   open     recorded; the file may be missing or half written under its temporary name;
--   written  the temporary file (".tmp-" + file) is complete and synced: renaming it is all that
--            is left. If it is gone, the rename happened (and the ERP may have taken the file);
--   done     the file is in the drop folder under its name and the orders' ledgers say so.
CREATE TABLE export_batches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT NOT NULL,             -- files | test_files
    file        TEXT NOT NULL DEFAULT '',  -- name in the drop folder, fixed when recorded
    format      TEXT NOT NULL,             -- json | csv | xml, fixed when recorded
    order_count INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'open',
    created_at  INTEGER NOT NULL,          -- unix milliseconds
    done_at     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX export_batches_unfinished ON export_batches(target, id) WHERE state <> 'done';

-- Per target and kind of order: every order of that kind numbered at or below floor has a row
-- in order_exports for the target, so a run looks only at the orders above it rather than at
-- the shop's whole history.
CREATE TABLE export_floors (
    target TEXT NOT NULL,
    test   INTEGER NOT NULL,
    floor  INTEGER NOT NULL,
    PRIMARY KEY (target, test)
) WITHOUT ROWID;

-- Stock files the back office dropped, each read once. A file is known by its content: the
-- same content again (whatever its name) is not applied twice. state: done | failed.
CREATE TABLE stock_imports (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    name      TEXT NOT NULL,
    sha256    TEXT NOT NULL,              -- hex, of the whole file; '' when it was too big to read
    size      INTEGER NOT NULL,
    row_count INTEGER NOT NULL DEFAULT 0,
    state     TEXT NOT NULL,
    error     TEXT NOT NULL DEFAULT '',   -- why a failed file was refused
    at        INTEGER NOT NULL            -- unix milliseconds
);
CREATE UNIQUE INDEX stock_imports_done ON stock_imports(sha256) WHERE state = 'done';
CREATE INDEX stock_imports_state ON stock_imports(state, id);
