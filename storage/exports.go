package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/storeedge/storeedge/orders"
)

// Back-office export targets (order_exports.target).
const (
	ExportFiles     = "files"      // backoffice.export.dir
	ExportTestFiles = "test_files" // backoffice.export.test_dir
	ExportWebhook   = "webhook"    // backoffice.webhook.url
)

// States of an order for an export target (order_exports.state).
const (
	ExportPending = "pending" // in a batch whose file is not in the drop folder yet
	ExportDone    = "done"
	ExportFailed  = "failed" // refused for good; only RetryExport sends it again
)

// States of an export batch (export_batches.state).
const (
	BatchOpen    = "open"    // recorded; the file may be missing or half written
	BatchWritten = "written" // the temporary file is complete and synced; only the rename is left
	BatchDone    = "done"
)

// OutboxStockAdjusted is the outbox type of a stock level imported from the back office.
const OutboxStockAdjusted = "stock.adjusted"

// ErrBatchState means an export batch is not in the state the step expects (a second agent, or
// a step run twice).
var ErrBatchState = errors.New("storage: export batch is not in the expected state")

// ExportTarget names an export target and the kind of order it takes: the test orders and only
// them (Test), or only the others. An order is exported to a target at most once.
type ExportTarget struct {
	Name string
	Test bool
}

// ExportBatch is one order file for a drop folder.
type ExportBatch struct {
	ID        int64     `json:"id"`
	Target    string    `json:"target"`
	File      string    `json:"file"`   // name in the drop folder
	Format    string    `json:"format"` // as given to CreateExportBatch
	Orders    int       `json:"orders"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
}

// BatchName makes the file name of a batch from its id and the numbers of its first and last
// orders. It must be a pure function of its arguments: the name is fixed when the batch is
// recorded.
type BatchName func(id, first, last int64) string

// CreateExportBatch records, in one transaction, a batch of up to limit orders of the target's
// kind that have not been given to the target yet, oldest (lowest number) first, under the file
// name that name makes, in state BatchOpen. ok is false when no order waits. The orders belong
// to the batch from then on: no other batch of the target picks them.
func (db *DB) CreateExportBatch(ctx context.Context, t ExportTarget, format string, limit int, name BatchName) (b ExportBatch, ok bool, err error) {
	now := time.Now()
	err = db.write(ctx, func(tx *sql.Tx) error {
		floor, err := exportFloor(ctx, tx, t)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT o.id, o.number FROM orders o
			WHERE o.test = ? AND o.number > ? AND NOT EXISTS (SELECT 1 FROM order_exports e WHERE e.order_id = o.id AND e.target = ?)
			ORDER BY o.number LIMIT ?`, t.Test, floor, t.Name, limit)
		if err != nil {
			return err
		}
		var ids []string
		var first, last int64
		for rows.Next() {
			var id string
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return err
			}
			if len(ids) == 0 {
				first = n
			}
			last = n
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return advanceExportFloor(ctx, tx, t, floor)
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO export_batches(target, format, order_count, created_at) VALUES (?, ?, ?, ?) RETURNING id`,
			t.Name, format, len(ids), now.UnixMilli()).Scan(&b.ID); err != nil {
			return err
		}
		if db.ids != nil {
			db.ids.need(&db.ids.marks.Batches, b.ID, batchIDBlock)
		}
		b.Target, b.Format, b.Orders, b.State, b.CreatedAt = t.Name, format, len(ids), BatchOpen, time.UnixMilli(now.UnixMilli()).UTC()
		b.File = name(b.ID, first, last)
		if _, err := tx.ExecContext(ctx, `UPDATE export_batches SET file = ? WHERE id = ?`, b.File, b.ID); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `INSERT INTO order_exports(order_id, target, at, detail, state, batch_id) VALUES (?, ?, ?, ?, ?, ?)`,
				id, t.Name, now.UnixMilli(), b.File, ExportPending, b.ID); err != nil {
				return err
			}
		}
		ok = true
		return advanceExportFloor(ctx, tx, t, floor)
	})
	if err != nil {
		return ExportBatch{}, false, fmt.Errorf("storage: create export batch: %w", err)
	}
	return b, ok, nil
}

// UnfinishedExportBatches returns the target's batches that are not done, oldest first.
func (db *DB) UnfinishedExportBatches(ctx context.Context, target string) ([]ExportBatch, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, target, file, format, order_count, state, created_at FROM export_batches
		WHERE target = ? AND state <> 'done' ORDER BY id`, target)
	if err != nil {
		return nil, fmt.Errorf("storage: unfinished export batches: %w", err)
	}
	defer rows.Close()
	out := []ExportBatch{}
	for rows.Next() {
		var b ExportBatch
		var at int64
		if err := rows.Scan(&b.ID, &b.Target, &b.File, &b.Format, &b.Orders, &b.State, &at); err != nil {
			return nil, fmt.Errorf("storage: unfinished export batches: %w", err)
		}
		b.CreatedAt = time.UnixMilli(at).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

// ExportBatchOrders returns the orders of a batch as they are now, by number. The same batch
// always gives the same orders in the same order.
func (db *DB) ExportBatchOrders(ctx context.Context, batchID int64) ([]orders.Order, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT o.doc FROM order_exports e JOIN orders o ON o.id = e.order_id
		WHERE e.batch_id = ? ORDER BY o.number`, batchID)
	if err != nil {
		return nil, fmt.Errorf("storage: export batch orders: %w", err)
	}
	out, err := scanOrders(rows)
	if err != nil {
		return nil, fmt.Errorf("storage: export batch orders: %w", err)
	}
	return out, nil
}

// MarkExportBatchWritten records that the batch's temporary file is complete and synced. It is
// ErrBatchState unless the batch is open. The record reaches the disk before it returns: the
// file is renamed into the drop folder next, and a power cut that kept the rename but lost the
// record would have the batch written again, under the same name, after the ERP took it.
func (db *DB) MarkExportBatchWritten(ctx context.Context, batchID int64) error {
	err := db.writeDurable(ctx, nil, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `UPDATE export_batches SET state = 'written' WHERE id = ? AND state = 'open'`, batchID)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil || n != 1 {
			return errors.Join(err, ErrBatchState)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: mark export batch %d written: %w", batchID, err)
	}
	return nil
}

// FinishExportBatch records, in one transaction, that the batch's file is in the drop folder:
// the batch and its orders are done, and each order's ledger gets StageExported with the target
// and file name. A batch already done is left alone.
func (db *DB) FinishExportBatch(ctx context.Context, batchID int64) error {
	now := time.Now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		var target, file string
		err := tx.QueryRowContext(ctx, `UPDATE export_batches SET state = 'done', done_at = ? WHERE id = ? AND state <> 'done' RETURNING target, file`,
			now.UnixMilli(), batchID).Scan(&target, &file)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `UPDATE order_exports SET state = 'done', at = ? WHERE batch_id = ? AND state = 'pending' RETURNING order_id`,
			now.UnixMilli(), batchID)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			if err := ledger(ctx, tx, id, now, orders.StageExported, target+": "+file, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: finish export batch %d: %w", batchID, err)
	}
	return nil
}

// PendingExports returns up to limit orders of the target's kind that have not been given to
// the target, oldest first. It is for targets that take one order at a time (the webhook); each
// order is then settled with RecordExport or FailExport.
func (db *DB) PendingExports(ctx context.Context, t ExportTarget, limit int) ([]orders.Order, error) {
	floor, err := exportFloor(ctx, db.r, t)
	if err != nil {
		return nil, fmt.Errorf("storage: pending exports: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT o.doc FROM orders o
		WHERE o.test = ? AND o.number > ? AND NOT EXISTS (SELECT 1 FROM order_exports e WHERE e.order_id = o.id AND e.target = ?)
		ORDER BY o.number LIMIT ?`, t.Test, floor, t.Name, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: pending exports: %w", err)
	}
	out, err := scanOrders(rows)
	if err != nil {
		return nil, fmt.Errorf("storage: pending exports: %w", err)
	}
	return out, nil
}

// RecordExport records that the target took the order (detail: what it answered), with a
// StageExported ledger entry, in one transaction. An order the target has already settled is
// left alone.
func (db *DB) RecordExport(ctx context.Context, target, orderID, detail string) error {
	return db.settleExport(ctx, target, orderID, ExportDone, detail)
}

// FailExport records that the target refused the order for good (reason: its answer), with a
// StageExportFailed ledger entry. The order is not offered to the target again until
// RetryExport.
func (db *DB) FailExport(ctx context.Context, target, orderID, reason string) error {
	return db.settleExport(ctx, target, orderID, ExportFailed, reason)
}

func (db *DB) settleExport(ctx context.Context, target, orderID, state, detail string) error {
	now := time.Now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		var test bool
		if err := tx.QueryRowContext(ctx, `SELECT test FROM orders WHERE id = ?`, orderID).Scan(&test); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		r, err := tx.ExecContext(ctx, `INSERT INTO order_exports(order_id, target, at, detail, state) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(order_id, target) DO NOTHING`, orderID, target, now.UnixMilli(), detail, state)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil || n == 0 {
			return err
		}
		stage, ledgerDetail, errText := orders.StageExported, target+": "+detail, ""
		if state == ExportFailed {
			stage, ledgerDetail, errText = orders.StageExportFailed, target, detail
		}
		if err := ledger(ctx, tx, orderID, now, stage, ledgerDetail, errText); err != nil {
			return err
		}
		t := ExportTarget{Name: target, Test: test}
		floor, err := exportFloor(ctx, tx, t)
		if err != nil {
			return err
		}
		return advanceExportFloor(ctx, tx, t, floor)
	})
	if err != nil {
		return fmt.Errorf("storage: record export of %s to %s: %w", orderID, target, err)
	}
	return nil
}

// RetryExport forgets that the target refused the order, so the next run offers it again (an
// admin decided to try again). It reports whether the order had been refused.
func (db *DB) RetryExport(ctx context.Context, target, orderID string) (bool, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM order_exports WHERE order_id = ? AND target = ? AND state = 'failed'`, orderID, target)
		if err != nil {
			return err
		}
		if n, err = r.RowsAffected(); err != nil || n == 0 {
			return err
		}
		var number int64
		var test bool
		if err := tx.QueryRowContext(ctx, `SELECT number, test FROM orders WHERE id = ?`, orderID).Scan(&number, &test); err != nil {
			return err
		}
		if err := ledger(ctx, tx, orderID, time.Now(), orders.StageExportRetry, target, ""); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE export_floors SET floor = min(floor, ?) WHERE target = ? AND test = ?`, number-1, target, test)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("storage: retry export: %w", err)
	}
	return n == 1, nil
}

// ExportFailure is an order a target refused for good.
type ExportFailure struct {
	OrderID string    `json:"order_id"`
	Number  int64     `json:"number"`
	Target  string    `json:"target"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
}

// ExportFailures returns up to limit orders the target refused for good, newest first.
func (db *DB) ExportFailures(ctx context.Context, target string, limit int) ([]ExportFailure, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT e.order_id, o.number, e.target, e.at, e.detail FROM order_exports e JOIN orders o ON o.id = e.order_id
		WHERE e.target = ? AND e.state = 'failed' ORDER BY e.at DESC, o.number DESC LIMIT ?`, target, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: export failures: %w", err)
	}
	defer rows.Close()
	out := []ExportFailure{}
	for rows.Next() {
		var f ExportFailure
		var at int64
		if err := rows.Scan(&f.OrderID, &f.Number, &f.Target, &at, &f.Reason); err != nil {
			return nil, fmt.Errorf("storage: export failures: %w", err)
		}
		f.At = time.UnixMilli(at).UTC()
		out = append(out, f)
	}
	return out, rows.Err()
}

// ExportStats counts one target's orders.
type ExportStats struct {
	Target   string `json:"target"`
	Exported int64  `json:"exported"` // the target has them
	Failed   int64  `json:"failed"`   // refused for good
	Pending  int64  `json:"pending"`  // of the target's kind, not in the target's hands yet
	Batches  int64  `json:"batches"`  // unfinished batches (files targets)
}

// ExportStats counts the orders of each target.
func (db *DB) ExportStats(ctx context.Context, targets []ExportTarget) ([]ExportStats, error) {
	out := make([]ExportStats, 0, len(targets))
	for _, t := range targets {
		floor, err := exportFloor(ctx, db.r, t)
		if err != nil {
			return nil, fmt.Errorf("storage: export stats: %w", err)
		}
		s := ExportStats{Target: t.Name}
		var inBatch int64
		err = db.r.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM order_exports WHERE target = ?1 AND state = 'done'),
			(SELECT count(*) FROM order_exports WHERE target = ?1 AND state = 'failed'),
			(SELECT count(*) FROM order_exports WHERE target = ?1 AND state = 'pending'),
			(SELECT count(*) FROM orders o WHERE o.test = ?2 AND o.number > ?3
				AND NOT EXISTS (SELECT 1 FROM order_exports e WHERE e.order_id = o.id AND e.target = ?1)),
			(SELECT count(*) FROM export_batches WHERE target = ?1 AND state <> 'done')`,
			t.Name, t.Test, floor).Scan(&s.Exported, &s.Failed, &inBatch, &s.Pending, &s.Batches)
		if err != nil {
			return nil, fmt.Errorf("storage: export stats: %w", err)
		}
		s.Pending += inBatch
		out = append(out, s)
	}
	return out, nil
}

// exportFloor returns the number at or below which every order of the target's kind is
// settled for the target.
func exportFloor(ctx context.Context, q querier, t ExportTarget) (int64, error) {
	var floor int64
	err := q.QueryRowContext(ctx, `SELECT floor FROM export_floors WHERE target = ? AND test = ?`, t.Name, t.Test).Scan(&floor)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return floor, err
}

// advanceExportFloor moves the target's floor up to just below its first unsettled order (or
// to the last order of its kind when none is unsettled), so later runs skip what is settled.
func advanceExportFloor(ctx context.Context, tx *sql.Tx, t ExportTarget, floor int64) error {
	var next int64
	err := tx.QueryRowContext(ctx, `SELECT o.number FROM orders o
		WHERE o.test = ? AND o.number > ? AND NOT EXISTS (SELECT 1 FROM order_exports e WHERE e.order_id = o.id AND e.target = ?)
		ORDER BY o.number LIMIT 1`, t.Test, floor, t.Name).Scan(&next)
	switch {
	case err == nil:
		next--
	case errors.Is(err, sql.ErrNoRows):
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(number), 0) FROM orders WHERE test = ?`, t.Test).Scan(&next); err != nil {
			return err
		}
	default:
		return err
	}
	if next <= floor {
		return nil
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO export_floors(target, test, floor) VALUES (?, ?, ?)
		ON CONFLICT(target, test) DO UPDATE SET floor = excluded.floor`, t.Name, t.Test, next)
	return err
}

func scanOrders(rows *sql.Rows) ([]orders.Order, error) {
	defer rows.Close()
	out := []orders.Order{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		var o orders.Order
		if err := json.Unmarshal([]byte(doc), &o); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// StockLevel is one row of a stock file from the back office: the product's stock level as the
// ERP counts it.
type StockLevel struct {
	Row       int    // 1 for the first data row of the file
	ProductID string // the cloud's product id
	Quantity  int64
}

// StockImport is a stock file as storeedge recorded it.
type StockImport struct {
	ID     int64     `json:"id"`
	Name   string    `json:"name"`
	SHA256 string    `json:"sha256"`
	Size   int64     `json:"size"`
	Rows   int       `json:"rows"`
	State  string    `json:"state"` // done | failed
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at"`
}

// States of a stock import.
const (
	ImportDone   = "done"
	ImportFailed = "failed"
)

// StockImportedLast returns the latest applied stock import when its content is sha256 (hex
// SHA-256): a file identical to the latest one applied is a resend, not an update. A file
// identical to an earlier one, with another applied since, is an update: it sets the levels back.
// So is the first file after a restore that is identical to the restored database's latest import
// (see latestStockImport).
func (db *DB) StockImportedLast(ctx context.Context, sha256 string) (StockImport, bool, error) {
	imp, resendable, err := latestStockImport(ctx, db.r)
	if errors.Is(err, sql.ErrNoRows) {
		return StockImport{}, false, nil
	}
	if err != nil {
		return StockImport{}, false, fmt.Errorf("storage: stock imported: %w", err)
	}
	return imp, resendable && imp.SHA256 == sha256, nil
}

// StockFileApplied returns the import that applied a file of this name and content and has
// not seen it moved to done/ (StockFileMoved), recorded since the database was last restored: a
// file applied and then not moved is found so at the next run, and not applied again over the
// files applied since. Once moved, a file of the same name and content dropped again is new.
func (db *DB) StockFileApplied(ctx context.Context, name, sha256 string) (StockImport, bool, error) {
	return db.stockFileUnmoved(ctx, ImportDone, name, sha256)
}

// StockFileRefused returns the refusal of a file of this name and content that has not seen it
// moved to failed/ (StockFileMoved), recorded since the database was last restored: a file
// refused and then not moved is found so at the next run, and only moved, not refused (and
// counted) again.
func (db *DB) StockFileRefused(ctx context.Context, name, sha256 string) (StockImport, bool, error) {
	return db.stockFileUnmoved(ctx, ImportFailed, name, sha256)
}

// stockFileUnmoved returns the latest import in state of a file of this name and content that
// waits for its move.
func (db *DB) stockFileUnmoved(ctx context.Context, state, name, sha256 string) (StockImport, bool, error) {
	var imp StockImport
	var at int64
	err := db.r.QueryRowContext(ctx, `SELECT id, name, sha256, size, row_count, state, error, at FROM stock_imports
	    WHERE state = ? AND unmoved = 1 AND name = ? AND sha256 = ?
	      AND id > COALESCE((SELECT value FROM meta WHERE key = '`+metaStockRestored+`'), 0)
	    ORDER BY id DESC LIMIT 1`, state, name, sha256).
		Scan(&imp.ID, &imp.Name, &imp.SHA256, &imp.Size, &imp.Rows, &imp.State, &imp.Error, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return StockImport{}, false, nil
	}
	if err != nil {
		return StockImport{}, false, fmt.Errorf("storage: stock file %s and not moved: %w", state, err)
	}
	imp.At = time.UnixMilli(at).UTC()
	return imp, true, nil
}

// StockFileMoved records that the file name left the import folder: no import of that name
// waits for its move any more.
func (db *DB) StockFileMoved(ctx context.Context, name string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE stock_imports SET unmoved = 0 WHERE unmoved = 1 AND name = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: stock file moved: %w", err)
	}
	return nil
}

// StockFilesGone records that only the files of present are in the import folder: the imports
// of any other name wait for no move (their file was moved, and a power cut or a stop undid the
// record of it).
func (db *DB) StockFilesGone(ctx context.Context, present []string) error {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT name FROM stock_imports WHERE unmoved = 1`)
	if err != nil {
		return fmt.Errorf("storage: stock files gone: %w", err)
	}
	var gone []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("storage: stock files gone: %w", err)
		}
		if !slices.Contains(present, n) {
			gone = append(gone, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: stock files gone: %w", err)
	}
	for _, n := range gone {
		if err := db.StockFileMoved(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// metaStockRestored is the meta key holding the id of the latest stock import when the database
// was last restored or found to have gone back in time (see markStockImportsRestored).
const metaStockRestored = "stock_imports_restored"

// latestStockImport is the stock import applied last, and whether a file of the same content is
// a resend of it. It is not when the database was restored, or went back in time, after that
// import was applied: the files applied after the backup was made are lost with the database
// the backup replaced, and may have changed the levels the cloud holds.
func latestStockImport(ctx context.Context, q querier) (imp StockImport, resendable bool, err error) {
	var at int64
	err = q.QueryRowContext(ctx, `SELECT id, name, sha256, size, row_count, state, error, at,
	        id > COALESCE((SELECT value FROM meta WHERE key = '`+metaStockRestored+`'), 0)
	    FROM stock_imports WHERE state = 'done' ORDER BY id DESC LIMIT 1`).
		Scan(&imp.ID, &imp.Name, &imp.SHA256, &imp.Size, &imp.Rows, &imp.State, &imp.Error, &at, &resendable)
	imp.At = time.UnixMilli(at).UTC()
	return imp, resendable, err
}

type execQuerier interface {
	querier
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// markStockImportsRestored records that the database holds no more than what its stock imports
// say so far: after a restore, the next file is applied even when it repeats the latest import.
// A database of a schema without stock imports has nothing to mark.
func markStockImportsRestored(ctx context.Context, q execQuerier) error {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'stock_imports'`).Scan(&n); err != nil || n == 0 {
		return err
	}
	_, err := q.ExecContext(ctx, `INSERT INTO meta(key, value) SELECT '`+metaStockRestored+`', COALESCE(MAX(id), 0) FROM stock_imports WHERE true
	    ON CONFLICT(key) DO UPDATE SET value = excluded.value`)
	return err
}

// stockAdjusted is the data of a stock.adjusted outbox entry.
type stockAdjusted struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
	File      string `json:"file"`
	SHA256    string `json:"sha256"`
	Row       int    `json:"row"`
}

// StockAdjustmentKey is the outbox (idempotency) key of a row of a stock file applied at at:
// the file's content and the time it was applied, so that the same content applied again
// later (levels set back) is a new event for the cloud, and a resend of the latest file is not
// applied at all (RecordStockImport).
func StockAdjustmentKey(sha256 string, at time.Time, row int) string {
	return "stock:" + sha256 + ":" + strconv.FormatInt(at.UnixMilli(), 10) + ":" + strconv.Itoa(row)
}

// RecordStockImport records a stock file and queues each of its rows for the cloud (outbox
// type OutboxStockAdjusted, key StockAdjustmentKey), in one transaction. When the latest file
// applied has the same content, nothing is queued: it returns that import and applied = false.
// The import is recorded as not moved yet (StockFileApplied), until StockFileMoved or
// StockFilesGone.
func (db *DB) RecordStockImport(ctx context.Context, name, sha256 string, size int64, levels []StockLevel) (imp StockImport, applied bool, err error) {
	now := time.Now()
	// The file is moved to done/ once recorded: the record must survive a power cut.
	err = db.writeDurable(ctx, nil, func(tx *sql.Tx) error {
		at := now.UnixMilli()
		last, resendable, err := latestStockImport(ctx, tx)
		switch {
		case err == nil && resendable && last.SHA256 == sha256:
			imp = last
			return nil
		case err == nil:
			// The time is part of the rows' keys: it rises with every import, even within a
			// millisecond or when the clock was set back, so that no two imports share a key.
			at = max(at, last.At.UnixMilli()+1)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		imp = StockImport{Name: name, SHA256: sha256, Size: size, Rows: len(levels), State: ImportDone, At: time.UnixMilli(at).UTC()}
		if err := tx.QueryRowContext(ctx, `INSERT INTO stock_imports(name, sha256, size, row_count, state, at, unmoved) VALUES (?, ?, ?, ?, 'done', ?, 1) RETURNING id`,
			name, sha256, size, len(levels), at).Scan(&imp.ID); err != nil {
			return err
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO outbox(key, type, order_id, at, data) VALUES (?, ?, '', ?, ?) ON CONFLICT(key) DO NOTHING`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, l := range levels {
			data, err := json.Marshal(stockAdjusted{ProductID: l.ProductID, Quantity: l.Quantity, File: name, SHA256: sha256, Row: l.Row})
			if err != nil {
				return err
			}
			// at is when the row was queued, by the shop's clock (the age upload_waiting reads);
			// the key carries the import's time, which orders the imports (cloud-api.md).
			if _, err := st.ExecContext(ctx, StockAdjustmentKey(sha256, imp.At, l.Row), OutboxStockAdjusted, now.UnixMilli(), string(data)); err != nil {
				return err
			}
		}
		applied = true
		return nil
	})
	if err != nil {
		return StockImport{}, false, fmt.Errorf("storage: record stock import %s: %w", name, err)
	}
	if applied && len(levels) > 0 {
		db.outboxSig.notify()
	}
	return imp, applied, nil
}

// RecordStockImportFailure records a stock file that could not be applied, and why.
func (db *DB) RecordStockImportFailure(ctx context.Context, name, sha256 string, size int64, reason string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO stock_imports(name, sha256, size, state, error, at, unmoved) VALUES (?, ?, ?, 'failed', ?, ?, 1)`,
			name, sha256, size, reason, time.Now().UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: record stock import failure %s: %w", name, err)
	}
	return nil
}

// StockImportStats counts the stock files imported and refused, with the latest of each.
type StockImportStats struct {
	Done       int64        `json:"done"`
	Failed     int64        `json:"failed"`
	LastDone   *StockImport `json:"last_done,omitempty"`
	LastFailed *StockImport `json:"last_failed,omitempty"`
}

// StockImportStats counts the stock files.
func (db *DB) StockImportStats(ctx context.Context) (StockImportStats, error) {
	var s StockImportStats
	err := db.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM stock_imports WHERE state = 'done'), (SELECT count(*) FROM stock_imports WHERE state = 'failed')`).
		Scan(&s.Done, &s.Failed)
	if err != nil {
		return s, fmt.Errorf("storage: stock import stats: %w", err)
	}
	for _, x := range []struct {
		state string
		dst   **StockImport
	}{{ImportDone, &s.LastDone}, {ImportFailed, &s.LastFailed}} {
		var imp StockImport
		var at int64
		err := db.r.QueryRowContext(ctx, `SELECT id, name, sha256, size, row_count, state, error, at FROM stock_imports WHERE state = ? ORDER BY id DESC LIMIT 1`, x.state).
			Scan(&imp.ID, &imp.Name, &imp.SHA256, &imp.Size, &imp.Rows, &imp.State, &imp.Error, &at)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return s, fmt.Errorf("storage: stock import stats: %w", err)
		}
		imp.At = time.UnixMilli(at).UTC()
		*x.dst = &imp
	}
	return s, nil
}
