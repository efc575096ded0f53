package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// The live rows of each catalog collection are kept in row_counts by triggers, in the same
// transaction as every change (migration 0013). A first sync pays for that on every row it
// loads: the triggers took about an eighth of the time of a first sync of a million products
// (docs/PERFORMANCE.md, eighth round). So the bulk load that fills an empty table drops its
// collection's triggers with its secondary indexes, and the page that catches up creates them
// again, with the indexes. In between, a page's count is the count before the load plus the
// changes applied since that were not deletions: exact until the load meets an item it holds
// already (an item twice in the snapshot), after which it may count too many, never too few.
// During such a load a chunk's statement leaves the rows it holds alone, so the number of rows
// it wrote says whether it met one (applyMany). The page that catches up keeps that count when
// it is exact, and counts the table otherwise (about 2 s for a million products). Whether a
// collection's triggers are dropped is read from the schema itself, like its indexes, so a
// crash cannot leave the counts stale.

// countTrigger is a trigger that keeps a collection's live rows.
type countTrigger struct {
	name, create string
}

// countTriggers returns the triggers that keep the live rows of collection, as migration 0013
// created them (TestCountTriggersMatchSchema).
func countTriggers(collection string) [3]countTrigger {
	c := collection
	return [3]countTrigger{
		{c + "_count_insert", "CREATE TRIGGER " + c + "_count_insert AFTER INSERT ON " + c + " WHEN NEW.deleted = 0 BEGIN\n" +
			"    UPDATE row_counts SET live = live + 1 WHERE collection = '" + c + "';\nEND"},
		{c + "_count_update", "CREATE TRIGGER " + c + "_count_update AFTER UPDATE OF deleted ON " + c + " WHEN OLD.deleted <> NEW.deleted BEGIN\n" +
			"    UPDATE row_counts SET live = live + (CASE WHEN NEW.deleted = 0 THEN 1 ELSE -1 END) WHERE collection = '" + c + "';\nEND"},
		{c + "_count_delete", "CREATE TRIGGER " + c + "_count_delete AFTER DELETE ON " + c + " WHEN OLD.deleted = 0 BEGIN\n" +
			"    UPDATE row_counts SET live = live - 1 WHERE collection = '" + c + "';\nEND"},
	}
}

// dropCountsIfEmpty drops the count triggers of collection when its table holds no row, for the
// bulk load that starts, and reports whether it did.
func dropCountsIfEmpty(ctx context.Context, tx *sql.Tx, collection string) (bool, error) {
	var empty bool
	// The collection name comes from the fixed list of secondaryIndexes, never from input.
	if err := tx.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM `+collection+`)`).Scan(&empty); err != nil {
		return false, fmt.Errorf("storage: start bulk load of %s: %w", collection, err)
	}
	if !empty {
		return false, nil
	}
	for _, t := range countTriggers(collection) {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER IF EXISTS `+t.name); err != nil {
			return false, fmt.Errorf("storage: start bulk load of %s: %w", collection, err)
		}
	}
	return true, nil
}

// restoreCounts creates the count triggers of collection again and sets its kept count: to rows
// when the load counted them exactly, else (rows < 0) to a count of the table.
func restoreCounts(ctx context.Context, tx *sql.Tx, collection string, rows int64) error {
	for _, t := range countTriggers(collection) {
		q := strings.Replace(t.create, "CREATE TRIGGER ", "CREATE TRIGGER IF NOT EXISTS ", 1)
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("storage: end bulk load of %s: %w", collection, err)
		}
	}
	if rows < 0 {
		return recount(ctx, tx, collection)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE row_counts SET live = ? WHERE collection = ?`, rows, collection); err != nil {
		return fmt.Errorf("storage: end bulk load of %s: %w", collection, err)
	}
	return nil
}

// recount sets the kept count of collection to a count of its table.
func recount(ctx context.Context, tx *sql.Tx, collection string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE row_counts SET live = (SELECT count(*) FROM `+collection+` WHERE deleted = 0) WHERE collection = ?`, collection); err != nil {
		return fmt.Errorf("storage: count %s: %w", collection, err)
	}
	return nil
}

// loadUncounted finds the collections whose count triggers are dropped, and makes their kept
// counts exact: a load under way (its indexes dropped too) goes on from a count of the table;
// any other gets its triggers back.
func (db *DB) loadUncounted(ctx context.Context) error {
	have, err := db.schemaNames(ctx, "trigger")
	if err != nil {
		return err
	}
	db.uncounted, db.countExact = make(map[string]bool), make(map[string]bool)
	for c := range secondaryIndexes {
		for _, t := range countTriggers(c) {
			if !have[t.name] {
				db.uncounted[c] = true
			}
		}
	}
	if len(db.uncounted) == 0 {
		return nil
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage: restore counts: %w", err)
	}
	defer tx.Rollback()
	for c := range db.uncounted {
		if db.deferred[c] {
			err = recount(ctx, tx, c)
		} else {
			err = restoreCounts(ctx, tx, c, -1)
		}
		if err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storage: restore counts: %w", err)
	}
	for c := range db.uncounted {
		db.uncounted[c] = db.deferred[c]
		db.countExact[c] = db.deferred[c] // counted just now
	}
	return nil
}
