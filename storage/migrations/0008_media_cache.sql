-- The media cache: which verified files are on disk (storage/mediacache keeps them under
-- data_dir/media, named by the hex MD5 of their content), which file each media item is served
-- from, and the items whose download failed. A file is recorded here only after it was verified
-- and renamed into place, and removed from here before it is deleted from disk, so a row never
-- names a partial or missing file.

CREATE TABLE media_files (
    md5         TEXT PRIMARY KEY,            -- hex, lower case: the file's name
    size        INTEGER NOT NULL,
    stored_at   INTEGER NOT NULL,            -- unix milliseconds: Last-Modified
    last_served INTEGER NOT NULL DEFAULT 0   -- unix milliseconds, 0 never: the LRU order
) WITHOUT ROWID;

-- The version of each media item that devices get. A new version (new MD5) is fetched beside the
-- old one, which stays here until the new one is stored.
CREATE TABLE media_cache (
    id           TEXT PRIMARY KEY,
    md5          TEXT NOT NULL REFERENCES media_files(md5),
    content_type TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX media_cache_md5 ON media_cache(md5);

-- Items whose last download failed, with the reason, for status and the retry schedule. kind is
-- 'quarantined' (the blob does not match its size or MD5: never served), 'failed' (the blob could
-- not be read) or 'no_space' (the cache is full of files products refer to).
CREATE TABLE media_failures (
    id       TEXT PRIMARY KEY,
    md5      TEXT NOT NULL,      -- base64, as in the manifest: the version that failed
    kind     TEXT NOT NULL,
    reason   TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_try INTEGER NOT NULL,   -- unix milliseconds
    at       INTEGER NOT NULL
) WITHOUT ROWID;
