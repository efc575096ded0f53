// Package storage is the shop's local database: one SQLite file in WAL mode holding the synced
// catalog collections, their feed positions and the quarantine of malformed feed lines.
//
// There is exactly one writer connection, so writes never contend and the local change sequence
// can be handed out in memory; reads go through a separate pool of read-only connections and are
// never blocked by a sync in progress.
package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/storeedge/storeedge/internal/hotcache"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrNotFound is returned by lookups of an item that does not exist or was deleted.
var ErrNotFound = errors.New("storage: not found")

// DB is the local database.
type DB struct {
	path string
	w    *sql.DB    // the one writer connection
	r    *sql.DB    // read-only connections
	ids  *idReserve // the marks of the numbers given out (ids.go); nil until Open has checked them
	// idsRaised says why Open raised the counters of the numbers given out, "" when it did not.
	idsRaised string
	closed    bool // Close has begun: no more writes (guarded by wmu)

	// Prepared read statements, by query text: SQLite would otherwise parse the SQL of every
	// device request again, which costs more than the lookup itself.
	stmts map[string]*sql.Stmt

	seq atomic.Int64 // last local change sequence committed, persisted in meta
	// durable is the last local change sequence known to be on the disk (DurableHead).
	durable   atomic.Int64
	durableMu sync.Mutex // one head moved at a time
	flush     walFlush   // the WAL's flushes, shared by those who wait for them (flush.go)
	wal       *os.File   // the handle syncWAL keeps on the WAL; guarded by flush.mu
	// ftsStale: the search index waits for the end of a bulk load of products, whose barcodes
	// are staged until then; persisted in meta. Written under wmu, read by any reader.
	ftsStale atomic.Bool

	wmu        sync.Mutex           // serialises write transactions; protects the fields below
	deferred   map[string]bool      // collections in a bulk load: their secondary indexes are dropped
	uncounted  map[string]bool      // collections in a bulk load of an empty table: their count triggers are dropped
	countExact map[string]bool      // of those, the ones whose load has counted its rows exactly so far
	bigWAL     bool                 // the writer checkpoints rarely, during a bulk load
	gcRaised   bool                 // paceCollector raised GOGC for a bulk load, from gcPercent
	gcPercent  int                  // the GOGC to put back
	smallCache bool                 // the writer's page cache is cut down for the sorts that end a bulk load
	feedMoved  bool                 // the delta feed changed since the last page that caught up
	wstmts     map[string]*sql.Stmt // statements of page transactions kept prepared, by query text
	wmissed    []string             // queries the transaction under way prepared for itself

	// state is the feeds' state by collection, read without a lock on every catalog answer (for
	// its data-age headers): a map never modified once stored, replaced whole under smu.
	smu   sync.Mutex
	state atomic.Pointer[map[string]FeedState]

	events    signal    // an event was committed
	tail      eventTail // the newest events, for the followers of the event stream
	outboxSig signal    // an outbox entry became pending

	hot        *hotcache.Cache // products by id and barcode; nil when off (see hot.go)
	warmSig    signal          // a collection caught up: time to warm hot, if wanted
	catalogSig signal          // a page caught up after the delta feed devices follow changed
	warmWant   atomic.Bool     // a bulk load ended since the last warm pass
	warmDone   signal          // a warm pass ended

	epoch        string     // the delta feed's epoch (epoch.go), set by Open
	epochRenewed string     // why Open renewed it, "" when it did not
	upgraded     string     // what Open upgraded the schema from, "" when it did not
	epochFile    string     // the file that notices a database gone back in time
	epochMu      sync.Mutex // one write of epochFile at a time; protects epochNoted
	epochNoted   time.Time  // last write of epochFile
	givenWritten int64      // the Given epochFile holds (from earlier runs, read at open)
	runs         []runMark  // the runs epochFile records, this one last (set by Open)
}

// Open opens (creating if needed) the database at path and applies pending migrations. Before
// it migrates an existing database forward it keeps a copy of it (UpgradeCopyPath); it refuses
// a database that a newer storeedge migrated further than this one knows (*SchemaError).
func Open(ctx context.Context, path string) (*DB, error) {
	ms, err := embeddedMigrations()
	if err != nil {
		return nil, err
	}
	return openWith(ctx, path, ms)
}

// openWith is Open with the given migrations.
func openWith(ctx context.Context, path string, ms []migration) (*DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("storage: create data directory: %w", err)
		}
	}
	w, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	db := &DB{path: path, w: w, epochFile: epochFile(path), wstmts: map[string]*sql.Stmt{}}
	if err := db.migrate(ctx, ms); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0)*2)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	db.r = r
	var seq int64
	var ftsStale bool
	if err := db.w.QueryRowContext(ctx, `SELECT (SELECT value FROM meta WHERE key = 'seq'), (SELECT value FROM meta WHERE key = 'fts_stale')`).Scan(&seq, &ftsStale); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: read sequence: %w", err)
	}
	db.ftsStale.Store(ftsStale)
	db.seq.Store(seq)
	wentBack, err := db.checkEpoch(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	// A database that went back (a copy put back by hand, commits a power cut undid) may have
	// given out numbers it no longer holds, whether or not devices hold delta feed positions.
	if err := db.checkIDs(ctx, wentBack); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.loadDeferred(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.loadUncounted(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.loadState(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.prepareReads(ctx); err != nil {
		db.Close()
		return nil, err
	}
	db.tail.size, db.tail.bytes = EventTailSize, EventTailBytes
	db.tail.load(ctx, db.w)
	// The handle the flushes sync is opened now, not at the first flush: a failure SQLite meets
	// and drops before it (a checkpoint of the catalog's first sync) is then reported to it.
	db.flush.mu.Lock()
	db.syncWALLocked()
	db.flush.mu.Unlock()
	return db, nil
}

// syncWALLocked syncs the WAL outside a wait, a failure of the disk recorded as a wait's is.
// Called with flush.mu held.
func (db *DB) syncWALLocked() {
	if err := db.syncWAL(); err != nil {
		if de := (*diskFlushError)(nil); errors.As(err, &de) {
			db.flush.fail(err)
		}
	}
}

func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// A larger page cache for the writer keeps the indexes of a million-row catalog warm
		// during a first sync; readers keep SQLite's default.
		q.Add("_pragma", fmt.Sprintf("cache_size(%d)", writerCacheKiB))
		q.Add("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// statusReads are the read queries of GET /api/v1/status and the metrics. Prepared once, they
// parse no SQL on each call, and so allocate much less in SQLite's allocator, which every
// connection shares with the writer: during a bulk load a reader waiting for it waits behind
// the writer (docs/PERFORMANCE.md, sixth round).
var statusReads = []string{qQuarantine, qMediaUsage, qMediaFailureCounts, qMediaFailures, qAlertStates, qAlertQueue,
	qQueueDepths, qOrderCounts, qOutboxBacklog}

// prepareReads prepares the read queries that devices hit all the time, and those of the status.
func (db *DB) prepareReads(ctx context.Context) error {
	db.stmts = make(map[string]*sql.Stmt)
	queries := append([]string{qProductByBarcode, qProductsInCategory, qSearch, qBarcodes}, statusReads...)
	for _, c := range cloudapi.Collections {
		queries = append(queries, qGet(c), qList(c))
	}
	for _, q := range queries {
		st, err := db.r.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("storage: prepare %q: %w", q, err)
		}
		db.stmts[q] = st
	}
	return nil
}

// stmt returns the prepared statement of a query prepared by prepareReads.
func (db *DB) stmt(q string) *sql.Stmt { return db.stmts[q] }

// Close closes every connection.
func (db *DB) Close() error {
	var errs []error
	if db.epoch != "" {
		db.wmu.Lock()
		errs = append(errs, db.writeEpochFile())
		db.wmu.Unlock()
	}
	for _, st := range db.stmts {
		errs = append(errs, st.Close())
	}
	db.wmu.Lock()
	for _, st := range db.wstmts {
		errs = append(errs, st.Close())
	}
	db.wstmts = nil
	db.paceCollector(false) // a bulk load cut short leaves the collector as it found it
	// Every commit on the disk, then the ids file says the stop was clean: the next Open need
	// raise nothing. Nothing is written after: a writer that comes later is refused.
	db.closed = true
	// A flush under way ends first, its failure counting, and none starts until the stop is
	// recorded (lock order: wmu, then flush.mu).
	db.flush.mu.Lock()
	// A failure SQLite met and dropped (a checkpoint's sync) shows on the handle kept open.
	db.syncWALLocked()
	broken := db.FlushFailed()
	if db.ids != nil && broken != nil {
		// The disk failed a flush: no sync now can say what it holds, so the stop is not
		// called clean, and the next start raises the counters past what may be lost.
		errs = append(errs, fmt.Errorf("storage: not recorded as a clean stop: %w", broken))
		db.ids = nil
	}
	if db.ids != nil {
		if err := db.syncForClose(context.Background()); err != nil {
			errs = append(errs, err)
			db.ids = nil
		} else {
			errs = append(errs, db.closeIDs())
		}
	}
	if db.wal != nil {
		errs = append(errs, db.wal.Close())
		db.wal = nil
	}
	db.flush.mu.Unlock()
	db.wmu.Unlock()
	if db.r != nil {
		errs = append(errs, db.r.Close())
	}
	errs = append(errs, db.w.Close())
	if db.hot != nil {
		errs = append(errs, db.hot.Close())
	}
	return errors.Join(errs...)
}

// IntegrityCheck runs PRAGMA integrity_check and returns nil when the database is sound.
func (db *DB) IntegrityCheck(ctx context.Context) error {
	if err := integrityCheck(ctx, db.r, "integrity_check"); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// Ping reads the database, as a health check: nil when it answers.
func (db *DB) Ping(ctx context.Context) error {
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM meta`).Scan(&n); err != nil {
		return fmt.Errorf("storage: ping: %w", err)
	}
	return nil
}
