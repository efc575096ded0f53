-- The modification time of each stock file applied (unix milliseconds; 0 before this version):
-- a file applied and then not moved to done/ (Windows refuses to move a file another program
-- holds open) is known again as the same file at the next run, and only moved, even when
-- another was applied since.
ALTER TABLE stock_imports ADD COLUMN mtime INTEGER NOT NULL DEFAULT 0;
