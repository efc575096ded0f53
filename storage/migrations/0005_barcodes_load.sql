-- Barcodes written during a bulk load of products (see products_fts), in feed order: the page
-- that ends the bulk load moves them into barcodes in code order. Inserting each barcode at its
-- random place in barcodes instead costs several times as much. A row with gone = 1 says that the
-- product gave the barcode up, if it still held it then. Empty outside a bulk load.
CREATE TABLE barcodes_load (
    code       TEXT NOT NULL,
    product_id TEXT NOT NULL,
    gone       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX barcodes_load_gone ON barcodes_load(code, product_id) WHERE gone = 1;
