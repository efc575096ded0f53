-- A stock file is compared with the last one applied only: the content of an earlier file, with
-- another applied since, is applied again (its levels are newer than the last file's). The
-- content no longer identifies one import; stock_imports_state (state, id) finds the last one.
DROP INDEX stock_imports_done;
