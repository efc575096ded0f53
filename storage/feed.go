package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
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
	Resnapshot  bool  // a re-snapshot is under way: the collection is replaced when it catches up
	Rows        int64 // live items (row_counts), as of the last committed page
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
	Removed     int // live items a completed re-snapshot did not contain, now deleted
	// KeptUnseen: a completed re-snapshot deleted nothing, since a malformed line of it named no
	// item (it could have been any of those it did not mention).
	KeptUnseen bool
}

func (db *DB) loadState(ctx context.Context) error {
	rows, err := db.w.QueryContext(ctx, `SELECT f.collection, f.cursor, f.last_success, f.remaining, f.pages, f.last_error, f.last_error_at, f.resnapshot,
		(SELECT count(*) FROM quarantine q WHERE q.collection = f.collection),
		coalesce((SELECT live FROM row_counts c WHERE c.collection = f.collection), 0) FROM feed_state f`)
	if err != nil {
		return fmt.Errorf("storage: load feed state: %w", err)
	}
	defer rows.Close()
	state := make(map[string]FeedState)
	for rows.Next() {
		var s FeedState
		var ls, lea int64
		if err := rows.Scan(&s.Collection, &s.Cursor, &ls, &s.Remaining, &s.Pages, &s.LastError, &lea, &s.Resnapshot, &s.Quarantined, &s.Rows); err != nil {
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
	db.state.Store(&state)
	db.smu.Unlock()
	return nil
}

// FeedState returns the state of one collection as of the last committed page.
func (db *DB) FeedState(collection string) (FeedState, bool) {
	s, ok := db.states()[collection]
	return s, ok
}

// states is the feeds' state by collection; nil before it is loaded. Never modify it.
func (db *DB) states() map[string]FeedState {
	if m := db.state.Load(); m != nil {
		return *m
	}
	return nil
}

// FeedStates returns the state of every collection in cloudapi.Collections order.
func (db *DB) FeedStates() []FeedState {
	state := db.states()
	out := make([]FeedState, 0, len(cloudapi.Collections))
	for _, c := range cloudapi.Collections {
		out = append(out, state[c])
	}
	return out
}

func (db *DB) updateState(collection string, f func(*FeedState)) {
	db.smu.Lock()
	state := maps.Clone(db.states())
	if state == nil {
		state = make(map[string]FeedState)
	}
	s := state[collection]
	f(&s)
	state[collection] = s
	db.state.Store(&state)
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

	pa := db.newPageApply(&p)
	if err := db.prepareWriter(ctx, pa.loading); err != nil {
		return ApplyResult{}, err
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("storage: apply page: %w", err)
	}
	defer tx.Rollback()
	pa.tx = tx
	if err := pa.begin(ctx); err != nil {
		return ApplyResult{}, err
	}
	defer pa.a.close()
	pa.noteMalformedItems()
	if err := pa.applyChanges(ctx); err != nil {
		return ApplyResult{}, err
	}
	// After the changes, which clear the entries of earlier pages they replace: a malformed line
	// of this page is cleared only by a change that comes after it (Line).
	if err := pa.quarantineMalformed(ctx); err != nil {
		return ApplyResult{}, err
	}
	if err := pa.storeCursor(ctx); err != nil {
		return ApplyResult{}, err
	}
	if err := pa.finishLoad(ctx); err != nil {
		return ApplyResult{}, err
	}
	if pa.seq != db.seq.Load() {
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'seq'`, pa.seq); err != nil {
			return ApplyResult{}, fmt.Errorf("storage: apply page: %w", err)
		}
	}
	if err := pa.countRows(ctx); err != nil {
		return ApplyResult{}, err
	}
	pa.a.close()
	if err := tx.Commit(); err != nil {
		return ApplyResult{}, fmt.Errorf("storage: apply page: commit: %w", err)
	}
	if testHookCommitted != nil {
		testHookCommitted()
	}
	db.afterApply(pa)
	// From the first page of a bulk load to the one that catches up.
	db.paceCollector(pa.loading && !pa.caughtUp())
	db.keepWriteStmts(ctx)
	return pa.res, nil
}

// countRows finds the collection's live rows once the page is applied: kept by the triggers, or
// counted by the load while they are dropped.
func (pa *pageApply) countRows(ctx context.Context) error {
	if pa.uncounted {
		pa.rows = pa.st.Rows + pa.liveAdded
		return nil
	}
	// Read with a statement the writer keeps prepared, like the page's own: it runs for every page.
	count, err := pa.db.txStmt(ctx, pa.tx, `SELECT live FROM row_counts WHERE collection = ?`)
	if err == nil {
		err = count.QueryRowContext(ctx, pa.p.Collection).Scan(&pa.rows)
	}
	if err != nil {
		return fmt.Errorf("storage: apply page: count rows: %w", err)
	}
	return nil
}

// pageApply is one page being applied: what ApplyPage decided about it and what it did so far.
type pageApply struct {
	db *DB
	p  *Page
	st FeedState // the collection's state before the page
	tx *sql.Tx
	a  *applier

	// startLoad: the page starts a bulk load, whose secondary indexes are dropped now and built
	// by the page that catches up. loading: a bulk load is under way, this page's or one begun
	// before. bulk: products only, the search index waits for a rebuild at the end.
	startLoad, loading, bulk bool
	// uncounted: the collection's count triggers are dropped for a bulk load of an empty table
	// (rowcounts.go), which is only ever while a load applies its pages in chunks; liveAdded
	// counts the changes applied since the page began that were not deletions; held says the
	// page met a row held already, after which liveAdded may count too many.
	uncounted, held bool
	liveAdded       int64

	now     time.Time // when the page was fetched: the collection's last success
	seq     int64     // the last local sequence number given
	rows    int64     // the collection's live rows once the page is applied
	cleared int64     // quarantined lines that newer changes replaced
	// malformedItems maps the items named by the page's malformed lines to the changes of them
	// the page applied; nil when no malformed line names an item.
	malformedItems map[string][]lineRev
	res            ApplyResult
}

// lineRev is where a change of a page was, and its rev.
type lineRev struct {
	line int
	rev  int64
}

func (db *DB) newPageApply(p *Page) *pageApply {
	st, _ := db.FeedState(p.Collection)
	deferred := db.deferred[p.Collection]
	pa := &pageApply{db: db, p: p, st: st, now: p.FetchedAt, seq: db.seq.Load()}
	if pa.now.IsZero() {
		pa.now = time.Now()
	}
	pa.startLoad = !deferred && p.End.More && (st.Cursor == "" || p.End.Remaining >= bulkThreshold)
	pa.loading = deferred || pa.startLoad
	pa.uncounted = db.uncounted[p.Collection]
	// A re-snapshot is handled as a bulk load of the search index too: the rebuild drops the
	// entries of the products it removes.
	pa.bulk = p.Collection == cloudapi.Products && (pa.loading || db.ftsStale.Load() || st.Cursor == "" || st.Resnapshot || p.End.Remaining >= bulkThreshold)
	return pa
}

// prepareWriter sets the writer connection up for the page, outside its transaction. A bulk load
// checkpoints the WAL rarely: a page of the barcodes table, say, changes in nearly every page
// applied, and a checkpoint every few pages would copy it each time. The setting belongs to the
// connection, so a restart falls back to the default.
func (db *DB) prepareWriter(ctx context.Context, loading bool) error {
	if loading != db.bigWAL {
		pages := defaultAutoCheckpoint
		if loading {
			pages = bulkAutoCheckpoint
		}
		if _, err := db.w.ExecContext(ctx, fmt.Sprintf(`PRAGMA wal_autocheckpoint = %d`, pages)); err != nil {
			return fmt.Errorf("storage: apply page: %w", err)
		}
		db.bigWAL = loading
	}
	if db.smallCache {
		// The page that ended a bulk load failed half way.
		if _, err := db.w.ExecContext(ctx, fmt.Sprintf(`PRAGMA cache_size = %d`, writerCacheKiB)); err != nil {
			return fmt.Errorf("storage: apply page: %w", err)
		}
		db.smallCache = false
	}
	return nil
}

// bulkGCPercent is the collector's GOGC while a bulk load runs. A first sync allocates about
// 250 MB/s while the live heap stays near 9 MB, and at the default of 100 the collector ran 26
// times a second; at 200 the sync took about 4 % less time, for a heap goal half as large again
// (docs/PERFORMANCE.md, sixth round).
const bulkGCPercent = 200

// paceCollector raises the collector's GOGC to bulkGCPercent for a bulk load and puts it back
// after, unless GOGC was set higher or off. Called with wmu held.
func (db *DB) paceCollector(loading bool) {
	if loading == db.gcRaised {
		return
	}
	if !loading {
		debug.SetGCPercent(db.gcPercent)
		db.gcRaised = false
		return
	}
	if old := debug.SetGCPercent(bulkGCPercent); old < 0 || old >= bulkGCPercent {
		debug.SetGCPercent(old)
	} else {
		db.gcRaised, db.gcPercent = true, old
	}
}

// begin readies the transaction for the page's rows. A snapshot of more than one page, or a
// large backlog, is a bulk load: the collection's secondary indexes are dropped by its first
// page and built once by the page that catches up, which is several times cheaper than keeping
// them in step row by row. Whether a bulk load is under way is read from the schema itself (see
// Open), and the search index's flag is stored with the page, so a crash cannot leave either
// stale.
func (pa *pageApply) begin(ctx context.Context) error {
	if pa.startLoad {
		if err := dropIndexes(ctx, pa.tx, pa.p.Collection); err != nil {
			return err
		}
		dropped, err := dropCountsIfEmpty(ctx, pa.tx, pa.p.Collection)
		if err != nil {
			return err
		}
		pa.uncounted = pa.uncounted || dropped
	}
	if pa.bulk && !pa.db.ftsStale.Load() {
		if _, err := pa.tx.ExecContext(ctx, `UPDATE meta SET value = 1 WHERE key = 'fts_stale'`); err != nil {
			return fmt.Errorf("storage: apply page: %w", err)
		}
	}
	if pa.st.Resnapshot {
		if err := noteSeen(ctx, pa.tx, pa.p); err != nil {
			return err
		}
	}
	a, err := pa.db.newApplier(ctx, pa.tx, pa.p.Collection, pa.bulk)
	if err != nil {
		return err
	}
	a.fillsEmpty = pa.uncounted
	pa.a = a
	return nil
}

// applyChanges writes the page's rows. The statements of single rows do not watch ctx: the
// driver would start a goroutine per statement to do so, which costs more than many of the
// statements. The loops check ctx themselves instead.
func (pa *pageApply) applyChanges(ctx context.Context) error {
	if pa.a.bulk || pa.loading {
		return pa.applyChunks(ctx)
	}
	rctx := context.WithoutCancel(ctx)
	for i := range pa.p.Changes {
		if i%256 == 255 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("storage: apply page: %w", err)
			}
		}
		c := &pa.p.Changes[i]
		applied, err := pa.a.apply(rctx, c, pa.seq+1)
		if err != nil {
			return fmt.Errorf("storage: apply %s %s rev %d: %w", pa.p.Collection, c.ID, c.Rev, err)
		}
		if applied {
			pa.seq++
		}
		if err := pa.count(rctx, c, applied); err != nil {
			return err
		}
	}
	return pa.a.flushSearch(rctx)
}

// applyChunks writes a bulk load's rows many to a statement: most of a row's cost in a statement
// of its own is the statement, not the row.
func (pa *pageApply) applyChunks(ctx context.Context) error {
	rctx := context.WithoutCancel(ctx)
	for start := 0; start < len(pa.p.Changes); start += chunkRows {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("storage: apply page: %w", err)
		}
		chunk := pa.p.Changes[start:min(start+chunkRows, len(pa.p.Changes))]
		applied, err := pa.a.applyMany(rctx, chunk, pa.seq+1)
		if err != nil {
			return fmt.Errorf("storage: apply %s: %w", pa.p.Collection, err)
		}
		// Each change of the chunk had its sequence number; an ignored one leaves a gap.
		pa.seq += int64(len(chunk))
		for i, ok := range applied {
			if err := pa.count(rctx, &chunk[i], ok); err != nil {
				return err
			}
			if ok && pa.uncounted && chunk[i].Op != cloudapi.OpDelete {
				pa.liveAdded++
			}
		}
		pa.held = pa.held || pa.a.held
		// A bulk load keeps a processor busy for seconds. Between chunks (well under a
		// millisecond each) it lets a request that became runnable have it, instead of
		// leaving it to wait for the runtime's 10 ms preemption (docs/PERFORMANCE.md).
		runtime.Gosched()
	}
	return nil
}

// count notes a change applied or ignored; an applied change clears the quarantined lines of
// its item that it replaces.
func (pa *pageApply) count(ctx context.Context, c *cloudapi.Change, applied bool) error {
	if !applied {
		pa.res.Ignored++
		return nil
	}
	pa.res.Applied++
	if applies, ok := pa.malformedItems[c.ID]; ok {
		pa.malformedItems[c.ID] = append(applies, lineRev{c.Line, c.Rev})
	}
	if pa.st.Quarantined > 0 {
		n, err := clearQuarantine(ctx, pa.tx, pa.p.Collection, c)
		if err != nil {
			return err
		}
		pa.cleared += n
	}
	return nil
}

// noteMalformedItems readies the record of the changes applied to the items of the page's
// malformed lines.
func (pa *pageApply) noteMalformedItems() {
	for _, m := range pa.p.Malformed {
		if m.ID != "" {
			if pa.malformedItems == nil {
				pa.malformedItems = make(map[string][]lineRev)
			}
			pa.malformedItems[m.ID] = nil
		}
	}
}

// superseded tells whether a change the page applied after the malformed line m replaces it:
// one at its rev or above, or any when its rev could not be read (cloud-api.md).
func (pa *pageApply) superseded(m *cloudapi.MalformedError) bool {
	for _, c := range pa.malformedItems[m.ID] {
		if c.line > m.Line && (m.Rev == 0 || c.rev >= m.Rev) {
			return true
		}
	}
	return false
}

// quarantineMalformed stores the page's malformed lines once its changes are applied, one entry
// per item: a malformed line replaces the item's entry at its rev or below (or any, when its own
// rev could not be read); an older one (a replay) leaves the newer entry as it is, and one that
// a later change of the page replaced is counted as quarantined and cleared.
func (pa *pageApply) quarantineMalformed(ctx context.Context) error {
	for _, m := range pa.p.Malformed {
		if m.ID != "" {
			if pa.superseded(m) {
				if m.Rev == 0 {
					// Read line by line, it replaced every entry of its item, which the change
					// after it then cleared: the same whatever the page's cut.
					n, err := pa.dropEntries(ctx, m.ID)
					if err != nil {
						return err
					}
					pa.cleared += n
				}
				pa.res.Quarantined++
				pa.cleared++
				continue
			}
			var newer int
			if m.Rev > 0 {
				if err := pa.tx.QueryRowContext(ctx, `SELECT count(*) FROM quarantine WHERE collection = ? AND item_id = ? AND rev > ?`,
					pa.p.Collection, m.ID, m.Rev).Scan(&newer); err != nil {
					return fmt.Errorf("storage: quarantine: %w", err)
				}
			}
			if newer > 0 {
				pa.res.Quarantined++
				pa.cleared++
				continue
			}
			n, err := pa.dropEntries(ctx, m.ID)
			if err != nil {
				return err
			}
			pa.cleared += n
		}
		if _, err := pa.tx.ExecContext(ctx, `INSERT INTO quarantine(collection, item_id, rev, reason, raw, at) VALUES (?, ?, ?, ?, ?, ?)`,
			pa.p.Collection, m.ID, m.Rev, m.Reason, string(m.Raw), pa.now.UnixMilli()); err != nil {
			return fmt.Errorf("storage: quarantine: %w", err)
		}
		pa.res.Quarantined++
	}
	return nil
}

// dropEntries removes the quarantine entries of item, and says how many there were.
func (pa *pageApply) dropEntries(ctx context.Context, item string) (int64, error) {
	r, err := pa.tx.ExecContext(ctx, `DELETE FROM quarantine WHERE collection = ? AND item_id = ?`, pa.p.Collection, item)
	if err != nil {
		return 0, fmt.Errorf("storage: quarantine: %w", err)
	}
	n, _ := r.RowsAffected()
	return n, nil
}

// storeCursor records the page's cursor, and the time of the sync when the page caught up with
// the cloud (more: false): the data age counts from there, not from a page of a long first sync.
func (pa *pageApply) storeCursor(ctx context.Context) error {
	if _, err := pa.tx.ExecContext(ctx, `UPDATE feed_state SET cursor = ?, last_success = CASE WHEN ? THEN ? ELSE last_success END,
		remaining = ?, pages = pages + 1, last_error = '', last_error_at = 0 WHERE collection = ?`,
		pa.p.End.Cursor, !pa.p.End.More, pa.now.UnixMilli(), pa.p.End.Remaining, pa.p.Collection); err != nil {
		return fmt.Errorf("storage: apply page: store cursor: %w", err)
	}
	return nil
}

// caughtUp tells whether the page is the last of the collection's backlog.
func (pa *pageApply) caughtUp() bool { return !pa.p.End.More }

// finishLoad ends, with the page that catches up, what a bulk load or a re-snapshot left for the
// end: the staged barcodes, the secondary indexes, the sweep of the items the snapshot no longer
// holds, and the search index.
func (pa *pageApply) finishLoad(ctx context.Context) error {
	if !pa.caughtUp() || !(pa.bulk || pa.loading || pa.st.Resnapshot) {
		return nil
	}
	ending := pa.bulk || pa.loading
	if ending {
		// The sorts that build the indexes take as much memory as the page cache is allowed;
		// a smaller cache while they run keeps the peak of a first sync down.
		if err := pa.writerCache(ctx, sortCacheKiB); err != nil {
			return err
		}
	}
	if pa.bulk {
		if err := moveStagedCodes(ctx, pa.tx); err != nil {
			return err
		}
	}
	if pa.loading {
		if err := createIndexes(ctx, pa.tx, pa.p.Collection); err != nil {
			return err
		}
	}
	if pa.uncounted {
		// Before the sweep, whose deletions the triggers count. The load's own count is exact
		// while it met no row held already: then the table need not be counted.
		rows := int64(-1)
		if pa.db.countExact[pa.p.Collection] && !pa.held {
			rows = pa.st.Rows + pa.liveAdded
		}
		if err := restoreCounts(ctx, pa.tx, pa.p.Collection, rows); err != nil {
			return err
		}
		pa.uncounted = false
	}
	if pa.st.Resnapshot {
		// After the indexes are back: the sweep deletes barcodes by product.
		removed, last, n, kept, err := sweepUnseen(ctx, pa.tx, pa.p.Collection, pa.seq)
		if err != nil {
			return err
		}
		pa.seq, pa.cleared, pa.res.Removed, pa.res.KeptUnseen = last, pa.cleared+n, int(removed), kept
	}
	if pa.bulk {
		if err := rebuildSearch(ctx, pa.tx); err != nil {
			return err
		}
	}
	if ending {
		return pa.writerCache(ctx, writerCacheKiB)
	}
	return nil
}

// writerCache sets the writer's page cache, in KiB (negative, as SQLite takes it).
func (pa *pageApply) writerCache(ctx context.Context, kib int) error {
	if _, err := pa.tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA cache_size = %d`, kib)); err != nil {
		return fmt.Errorf("storage: apply page: %w", err)
	}
	pa.db.smallCache = kib == sortCacheKiB
	return nil
}

// testHookCommitted, when set by a test, runs between a page's commit and afterApply.
var testHookCommitted func()

// afterApply brings what the DB keeps in memory in line with the page just committed.
func (db *DB) afterApply(pa *pageApply) {
	p := pa.p
	rebuilt := pa.bulk && pa.caughtUp()
	// The read cache first, right after the commit: noteSeqLocked may wait for the disk, and the
	// cache would answer the versions the page replaced meanwhile.
	db.invalidateHot(p, rebuilt)
	db.feedMoved = db.feedMoved || pa.seq != db.seq.Load()
	db.seq.Store(pa.seq)
	db.noteSeqLocked()
	if p.Collection == cloudapi.Products {
		db.ftsStale.Store(pa.bulk && !rebuilt)
	}
	db.deferred[p.Collection] = pa.loading && !pa.caughtUp()
	db.countExact[p.Collection] = pa.uncounted && (pa.startLoad || db.countExact[p.Collection]) && !pa.held
	db.uncounted[p.Collection] = pa.uncounted
	db.updateState(p.Collection, func(s *FeedState) {
		s.Cursor = p.End.Cursor
		if !p.End.More {
			s.LastSuccess = time.UnixMilli(pa.now.UnixMilli())
		}
		s.Remaining = p.End.Remaining
		s.Rows = pa.rows
		s.Pages++
		s.LastError, s.LastErrorAt = "", time.Time{}
		s.Quarantined += int64(pa.res.Quarantined) - pa.cleared
		s.Resnapshot = pa.st.Resnapshot && p.End.More
	})
	if pa.caughtUp() {
		// After the state: the warmer reads it to decide whether every collection caught up.
		db.warmSig.notify()
		if db.feedMoved {
			db.feedMoved = false
			db.catalogSig.notify()
		}
	}
}

// CatalogChanged returns a channel closed when a page catches its collection up with the cloud
// after the delta feed devices follow (GET /api/v1/catalog/changes) changed, by that page or the
// pages before it: once for a bulk load or a run of pages, not for every page.
func (db *DB) CatalogChanged() <-chan struct{} { return db.catalogSig.wait() }

// clearQuarantine removes the quarantined lines of an item that a newer valid change replaced.
func clearQuarantine(ctx context.Context, tx *sql.Tx, collection string, c *cloudapi.Change) (int64, error) {
	r, err := tx.ExecContext(ctx, `DELETE FROM quarantine WHERE collection = ? AND item_id = ? AND rev <= ?`, collection, c.ID, c.Rev)
	if err != nil {
		return 0, fmt.Errorf("storage: clear quarantine: %w", err)
	}
	n, _ := r.RowsAffected()
	return n, nil
}

// bulkThreshold is the backlog, in changes, above which a page starts a bulk load.
const bulkThreshold = 50000

// Page cache sizes of the writer in KiB (negative, as PRAGMA cache_size takes them): as
// configured in dsn, and while the end of a bulk load sorts.
const (
	writerCacheKiB = -32768
	sortCacheKiB   = -8192
)

// WAL pages after which the writer checkpoints: SQLite's default, and during a bulk load.
const (
	defaultAutoCheckpoint = 1000
	bulkAutoCheckpoint    = 16384
)

// secondaryIndex is an index that a bulk load builds once at its end instead of row by row.
type secondaryIndex struct {
	name, create string
}

// secondaryIndexes lists, per collection, the indexes dropped during a bulk load of it. The
// definitions are those of the migrations (TestSecondaryIndexesMatchSchema), so a migration that
// changes one of these indexes must change it here too.
var secondaryIndexes = map[string][]secondaryIndex{
	cloudapi.Products: {
		{"products_seq", `CREATE INDEX products_seq ON products(seq)`},
		{"products_category", `CREATE INDEX products_category ON products(category, id) WHERE deleted = 0`},
		{"barcodes_product", `CREATE INDEX barcodes_product ON barcodes(product_id)`},
	},
	cloudapi.Prices:   {{"prices_seq", `CREATE INDEX prices_seq ON prices(seq)`}},
	cloudapi.Stock:    {{"stock_seq", `CREATE INDEX stock_seq ON stock(seq)`}},
	cloudapi.Media:    {{"media_seq", `CREATE INDEX media_seq ON media(seq)`}},
	cloudapi.Settings: {{"settings_seq", `CREATE INDEX settings_seq ON settings(seq)`}},
}

// loadDeferred finds the collections whose bulk load is under way: those missing one of their
// secondary indexes.
func (db *DB) loadDeferred(ctx context.Context) error {
	have, err := db.schemaNames(ctx, "index")
	if err != nil {
		return err
	}
	db.deferred = make(map[string]bool)
	for c, idx := range secondaryIndexes {
		for _, ix := range idx {
			if !have[ix.name] {
				db.deferred[c] = true
			}
		}
	}
	return nil
}

// schemaNames returns the names of the schema's objects of one type ("index", "trigger").
func (db *DB) schemaNames(ctx context.Context, kind string) (map[string]bool, error) {
	rows, err := db.w.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = ?`, kind)
	if err != nil {
		return nil, fmt.Errorf("storage: read the schema's %ss: %w", kind, err)
	}
	defer rows.Close()
	have := make(map[string]bool)
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("storage: read the schema's %ss: %w", kind, err)
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: read the schema's %ss: %w", kind, err)
	}
	return have, nil
}

func dropIndexes(ctx context.Context, tx *sql.Tx, collection string) error {
	for _, ix := range secondaryIndexes[collection] {
		// The name comes from the fixed list above, never from input.
		if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS `+ix.name); err != nil {
			return fmt.Errorf("storage: start bulk load of %s: %w", collection, err)
		}
	}
	return nil
}

func createIndexes(ctx context.Context, tx *sql.Tx, collection string) error {
	for _, ix := range secondaryIndexes[collection] {
		q := strings.Replace(ix.create, "CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("storage: end bulk load of %s: %w", collection, err)
		}
	}
	return nil
}

// rebuildSearch reindexes every live product and clears the stale flag. FTS5's own rebuild reads
// the products table about three times faster than an INSERT … SELECT into the index, but it
// indexes every row, tombstones included (with empty text); their entries are then deleted, so
// the index holds exactly the live products, as row-by-row upkeep keeps it.
func rebuildSearch(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{
		`INSERT INTO products_fts(products_fts) VALUES ('rebuild')`,
		`INSERT INTO products_fts(products_fts, rowid, name, brand, category) SELECT 'delete', rowid, name, brand, category FROM products WHERE deleted = 1`,
		`UPDATE meta SET value = 0 WHERE key = 'fts_stale'`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("storage: rebuild search index: %w", err)
		}
	}
	return nil
}

// moveStagedCodes moves the barcodes staged by a bulk load of products into barcodes, with the
// result of applying them one by one in feed order: a barcode belongs to the product that took
// it last (SQLite reads product_id from the row of max(rowid)), unless that product gave it up
// again later. In code order the inserts are appends, or nearly.
func moveStagedCodes(ctx context.Context, tx *sql.Tx) error {
	const last = `(SELECT code, product_id, max(rowid) AS r FROM barcodes_load WHERE gone = 0 GROUP BY code) l`
	const givenUp = `(SELECT 1 FROM barcodes_load g WHERE g.gone = 1 AND g.code = l.code AND g.product_id = l.product_id AND g.rowid > l.r)`
	var gone bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM barcodes_load WHERE gone = 1)`).Scan(&gone); err != nil {
		return fmt.Errorf("storage: move staged barcodes: %w", err)
	}
	qs := []string{
		// Nothing given up, as in a first sync: in this order INSERT OR REPLACE leaves the last
		// take of each barcode.
		`INSERT OR REPLACE INTO barcodes(code, product_id) SELECT code, product_id FROM barcodes_load ORDER BY code, rowid`,
	}
	if gone {
		qs = []string{
			`INSERT OR REPLACE INTO barcodes(code, product_id) SELECT code, product_id FROM ` + last + ` WHERE NOT EXISTS ` + givenUp + ` ORDER BY code`,
			`DELETE FROM barcodes WHERE code IN (SELECT code FROM ` + last + ` WHERE EXISTS ` + givenUp + `)`,
		}
	}
	for _, q := range append(qs, `DELETE FROM barcodes_load`) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("storage: move staged barcodes: %w", err)
		}
	}
	return nil
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
// answered that the cursor expired). That snapshot replaces the collection: what it lacks is
// deleted once the feed catches up (see resnapshot.go).
func (db *DB) ResetCursor(ctx context.Context, collection string) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage: reset cursor: %w", err)
	}
	defer tx.Rollback()
	if err := startResnapshot(ctx, tx, collection); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storage: reset cursor: %w", err)
	}
	db.updateState(collection, func(s *FeedState) { s.Cursor, s.Resnapshot = "", true })
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

const qQuarantine = `SELECT collection, item_id, rev, reason, raw, at FROM quarantine
	WHERE ? = '' OR collection = ? ORDER BY id DESC LIMIT ?`

// Quarantine lists up to limit quarantined lines, newest first; collection "" means all.
func (db *DB) Quarantine(ctx context.Context, collection string, limit int) ([]QuarantineEntry, error) {
	rows, err := db.stmt(qQuarantine).QueryContext(ctx, collection, collection, limit)
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
	db         *DB
	collection string
	bulk       bool // products only: leave the search index to the rebuild at the end
	held       bool // the last chunk of applyMany may have met rows held already
	// fillsEmpty: the load fills a table that was empty (its count triggers dropped). A chunk's
	// statement then leaves the rows it holds alone in every collection, not only products, so
	// that the number it wrote says whether every row was new and the load's count is exact.
	fillsEmpty bool
	stmts      []*sql.Stmt
	upsert     *sql.Stmt
	del        *sql.Stmt
	lookup     *sql.Stmt
	ftsInsert  *sql.Stmt
	ftsDelete  *sql.Stmt
	search     []searchEntry // search index changes waiting for flushSearch, in order
	clearCodes *sql.Stmt
	addCode    *sql.Stmt
	// Bulk loads: rows many to a statement (see applyMany).
	tx        *sql.Tx
	insertN   map[int]*sql.Stmt // by number of rows
	upsertN   map[int]*sql.Stmt
	addCodesN map[int]*sql.Stmt
	lookupRev *sql.Stmt
	lookupDoc *sql.Stmt
	dropCode  *sql.Stmt
	args      []any
	cargs     []any
	applied   []bool
	codes     []string // barcode, product id, … of a chunk
	codesAt   []int    // where each change's pairs start in codes
	own       []string // the pairs of one product
}

func (db *DB) newApplier(ctx context.Context, tx *sql.Tx, collection string, bulk bool) (*applier, error) {
	a := &applier{db: db, collection: collection, bulk: bulk, tx: tx,
		insertN: make(map[int]*sql.Stmt), upsertN: make(map[int]*sql.Stmt), addCodesN: make(map[int]*sql.Stmt)}
	var err error
	prep := preparer(func(q string) (*sql.Stmt, error) { return db.txStmt(ctx, tx, q) }, &a.stmts, &err)
	if collection == cloudapi.Products {
		a.upsert = prep(`INSERT INTO products(id, rev, seq, deleted, name, brand, category, doc) VALUES (?, ?, ?, 0, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 0, name = excluded.name,
			brand = excluded.brand, category = excluded.category, doc = excluded.doc WHERE excluded.rev > products.rev`)
		a.del = prep(`INSERT INTO products(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 1, NULL)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 1, name = '', brand = '', category = '', doc = NULL
			WHERE excluded.rev > products.rev`)
		a.addCode = prep(`INSERT OR REPLACE INTO barcodes(code, product_id) VALUES (?, ?)`)
		if bulk {
			a.lookupDoc = prep(`SELECT rev, seq, deleted, doc FROM products WHERE id = ?`)
			a.dropCode = prep(`DELETE FROM barcodes WHERE code = ? AND product_id = ?`)
		} else {
			a.lookup = prep(`SELECT rowid, rev, deleted, name, brand, category FROM products WHERE id = ?`)
			a.ftsInsert = prep(`INSERT INTO products_fts(rowid, name, brand, category) VALUES (?, ?, ?, ?)`)
			a.ftsDelete = prep(`INSERT INTO products_fts(products_fts, rowid, name, brand, category) VALUES ('delete', ?, ?, ?, ?)`)
			a.clearCodes = prep(`DELETE FROM barcodes WHERE product_id = ?`)
		}
	} else {
		// The table name comes from the fixed list of collections, never from input.
		a.upsert = prep(`INSERT INTO ` + collection + `(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 0, ?)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 0, doc = excluded.doc WHERE excluded.rev > ` + collection + `.rev`)
		a.del = prep(`INSERT INTO ` + collection + `(id, rev, seq, deleted, doc) VALUES (?, ?, ?, 1, NULL)
			ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = 1, doc = NULL WHERE excluded.rev > ` + collection + `.rev`)
		a.lookupRev = prep(`SELECT rev, seq FROM ` + collection + ` WHERE id = ?`)
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

// productDoc returns the parsed document of a products upsert.
func productDoc(c *cloudapi.Change) (cloudapi.Product, error) {
	if c.Product != nil {
		return *c.Product, nil
	}
	return cloudapi.ParseProduct(c.ID, c.Doc)
}

// applyProduct also keeps the barcode index and the search index in step. Only live products are
// in the search index.
func (a *applier) applyProduct(ctx context.Context, c *cloudapi.Change, seq int64) (bool, error) {
	var old struct {
		rowid, rev            int64
		deleted               bool
		name, brand, category string
	}
	found := false
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
	p, r, wrote, err := a.writeProduct(ctx, c, seq)
	if !wrote || err != nil {
		return false, err
	}
	if found && !old.deleted {
		a.search = append(a.search, searchEntry{true, old.rowid, old.name, old.brand, old.category})
	}
	if c.Op == cloudapi.OpUpsert {
		rowid := old.rowid
		if !found {
			if rowid, err = r.LastInsertId(); err != nil {
				return false, err
			}
		}
		a.search = append(a.search, searchEntry{false, rowid, p.Name, p.Brand, p.Category})
	}
	// A product seen for the first time has no barcodes to clear.
	if found {
		if _, err := a.clearCodes.ExecContext(ctx, c.ID); err != nil {
			return false, err
		}
	}
	return true, a.addCodes(ctx, c.ID, p.Barcodes)
}

// writeProduct writes a product change with the single-row statements and reports whether it
// was newer than the row held; p is the document of an upsert, r the statement's result.
func (a *applier) writeProduct(ctx context.Context, c *cloudapi.Change, seq int64) (p cloudapi.Product, r sql.Result, wrote bool, err error) {
	if c.Op == cloudapi.OpDelete {
		r, err = a.del.ExecContext(ctx, c.ID, c.Rev, seq)
	} else {
		if p, err = productDoc(c); err != nil {
			return p, nil, false, err
		}
		r, err = a.upsert.ExecContext(ctx, c.ID, c.Rev, seq, p.Name, p.Brand, p.Category, string(c.Doc))
	}
	if err != nil {
		return p, nil, false, err
	}
	n, err := r.RowsAffected()
	return p, r, err == nil && n > 0, err
}

// searchEntry is a change of the search index: the removal of a product's old terms, or the
// addition of its new ones.
type searchEntry struct {
	remove                bool
	rowid                 int64
	name, brand, category string
}

// flushSearch writes the search index changes of the page's products, in order. They wait until
// every product row is written: a write to a table with triggers (the row counts) opens a
// statement savepoint, and FTS5 writes its pending terms out at each savepoint, which made
// every product change cost about twice as much when the two were interleaved.
func (a *applier) flushSearch(ctx context.Context) error {
	for _, e := range a.search {
		st := a.ftsInsert
		if e.remove {
			st = a.ftsDelete
		}
		if _, err := st.ExecContext(ctx, e.rowid, e.name, e.brand, e.category); err != nil {
			return fmt.Errorf("storage: search index: %w", err)
		}
	}
	a.search = a.search[:0]
	return nil
}

// chunkRows is the number of changes a bulk load writes with one statement.
const chunkRows = 64

// stmtN returns the statement of n rows made by q, preparing it on first use.
func (a *applier) stmtN(ctx context.Context, cache map[int]*sql.Stmt, n int, q func(n int) string) (*sql.Stmt, error) {
	if st := cache[n]; st != nil {
		return st, nil
	}
	st, err := a.db.txStmt(ctx, a.tx, q(n))
	if err != nil {
		return nil, err
	}
	a.stmts = append(a.stmts, st)
	cache[n] = st
	return st, nil
}

// maxWriteStmts bounds the statements kept prepared for page transactions: the few of each
// collection, and one per number of rows up to chunkRows for its rows and its barcodes.
const maxWriteStmts = 512

// txStmt returns q prepared in tx. A statement the writer's connection keeps prepared is used as
// it is; another is prepared in tx and noted, to be kept once tx is over (see keepWriteStmts):
// preparing the statements of each page again cost a twentieth of a first sync. Called with
// wmu held.
func (db *DB) txStmt(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	if st := db.wstmts[q]; st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	if len(db.wstmts)+len(db.wmissed) < maxWriteStmts {
		db.wmissed = append(db.wmissed, q)
	}
	return tx.PrepareContext(ctx, q)
}

// keepWriteStmts prepares on the writer's connection the statements the last transaction had to
// prepare for itself. Called with wmu held and no transaction open.
func (db *DB) keepWriteStmts(ctx context.Context) {
	for _, q := range db.wmissed {
		if db.wstmts == nil { // closed
			break
		}
		if db.wstmts[q] != nil {
			continue
		}
		st, err := db.w.PrepareContext(ctx, q)
		if err != nil {
			break // prepared in its transaction again next time
		}
		db.wstmts[q] = st
	}
	db.wmissed = db.wmissed[:0]
}

func rowsSQL(n int, row string) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// insertSQL writes n rows. A product already held is left alone, to be handled by
// loadExisting, so that its old barcodes can be found. A row of another collection replaces the
// one held when its revision is newer (upsertSQL), unless the load fills an empty table: then it
// is left alone too, and upsertSQL follows only for a chunk that met one.
func (a *applier) insertSQL(n int) string {
	if a.collection == cloudapi.Products {
		return `INSERT INTO products(id, rev, seq, deleted, name, brand, category, doc) VALUES ` + rowsSQL(n, "(?,?,?,?,?,?,?,?)") +
			` ON CONFLICT(id) DO NOTHING`
	}
	if a.fillsEmpty {
		return `INSERT INTO ` + a.collection + `(id, rev, seq, deleted, doc) VALUES ` + rowsSQL(n, "(?,?,?,?,?)") + ` ON CONFLICT(id) DO NOTHING`
	}
	return a.upsertSQL(n)
}

// upsertSQL writes n rows of a collection other than products, replacing a row held when its
// revision is newer.
func (a *applier) upsertSQL(n int) string {
	c := a.collection // from the fixed list of collections, never from input
	return `INSERT INTO ` + c + `(id, rev, seq, deleted, doc) VALUES ` + rowsSQL(n, "(?,?,?,?,?)") +
		` ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, seq = excluded.seq, deleted = excluded.deleted, doc = excluded.doc WHERE excluded.rev > ` + c + `.rev`
}

// applyMany writes the changes of a chunk of a bulk load, change i with sequence number seq+i,
// and reports which of them were newer than what the shop held. When every row is written, as is
// usual in a first sync, that takes one statement per chunk (and one per chunk of barcodes).
func (a *applier) applyMany(ctx context.Context, changes []cloudapi.Change, seq int64) ([]bool, error) {
	if err := a.chunkArgs(changes, seq); err != nil {
		return nil, err
	}
	n, err := a.execChunk(ctx, a.insertN, len(changes), a.insertSQL)
	if err != nil {
		return nil, err
	}
	// Only a statement that leaves the rows it holds alone says by its count that every row was
	// new (insertSQL).
	a.held = n != len(changes) || a.collection != cloudapi.Products && !a.fillsEmpty
	if a.held && a.collection != cloudapi.Products && a.fillsEmpty {
		// Some rows were held already (the snapshot holds an item twice): replace those the
		// chunk has newer. The rows just written carry the chunk's revisions and stay as they
		// are, so the two statements write, and count, what upsertSQL alone would have.
		more, err := a.execChunk(ctx, a.upsertN, len(changes), a.upsertSQL)
		if err != nil {
			return nil, err
		}
		n += more
	}
	a.applied = a.applied[:0]
	if n == len(changes) {
		for range changes {
			a.applied = append(a.applied, true)
		}
		return a.applied, a.addCodesMany(ctx, a.codes)
	}
	return a.applied, a.applyHeld(ctx, changes, seq)
}

// execChunk runs the statement of q for the rows in a.args and returns how many rows it wrote.
func (a *applier) execChunk(ctx context.Context, cache map[int]*sql.Stmt, rows int, q func(n int) string) (int, error) {
	st, err := a.stmtN(ctx, cache, rows, q)
	if err != nil {
		return 0, err
	}
	r, err := st.ExecContext(ctx, a.args...)
	if err != nil {
		return 0, err
	}
	n, err := r.RowsAffected()
	return int(n), err
}

// chunkArgs fills a.args with the rows of a chunk's statement and, for products, a.codes with
// their barcode, product id pairs (a.codesAt says where each change's start).
func (a *applier) chunkArgs(changes []cloudapi.Change, seq int64) error {
	a.args = a.args[:0]
	a.codes = a.codes[:0]
	a.codesAt = a.codesAt[:0]
	for i := range changes {
		a.codesAt = append(a.codesAt, len(a.codes))
		c := &changes[i]
		deleted := c.Op == cloudapi.OpDelete
		var doc any
		if !deleted {
			doc = string(c.Doc)
		}
		if a.collection != cloudapi.Products {
			a.args = append(a.args, c.ID, c.Rev, seq+int64(i), deleted, doc)
			continue
		}
		var p cloudapi.Product
		if !deleted {
			var err error
			if p, err = productDoc(c); err != nil {
				return fmt.Errorf("%s rev %d: %w", c.ID, c.Rev, err)
			}
		}
		a.args = append(a.args, c.ID, c.Rev, seq+int64(i), deleted, p.Name, p.Brand, p.Category, doc)
		for _, code := range p.Barcodes {
			a.codes = append(a.codes, code, c.ID)
		}
	}
	return nil
}

// applyHeld finishes a chunk of which some rows were held already, appending to a.applied. A
// row the chunk's statement wrote carries its revision and sequence number; any other change is
// handled one by one, in order, so a barcode that moves between products ends up where the feed
// last put it.
func (a *applier) applyHeld(ctx context.Context, changes []cloudapi.Change, seq int64) error {
	for i := range changes {
		c := &changes[i]
		var rev, held int64
		var deleted bool
		var doc sql.NullString
		var err error
		if a.collection == cloudapi.Products {
			err = a.lookupDoc.QueryRowContext(ctx, c.ID).Scan(&rev, &held, &deleted, &doc)
		} else {
			err = a.lookupRev.QueryRowContext(ctx, c.ID).Scan(&rev, &held)
		}
		if err != nil {
			return fmt.Errorf("%s rev %d: %w", c.ID, c.Rev, err)
		}
		wrote := rev == c.Rev && held == seq+int64(i)
		if a.collection != cloudapi.Products {
			a.applied = append(a.applied, wrote)
			continue
		}
		ok := true
		if wrote {
			end := len(a.codes)
			if i+1 < len(changes) {
				end = a.codesAt[i+1]
			}
			err = a.addCodesMany(ctx, a.codes[a.codesAt[i]:end])
		} else {
			ok, err = a.loadExisting(ctx, c, seq+int64(i), rev, deleted, doc)
		}
		if err != nil {
			return fmt.Errorf("%s rev %d: %w", c.ID, c.Rev, err)
		}
		a.applied = append(a.applied, ok)
	}
	return nil
}

// stageCodesSQL stages n barcode, product id pairs; gone is 0 or 1 for all of them.
func stageCodesSQL(n int) string {
	return `INSERT INTO barcodes_load(code, product_id, gone) VALUES ` + rowsSQL(n, "(?,?,?)")
}

// addCodesMany stages barcode, product id pairs for moveStagedCodes, many to a statement.
func (a *applier) addCodesMany(ctx context.Context, codes []string) error {
	return a.stageCodes(ctx, codes, false)
}

func (a *applier) stageCodes(ctx context.Context, codes []string, gone bool) error {
	const perStmt = chunkRows
	args := a.cargs
	for start := 0; start < len(codes); start += 2 * perStmt {
		part := codes[start:min(start+2*perStmt, len(codes))]
		st, err := a.stmtN(ctx, a.addCodesN, len(part)/2, stageCodesSQL)
		if err != nil {
			return err
		}
		args = args[:0]
		for i := 0; i < len(part); i += 2 {
			args = append(args, part[i], part[i+1], gone)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return err
		}
	}
	a.cargs = args
	return nil
}

// loadExisting applies, during a bulk load, a change of a product the shop held before: its old
// barcodes are found in its old document, since barcodes_product may be missing.
func (a *applier) loadExisting(ctx context.Context, c *cloudapi.Change, seq, oldRev int64, oldDeleted bool, oldDoc sql.NullString) (bool, error) {
	if oldRev >= c.Rev {
		return false, nil
	}
	p, _, wrote, err := a.writeProduct(ctx, c, seq)
	if !wrote || err != nil {
		return false, err
	}
	a.own = a.own[:0]
	if !oldDeleted && oldDoc.Valid {
		// The barcodes held for a product are those of its document, less any that a later
		// product took over, hence the product_id in the delete. The same holds of those staged.
		var held struct {
			Barcodes []string `json:"barcodes"`
		}
		if err := json.Unmarshal([]byte(oldDoc.String), &held); err != nil {
			return false, fmt.Errorf("stored document: %w", err)
		}
		for _, code := range held.Barcodes {
			if _, err := a.dropCode.ExecContext(ctx, code, c.ID); err != nil {
				return false, err
			}
			a.own = append(a.own, code, c.ID)
		}
		if err := a.stageCodes(ctx, a.own, true); err != nil {
			return false, err
		}
	}
	a.own = a.own[:0]
	for _, code := range p.Barcodes {
		a.own = append(a.own, code, c.ID)
	}
	return true, a.addCodesMany(ctx, a.own)
}

func (a *applier) addCodes(ctx context.Context, id string, codes []string) error {
	for _, code := range codes {
		if _, err := a.addCode.ExecContext(ctx, code, id); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) close() {
	closeAll(a.stmts)
	a.stmts = nil
}

// preparer returns a function that prepares statements with prepare and adds each to *stmts,
// until one fails: *err holds that failure, and later calls return nil.
func preparer(prepare func(q string) (*sql.Stmt, error), stmts *[]*sql.Stmt, err *error) func(q string) *sql.Stmt {
	return func(q string) *sql.Stmt {
		if *err != nil {
			return nil
		}
		s, e := prepare(q)
		if e != nil {
			*err = e
			return nil
		}
		*stmts = append(*stmts, s)
		return s
	}
}

func closeAll(stmts []*sql.Stmt) {
	for _, s := range stmts {
		s.Close()
	}
}
