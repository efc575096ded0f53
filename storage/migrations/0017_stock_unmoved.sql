-- 1 while an applied stock file has not been moved to done/ yet: a file applied and not moved
-- (Windows refuses to move a file another program holds open; a stop between the two) is known
-- at the next run by its name and content, and only moved, even when another was applied since.
-- Imports from before this version count as moved.
ALTER TABLE stock_imports ADD COLUMN unmoved INTEGER NOT NULL DEFAULT 0;
