package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/storeedge/storeedge/internal/cloudapi"
)

// FeedState is the sync position and health of one collection.
type FeedState struct {
	Collection  string
	Cursor      string
	LastSuccess time.Time // zero when the collection never synced
	Remaining   int64     // the cloud's estimate of changes still to fetch
	Pages       int64
	LastError   string
	LastErrorAt time.Time
	Quarantined int64
}

// Page is one feed page ready to be applied: its valid changes, its malformed lines and the end
// line that closes it.
type Page struct {
	Collection string
	Changes    []cloudapi.Change
	Malformed  []*cloudapi.MalformedError
	End        cloudapi.PageEnd
	FetchedAt  time.Time
}

// ApplyResult counts what a page did.
type ApplyResult struct {
	Applied     int // changes newer than what the shop held
	Ignored     int // changes at or below the held revision
	Quarantined int
}

func (db *DB) loadState(ctx context.Context) error {
	rows, err := db.w.QueryContext(ctx, `SELECT f.collection, f.cursor, f.last_success, f.remaining, f.pages, f.last_error, f.last_error_at,
		(SELECT count(*) FROM quarantine q WHERE q.collection = f.collection) FROM feed_state f`)
	if err != nil {
		return fmt.Errorf("storage: load feed state: %w", err)
	}
	defer rows.Close()
	state := make(map[string]FeedState)
	for rows.Next() {
		var s FeedState
		var ls, lea int64
		if err := rows.Scan(&s.Collection, &s.Cursor, &ls, &s.Remaining, &s.Pages, &s.LastError, &lea, &s.Quarantined); err != nil {
			return fmt.Errorf("storage: load feed state: %w", err)
		}
		s.LastSuccess = fromMillis(ls)
		s.LastErrorAt = fromMillis(lea)
		state[s.Collection] = s
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: load feed state: %w", err)
	}
	db.smu.Lock()
	db.state = state
	db.smu.Unlock()
	return nil
}

// FeedState returns the state of one collection as of the last committed page.
func (db *DB) FeedState(collection string) (FeedState, bool) {
	db.smu.RLock()
	defer db.smu.RUnlock()
	s, ok := db.state[collection]
	return s, ok
}

// FeedStates returns the state of every collection in cloudapi.Collections order.
func (db *DB) FeedStates() []FeedState {
	db.smu.RLock()
	defer db.smu.RUnlock()
	out := make([]FeedState, 0, len(cloudapi.Collections))
	for _, c := range cloudapi.Collections {
		out = append(out, db.state[c])
	}
	return out
}

func (db *DB) updateState(collection string, f func(*FeedState)) {
	db.smu.Lock()
	s := db.state[collection]
	f(&s)
	db.state[collection] = s
	db.smu.Unlock()
}

// ApplyPage applies a page's changes and stores its cursor in one transaction, so a page is
// applied whole or not at all. Changes at or below the revision already held are ignored, which
// makes applying the same page twice harmless.
func (db *DB) ApplyPage(ctx context.Context, p Page) (ApplyResult, error) {
	if !cloudapi.IsCollection(p.Collection) {
		return ApplyResult{}, fmt.Errorf("storage: apply page: unknown collection %q", p.Collection)
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()

	st, _ := db.FeedState(p.Collection)
	hasQuarantine := st.Quarantined > 0

	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("storage: apply page: %w", err)
	}
	defer tx.Rollback()
	// A first sync or a large backlog of products is a bulk load: the search index is left alone
	// and rebuilt once by the page that catches up, which is several times faster than keeping it
	// in step row by row. The flag is stored with the page, so a crash cannot leave it stale.
	bulk := p.Collection == cloudapi.Products && (db.ftsStale || st.Cursor == "" || p.End.Remaining >= bulkThreshold)
	if bulk && !db.ftsStale {
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = 1 WHERE key = 'fts_stale'`); err != nil {
			return ApplyResult{}, fmt.Errorf("storage: apply page: %w", err)
		}
	}
	a, err := newApplier(ctx, tx, p.Collection, bulk)
	if err != nil {
		return ApplyResult{}, err
	}
	defer a.close()

	var res ApplyResult
	seq := db.seq.Load()
	var cleared int64
	for i := range p.Changes {
		c := &p.Changes[i]
		applied, err := a.apply(ctx, c, seq+1)
		if err != nil {
			return ApplyResult{}, fmt.Errorf("storage: apply %s %s rev %d: %w", p.Collection, c.ID, c.Rev, err)
		}
		if !applied {
			res.Ignored++
			continue
		}
		seq++
		res.Applied++
		if hasQuarantine {
			r, err := tx.ExecContext(ctx, `DELETE FROM quarantine WHERE collection = ? AND item_id = ? AND rev <= ?`, p.Collection, c.ID, c.Rev)
			if err != nil {
				return ApplyResult{}, fmt.Errorf("storage: clear quarantine: %w", err)
			}
			n, _ := r.RowsAffected()
			cleared += n
		}
	}
	now := p.FetchedAt
	if now.IsZero() {
		now = time.Now()
	}
	for _, m := range p.Malformed {
		// One entry per item: a newer malformed version replaces the older entry.
		if m.ID != "" {
			r, err := tx.ExecContext(ctx, `DELETE FROM quarantine WHERE collection = ? AND item_id = ?`, p.Collection, m.ID)
			if err != nil {
				return ApplyResult{}, fmt.Errorf("storage: quarantine: %w", err)
			}
			n, _ := r.RowsAffected()
			cleared += n
		}
		rev := quarantineRev(m.Raw)
		if _, err := tx.ExecContext(ctx, `INSERT INTO quarantine(collection, item_id, rev, reason, raw, at) VALUES (?, ?, ?, ?, ?, ?)`,
			p.Collection, m.ID, rev, m.Reason, string(m.Raw), now.UnixMilli()); err != nil {
			return ApplyResult{}, fmt.Errorf("storage: quarantine: %w", err)
		}
		res.Quarantined++
	}
	if seq != db.seq.Load() {
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'seq'`, seq); err != nil {
			return ApplyResult{}, fmt.Errorf("storage: apply page: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE feed_state SET cursor = ?, last_success = ?, remaining = ?, pages = pages + 1, last_error = '', last_error_at = 0 WHERE collection = ?`,
		p.End.Cursor, now.UnixMilli(), p.End.Remaining, p.Collection); err != nil {
		return ApplyResult{}, fmt.Errorf("storage: apply page: store cursor: %w", err)
	}
	rebuilt := bulk && !p.End.More
	if rebuilt {
		if err := rebuildSearch(ctx, tx); err != nil {
			return ApplyResult{}, err
		}
	}
	a.close()
	if err := tx.Commit(); err != nil {
		return ApplyResult{}, fmt.Errorf("storage: apply page: commit: %w", err)
	}
	db.seq.Store(seq)
	db.invalidateHot(&p, rebuilt)
	if !p.End.More {
		db.warmSig.notify()
	}
	db.ftsStale = bulk && !rebuilt
	db.updateState(p.Collection, func(s *FeedState) {
		s.Cursor = p.End.Cursor
		s.LastSuccess = time.UnixMilli(now.UnixMilli())
		s.Remaining = p.End.Remaining
		s.Pages++
		s.LastError, s.LastErrorAt = "", time.Time{}
		s.Quarantined += int64(res.Quarantined) - cleared
	})
	return res, nil
}

// bulkThreshold is the backlog, in changes, above which a products page is applied as a bulk load.
const bulkThreshold = 50000

// rebuildSearch reindexes every live product and clears the stale flag.
func rebuildSearch(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{
		`INSERT INTO products_fts(products_fts) VALUES ('delete-all')`,
		`INSERT INTO products_fts(rowid, name, brand, category) SELECT rowid, name, brand, category FROM products WHERE deleted = 0`,
		`UPDATE meta SET value = 0 WHERE key = 'fts_stale'`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("storage: rebuild search index: %w", err)
		}
	}
	return nil
}

// quarantineRev reads the revision of a malformed line when it has one, so a later valid change
// of a lower revision does not clear it.
func quarantineRev(raw []byte) int64 {
	var v struct {
		Rev int64 `json:"rev"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return 0
	}
	return v.Rev
}

// RecordFeedError remembers the last failure of a collection's sync, for status.
func (db *DB) RecordFeedError(ctx context.Context, collection, msg string, at time.Time) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if _, err := db.w.ExecContext(ctx, `UPDATE feed_state SET last_error = ?, last_error_at = ? WHERE collection = ?`, msg, at.UnixMilli(), collection); err != nil {
		return fmt.Errorf("storage: record feed error: %w", err)
	}
	db.updateState(collection, func(s *FeedState) { s.LastError, s.LastErrorAt = msg, time.UnixMilli(at.UnixMilli()) })
	return nil
}

// ResetCursor forgets a collection's cursor so the next sync starts with a snapshot (the cloud
// answered that the cursor expired).
func (db *DB) ResetCursor(ctx context.Context, collection string) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if _, err := db.w.ExecContext(ctx, `UPDATE feed_state SET cursor = '' WHERE collection = ?`, collection); err != nil {
		return fmt.Errorf("storage: reset cursor: %w", err)
	}
	db.updateState(collection, func(s *FeedState) { s.Cursor = "" })
	return nil
}

// QuarantineEntry is one malformed feed line kept aside.
type QuarantineEntry struct {
	Collection string    `json:"collection"`
	ItemID     string    `json:"id,omitempty"`
	Rev        int64     `json:"rev,omitempty"`
	Reason     string    `json:"reason"`
	Raw        string    `json:"raw"`
	At         time.Time `json:"at"`
}

// Quarantine lists up to limit quarantined lines, newest first; collection "" means all.
func (db *DB) Quarantine(ctx context.Context, collection string, limit int) ([]QuarantineEntry, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT collection, item_id, rev, reason, raw, at FROM quarantine
		WHERE ? = '' OR collection = ? ORDER BY id DESC LIMIT ?`, collection, collection, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: quarantine: %w", err)
	}
	defer rows.Close()
	var out []QuarantineEntry
	for rows.Next() {
		var e QuarantineEntry
		var at int64
		if err := rows.Scan(&e.Collection, &e.ItemID, &e.Rev, &e.Reason, &e.Raw, &at); err != nil {
			return nil, fmt.Errorf("storage: quarantine: %w", err)
		}
		e.At = fromMillis(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// applier holds the prepared statements of one page transaction.
type applier struct {
	collection string
	bulk       bool // products only: leave the search index to the rebuild at the end
	stmts      []*sql.Stmt
	upsert     *sql.Stmt
	del        *sql.Stmt
	lookup     *sql.Stmt
	ftsInsert  *sql.Stmt
	ftsDelete  *sql.Stmt
	clearCodes *sql.Stmt
	addCode    *sql.Stmt
}

func newApplier(ctx context.Context, tx *sql.Tx, collection string, bulk bool) (*applier, error) {
	a := &applier{collection: collection, bulk: bulk}
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		if s, err = tx.PrepareContext(ctx, q); err == nil {
			a.stmts = append(a.stmts, s)
		}
		return s
	}
	if collection == cloudapi.Products {
		a.upsert = prep(`INSERT INTO products(id, rev, seq, deleted, name, brand, category, doc) VALUES (?, ?, ?, 0, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 0, name = excluded.name,
			brand = excluded.brand, category = excluded.category, doc = excluded.doc WHERE excluded.rev > products.rev`)
		a.del = prep(`INSERT INTO products(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 1, NULL)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 1, name = '', brand = '', category = '', doc = NULL
			WHERE excluded.rev > products.rev`)
		a.lookup = prep(`SELECT rowid, rev, deleted, name, brand, category FROM products WHERE id = ?`)
		a.ftsInsert = prep(`INSERT INTO products_fts(rowid, name, brand, category) VALUES (?, ?, ?, ?)`)
		a.ftsDelete = prep(`INSERT INTO products_fts(products_fts, rowid, name, brand, category) VALUES ('delete', ?, ?, ?, ?)`)
		a.clearCodes = prep(`DELETE FROM barcodes WHERE product_id = ?`)
		a.addCode = prep(`INSERT OR REPLACE INTO barcodes(code, product_id) VALUES (?, ?)`)
	} else {
		// The table name comes from the fixed list of collections, never from input.
		a.upsert = prep(`INSERT INTO ` + collection + `(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 0, ?)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 0, doc = excluded.doc WHERE excluded.rev > ` + collection + `.rev`)
		a.del = prep(`INSERT INTO ` + collection + `(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 1, NULL)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 1, doc = NULL WHERE excluded.rev > ` + collection + `.rev`)
	}
	if err != nil {
		a.close()
		return nil, fmt.Errorf("storage: prepare %s: %w", collection, err)
	}
	return a, nil
}

// apply writes one change with local sequence seq and reports whether it was newer than the
// revision held.
func (a *applier) apply(ctx context.Context, c *cloudapi.Change, seq int64) (bool, error) {
	if a.collection == cloudapi.Products {
		return a.applyProduct(ctx, c, seq)
	}
	var r sql.Result
	var err error
	if c.Op == cloudapi.OpDelete {
		r, err = a.del.ExecContext(ctx, c.ID, c.Rev, seq)
	} else {
		r, err = a.upsert.ExecContext(ctx, c.ID, c.Rev, seq, string(c.Doc))
	}
	if err != nil {
		return false, err
	}
	n, err := r.RowsAffected()
	return n > 0, err
}

// applyProduct also keeps the barcode index and, outside a bulk load, the search index in step.
// Only live products are in the search index.
func (a *applier) applyProduct(ctx context.Context, c *cloudapi.Change, seq int64) (bool, error) {
	var old struct {
		rowid, rev            int64
		deleted               bool
		name, brand, category string
	}
	found := false
	if !a.bulk {
		err := a.lookup.QueryRowContext(ctx, c.ID).Scan(&old.rowid, &old.rev, &old.deleted, &old.name, &old.brand, &old.category)
		switch {
		case err == nil:
			if old.rev >= c.Rev {
				return false, nil
			}
			found = true
		case !errors.Is(err, sql.ErrNoRows):
			return false, err
		}
	}
	var p cloudapi.Product
	var r sql.Result
	var err error
	if c.Op == cloudapi.OpDelete {
		r, err = a.del.ExecContext(ctx, c.ID, c.Rev, seq)
	} else {
		if c.Product != nil {
			p = *c.Product
		} else if p, err = cloudapi.ParseProduct(c.ID, c.Doc); err != nil {
			return false, err
		}
		r, err = a.upsert.ExecContext(ctx, c.ID, c.Rev, seq, p.Name, p.Brand, p.Category, string(c.Doc))
	}
	if err != nil {
		return false, err
	}
	if n, err := r.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if !a.bulk {
		if found && !old.deleted {
			if _, err := a.ftsDelete.ExecContext(ctx, old.rowid, old.name, old.brand, old.category); err != nil {
				return false, err
			}
		}
		if c.Op == cloudapi.OpUpsert {
			rowid := old.rowid
			if !found {
				if rowid, err = r.LastInsertId(); err != nil {
					return false, err
				}
			}
			if _, err := a.ftsInsert.ExecContext(ctx, rowid, p.Name, p.Brand, p.Category); err != nil {
				return false, err
			}
		}
	}
	// A product seen for the first time has no barcodes to clear.
	if a.bulk || found {
		if _, err := a.clearCodes.ExecContext(ctx, c.ID); err != nil {
			return false, err
		}
	}
	for _, code := range p.Barcodes {
		if _, err := a.addCode.ExecContext(ctx, code, c.ID); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (a *applier) close() {
	for _, s := range a.stmts {
		s.Close()
	}
	a.stmts = nil
}
