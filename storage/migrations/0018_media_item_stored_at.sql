-- When each media item's version was stored, for its Last-Modified. It was the file's time
-- (media_files.stored_at), and a file is shared by every item with that content: an item that
-- moved to content another item already had went back in time, and a device asking
-- If-Modified-Since kept its old copy (304). An item's time now only moves forward, by at least a
-- second (Last-Modified's precision) at each change of version. Items stored before take their
-- file's time.
ALTER TABLE media_cache ADD COLUMN stored_at INTEGER NOT NULL DEFAULT 0; -- unix milliseconds
UPDATE media_cache SET stored_at = (SELECT f.stored_at FROM media_files f WHERE f.md5 = media_cache.md5);
