-- The files of the media cache and their bytes, kept by triggers in the transaction of every
-- write instead of summed over every file on each status call and each quota decision. Starts
-- from a real count of the files held.
CREATE TABLE media_usage (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT INTO media_usage(one, files, bytes) SELECT 1, count(*), coalesce(sum(size), 0) FROM media_files;

CREATE TRIGGER media_files_usage_insert AFTER INSERT ON media_files BEGIN
    UPDATE media_usage SET files = files + 1, bytes = bytes + NEW.size;
END;
CREATE TRIGGER media_files_usage_delete AFTER DELETE ON media_files BEGIN
    UPDATE media_usage SET files = files - 1, bytes = bytes - OLD.size;
END;
CREATE TRIGGER media_files_usage_update AFTER UPDATE OF size ON media_files BEGIN
    UPDATE media_usage SET bytes = bytes - OLD.size + NEW.size;
END;
