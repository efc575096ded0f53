package storage

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// A re-snapshot starts when the cloud no longer knows a collection's cursor (ResetCursor) and
// ends with the first page that catches up. It replaces the collection with what the cloud sends:
//
//   - every id its pages mention is noted in snapshot_seen, in the page's transaction;
//   - an item mentioned for the first time takes the version the cloud sends when it differs
//     from the one held, even at a lower or the same revision: the cloud's history was replaced
//     (restored from a backup, rebuilt), and its snapshot is the truth;
//   - the page that catches up turns every live item not mentioned into a tombstone with a new
//     local sequence number, so devices following the delta feed see it deleted, and forgets
//     the notes.
//
// Items mentioned include those whose change was ignored as not newer, and those whose line was
// malformed (they still exist in the cloud: the shop keeps its last good version). A malformed
// line that names no valid item (no id, an id that cannot be read, or one that breaks the
// rules, which encoding/json may have taken from another key than the first) could be any
// item's: the re-snapshot then deletes nothing at its end (noted as the id unnamed, which no
// item has), rather than an item the cloud still has.

// unnamed is noted in snapshot_seen for a malformed line that names no item.
const unnamed = ""

// seenChunk is the number of ids noted with one statement.
const seenChunk = 64

// noteSeen notes the ids of a re-snapshot page and readies items mentioned for the first time to
// take the page's version.
func noteSeen(ctx context.Context, tx *sql.Tx, p *Page) error {
	ids := make([]string, 0, len(p.Changes)+len(p.Malformed))
	firstChange := make(map[string]*cloudapi.Change, len(p.Changes))
	for i := range p.Changes {
		c := &p.Changes[i]
		if _, dup := firstChange[c.ID]; !dup {
			firstChange[c.ID] = c // the first of its changes in the page is applied first
		}
		ids = append(ids, c.ID)
	}
	blind := false
	for _, m := range p.Malformed {
		if m.ID != "" {
			ids = append(ids, m.ID)
		} else if !blind {
			ids, blind = append(ids, unnamed), true
		}
	}
	for start := 0; start < len(ids); start += seenChunk {
		first, err := insertSeen(ctx, tx, p.Collection, ids[start:min(start+seenChunk, len(ids))])
		if err != nil {
			return err
		}
		if err := demote(ctx, tx, p.Collection, first, firstChange); err != nil {
			return err
		}
	}
	return nil
}

// insertSeen notes ids and returns those not noted before.
func insertSeen(ctx context.Context, tx *sql.Tx, collection string, ids []string) ([]string, error) {
	args := make([]any, 0, 2*len(ids))
	for _, id := range ids {
		args = append(args, collection, id)
	}
	rows, err := tx.QueryContext(ctx, `INSERT INTO snapshot_seen(collection, id) VALUES `+rowsSQL(len(ids), "(?,?)")+
		` ON CONFLICT DO NOTHING RETURNING id`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: note re-snapshot: %w", err)
	}
	defer rows.Close()
	var first []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("storage: note re-snapshot: %w", err)
		}
		first = append(first, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: note re-snapshot: %w", err)
	}
	return first, nil
}

// demote sets the held revision of each item of ids to 0 when the item's first change in the
// page (changes) differs from what is held, so that the revision rule lets that change replace
// it: a lower revision, or the same revision with another document, comes from a cloud whose
// history was replaced. Ids of malformed lines only have no change and are left alone.
func demote(ctx context.Context, tx *sql.Tx, collection string, ids []string, changes map[string]*cloudapi.Change) error {
	args := make([]any, 0, 3*len(ids))
	for _, id := range ids {
		if c, ok := changes[id]; ok {
			var doc any // NULL for a deletion, as a tombstone holds
			if c.Op == cloudapi.OpUpsert {
				doc = string(c.Doc)
			}
			args = append(args, id, c.Rev, doc)
		}
	}
	if len(args) == 0 {
		return nil
	}
	// The table name comes from the fixed list of collections, never from input.
	t := collection
	q := `UPDATE ` + t + ` SET rev = 0 FROM (VALUES ` + rowsSQL(len(args)/3, "(?,?,?)") + `) AS v
		WHERE ` + t + `.id = v.column1 AND (` + t + `.rev > v.column2 OR (` + t + `.rev = v.column2 AND ` + t + `.doc IS NOT v.column3))`
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("storage: note re-snapshot: %w", err)
	}
	return nil
}

// sweepBatch is the number of unmentioned items read per query by sweepUnseen.
const sweepBatch = 1000

// sweepUnseen ends a re-snapshot of collection: every live item it did not mention becomes a
// tombstone, with local sequence numbers after seq, and a product also loses its barcodes. (The
// search index is rebuilt by the same page: a re-snapshot of products is a bulk load.) It returns
// how many items it deleted and the last sequence number used. Quarantined lines of items the
// cloud no longer has are dropped; cleared counts them. After a malformed line that named no
// item, it deletes nothing (kept) and drops no quarantined line.
func sweepUnseen(ctx context.Context, tx *sql.Tx, collection string, seq int64) (swept, last, cleared int64, kept bool, err error) {
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM snapshot_seen WHERE collection = ? AND id = ?)`, collection, unnamed).Scan(&kept); err != nil {
		return 0, seq, 0, false, fmt.Errorf("storage: end re-snapshot: %w", err)
	}
	if !kept {
		if swept, seq, cleared, err = sweep(ctx, tx, collection, seq); err != nil {
			return 0, seq, 0, false, err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM snapshot_seen WHERE collection = ?`, collection); err != nil {
		return 0, seq, 0, false, fmt.Errorf("storage: end re-snapshot: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE feed_state SET resnapshot = 0 WHERE collection = ?`, collection); err != nil {
		return 0, seq, 0, false, fmt.Errorf("storage: end re-snapshot: %w", err)
	}
	return swept, seq, cleared, kept, nil
}

// sweep deletes the live items of collection that the re-snapshot did not mention, and the
// quarantined lines of items it did not mention or that named no item.
func sweep(ctx context.Context, tx *sql.Tx, collection string, seq int64) (swept, last, cleared int64, err error) {
	sw, err := newSweeper(ctx, tx, collection)
	if err != nil {
		return 0, seq, 0, err
	}
	defer sw.close()
	// As in ApplyPage, the statements of single rows do not watch ctx; the loop does.
	rctx := context.WithoutCancel(ctx)
	for after := ""; ; {
		if err := ctx.Err(); err != nil {
			return 0, seq, 0, fmt.Errorf("storage: end re-snapshot: %w", err)
		}
		batch, err := sw.unseen(ctx, after)
		if err != nil {
			return 0, seq, 0, err
		}
		if len(batch) == 0 {
			break
		}
		for i := range batch {
			seq++
			if err := sw.remove(rctx, batch[i], seq); err != nil {
				return 0, seq, 0, err
			}
		}
		swept += int64(len(batch))
		after = batch[len(batch)-1]
	}
	// A line that named no item, quarantined before, is no line of this snapshot, which had none.
	r, err := tx.ExecContext(ctx, `DELETE FROM quarantine WHERE collection = ? AND (item_id = ''
		OR NOT EXISTS (SELECT 1 FROM snapshot_seen s WHERE s.collection = quarantine.collection AND s.id = quarantine.item_id))`, collection)
	if err != nil {
		return 0, seq, 0, fmt.Errorf("storage: end re-snapshot: %w", err)
	}
	cleared, _ = r.RowsAffected()
	return swept, seq, cleared, nil
}

// sweeper holds the statements of sweepUnseen.
type sweeper struct {
	products bool
	stmts    []*sql.Stmt
	list     *sql.Stmt
	tomb     *sql.Stmt
	codes    *sql.Stmt
}

func newSweeper(ctx context.Context, tx *sql.Tx, collection string) (*sweeper, error) {
	sw := &sweeper{products: collection == cloudapi.Products}
	var err error
	prep := preparer(func(q string) (*sql.Stmt, error) { return tx.PrepareContext(ctx, q) }, &sw.stmts, &err)
	// The table name comes from the fixed list of collections, never from input.
	unseen := ` t WHERE t.deleted = 0 AND t.id > ? AND NOT EXISTS (SELECT 1 FROM snapshot_seen s WHERE s.collection = '` +
		collection + `' AND s.id = t.id) ORDER BY t.id LIMIT ` + fmt.Sprint(sweepBatch)
	sw.list = prep(`SELECT t.id FROM ` + collection + unseen)
	if sw.products {
		sw.tomb = prep(`UPDATE products SET deleted = 1, seq = ?, doc = NULL, name = '', brand = '', category = '' WHERE id = ?`)
		sw.codes = prep(`DELETE FROM barcodes WHERE product_id = ?`)
	} else {
		sw.tomb = prep(`UPDATE ` + collection + ` SET deleted = 1, seq = ?, doc = NULL WHERE id = ?`)
	}
	if err != nil {
		sw.close()
		return nil, fmt.Errorf("storage: end re-snapshot of %s: %w", collection, err)
	}
	return sw, nil
}

// unseen reads the ids of the next batch of live items not mentioned, in id order after after.
func (sw *sweeper) unseen(ctx context.Context, after string) ([]string, error) {
	rows, err := sw.list.QueryContext(ctx, after)
	if err != nil {
		return nil, fmt.Errorf("storage: end re-snapshot: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("storage: end re-snapshot: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: end re-snapshot: %w", err)
	}
	return out, nil
}

// remove turns one item into a tombstone at sequence number seq.
func (sw *sweeper) remove(ctx context.Context, id string, seq int64) error {
	if _, err := sw.tomb.ExecContext(ctx, seq, id); err != nil {
		return fmt.Errorf("storage: end re-snapshot: delete %s: %w", id, err)
	}
	if sw.products {
		if _, err := sw.codes.ExecContext(ctx, id); err != nil {
			return fmt.Errorf("storage: end re-snapshot: delete %s: %w", id, err)
		}
	}
	return nil
}

func (sw *sweeper) close() { closeAll(sw.stmts) }

// startResnapshot begins a new re-snapshot of collection: its cursor is forgotten and the notes
// of any re-snapshot left unfinished are dropped (what that one saw may have been deleted since).
func startResnapshot(ctx context.Context, tx *sql.Tx, collection string) error {
	for _, q := range []string{
		`UPDATE feed_state SET cursor = '', resnapshot = 1 WHERE collection = ?`,
		`DELETE FROM snapshot_seen WHERE collection = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, collection); err != nil {
			return fmt.Errorf("storage: reset cursor: %w", err)
		}
	}
	return nil
}
