-- Which shop and server this database belongs to, recorded by the server at every start. A
-- backup carries it, so that restore can refuse another shop's backup.
--   server_id         the server's id (configuration server_id)
--   shop_id           the shop's id at the vendor (configuration shop.id), when set
--   shop_name         the shop's name, for messages
--   store_key_sha256  a fingerprint of the store key: the first 16 bytes of its SHA-256, in hex
CREATE TABLE identity (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
