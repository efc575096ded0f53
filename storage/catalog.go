package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Item is one live item of a collection as the cloud sent it.
type Item struct {
	ID  string          `json:"id"`
	Rev int64           `json:"rev"`
	Seq int64           `json:"seq"`
	Doc json.RawMessage `json:"doc"`
}

// Get returns a live item of a collection by id, or ErrNotFound.
func (db *DB) Get(ctx context.Context, collection, id string) (Item, error) {
	return db.GetAppend(ctx, nil, collection, id)
}

// GetAppend is Get for a caller that reuses a buffer: a document read from the read cache is
// appended to buf, so that a lookup answered from memory allocates nothing for it. The item's
// Doc may share buf's memory; buf must not be reused while the item is in use.
func (db *DB) GetAppend(ctx context.Context, buf []byte, collection, id string) (Item, error) {
	if !cloudapi.IsCollection(collection) {
		return Item{}, fmt.Errorf("storage: unknown collection %q", collection)
	}
	if collection == cloudapi.Products && db.hot != nil {
		return db.getProduct(ctx, buf, id)
	}
	return db.one(ctx, qGet(collection), id)
}

// The read queries, prepared once by prepareReads. Table names come from the fixed list of
// collections, never from input.
func qGet(collection string) string {
	return `SELECT id, rev, seq, doc FROM ` + collection + ` WHERE id = ? AND deleted = 0`
}

func qList(collection string) string {
	return `SELECT id, rev, seq, doc FROM ` + collection + ` WHERE id > ? AND deleted = 0 ORDER BY id LIMIT ?`
}

const (
	qProductByBarcode = `SELECT p.id, p.rev, p.seq, p.doc FROM barcodes b JOIN products p ON p.id = b.product_id
		WHERE b.code = ? AND p.deleted = 0`
	qProductsInCategory = `SELECT id, rev, seq, doc FROM products WHERE category = ? AND deleted = 0 AND id > ? ORDER BY id LIMIT ?`
	qSearch             = `SELECT p.id, p.rev, p.seq, p.doc FROM products_fts f JOIN products p ON p.rowid = f.rowid
		WHERE products_fts MATCH ? AND p.deleted = 0 ORDER BY f.rank, p.id LIMIT ? OFFSET ?`
)

// ProductByBarcode returns the live product carrying a barcode, or ErrNotFound.
func (db *DB) ProductByBarcode(ctx context.Context, code string) (Item, error) {
	return db.ProductByBarcodeAppend(ctx, nil, code)
}

// ProductByBarcodeAppend is ProductByBarcode with a reused buffer, as GetAppend is Get.
func (db *DB) ProductByBarcodeAppend(ctx context.Context, buf []byte, code string) (Item, error) {
	if db.hot != nil {
		return db.productByBarcode(ctx, buf, code)
	}
	return db.one(ctx, qProductByBarcode, code)
}

func (db *DB) one(ctx context.Context, q string, args ...any) (Item, error) {
	var it Item
	var doc string
	err := db.stmt(q).QueryRowContext(ctx, args...).Scan(&it.ID, &it.Rev, &it.Seq, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, ErrNotFound
	}
	if err != nil {
		return Item{}, fmt.Errorf("storage: get: %w", err)
	}
	it.Doc = json.RawMessage(doc)
	return it, nil
}

// List returns up to limit live items of a collection with ids greater than after, in id order.
func (db *DB) List(ctx context.Context, collection, after string, limit int) ([]Item, error) {
	if !cloudapi.IsCollection(collection) {
		return nil, fmt.Errorf("storage: unknown collection %q", collection)
	}
	return db.many(ctx, db.stmt(qList(collection)), after, limit)
}

// GetMany returns the live items of a collection among ids, in id order; missing ids are absent.
func (db *DB) GetMany(ctx context.Context, collection string, ids []string) ([]Item, error) {
	if !cloudapi.IsCollection(collection) {
		return nil, fmt.Errorf("storage: unknown collection %q", collection)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `SELECT id, rev, seq, doc FROM ` + collection + ` WHERE deleted = 0 AND id IN (?` + strings.Repeat(",?", len(ids)-1) + `) ORDER BY id`
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: query: %w", err)
	}
	return scanItems(rows)
}

// ProductsInCategory returns up to limit live products of a category with ids greater than after.
func (db *DB) ProductsInCategory(ctx context.Context, category, after string, limit int) ([]Item, error) {
	return db.many(ctx, db.stmt(qProductsInCategory), category, after, limit)
}

// Search runs a full-text search over product name, brand and category. Every word of the query
// must match, the last one as a prefix (so typing "choc" finds "chocolate"). Results are ordered by
// relevance; offset and limit page through them.
func (db *DB) Search(ctx context.Context, query string, offset, limit int) ([]Item, error) {
	match := ftsQuery(query)
	if match == "" {
		return nil, nil
	}
	return db.many(ctx, db.stmt(qSearch), match, limit, offset)
}

// MaxSearchWords is the most words a search may have; every word must match.
const MaxSearchWords = 16

// SearchWords splits what a person typed into the words a search matches: runs of letters,
// digits and the marks that go with them (an accent typed as a combining character, "e" then
// U+0301, stays in its word, and the index ignores it as it ignores "é").
func SearchWords(q string) []string {
	words := strings.FieldsFunc(q, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r) })
	// A mark with no letter (typed after a space) is no word.
	return slices.DeleteFunc(words, func(w string) bool {
		return !strings.ContainsFunc(w, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) })
	})
}

// ftsQuery turns what a person typed into an FTS5 query of quoted terms, so no input can be read
// as FTS5 syntax. The server refuses a query of more than MaxSearchWords words; past them,
// words are dropped here.
func ftsQuery(q string) string {
	words := SearchWords(q)
	if len(words) > MaxSearchWords {
		words = words[:MaxSearchWords]
	}
	for i, w := range words {
		words[i] = `"` + w + `"`
	}
	if len(words) > 0 {
		words[len(words)-1] += "*"
	}
	return strings.Join(words, " ")
}

// Category is a product category with its number of live products.
type Category struct {
	Name     string `json:"name"`
	Products int64  `json:"products"`
}

// Categories lists the categories of live products, by name.
func (db *DB) Categories(ctx context.Context) ([]Category, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT category, count(*) FROM products WHERE deleted = 0 GROUP BY category ORDER BY category`)
	if err != nil {
		return nil, fmt.Errorf("storage: categories: %w", err)
	}
	defer rows.Close()
	var out []Category
	for rows.Next() {
		var c Category
		if err := rows.Scan(&c.Name, &c.Products); err != nil {
			return nil, fmt.Errorf("storage: categories: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// many runs a prepared statement that selects items.
func (db *DB) many(ctx context.Context, st *sql.Stmt, args ...any) ([]Item, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: query: %w", err)
	}
	return scanItems(rows)
}

// scanItems reads (id, rev, seq, doc) rows and closes them.
func scanItems(rows *sql.Rows) ([]Item, error) {
	defer rows.Close()
	out := []Item{}
	for rows.Next() {
		var it Item
		var doc string
		if err := rows.Scan(&it.ID, &it.Rev, &it.Seq, &doc); err != nil {
			return nil, fmt.Errorf("storage: query: %w", err)
		}
		it.Doc = json.RawMessage(doc)
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: query: %w", err)
	}
	return out, nil
}

// Count returns the number of live items of a collection as of the last committed page. It reads
// no table: the row_counts triggers keep the count in each page's transaction, which publishes it
// with the feed's state, so that a status poll costs nothing during a first sync.
func (db *DB) Count(ctx context.Context, collection string) (int64, error) {
	if !cloudapi.IsCollection(collection) {
		return 0, fmt.Errorf("storage: unknown collection %q", collection)
	}
	st, _ := db.FeedState(collection)
	return st.Rows, nil
}

// LocalChange is one entry of the device delta feed: an item of a collection that changed at
// local sequence Seq. Doc is absent for a deletion.
type LocalChange struct {
	Seq        int64           `json:"seq"`
	Collection string          `json:"collection"`
	ID         string          `json:"id"`
	Op         string          `json:"op"`
	Rev        int64           `json:"rev"`
	Doc        json.RawMessage `json:"doc,omitempty"`
}

// LoadingProducts tells whether a bulk load of products is under way (a first sync, a reading
// of the whole collection again, a backlog of 50,000 changes or more): until it ends, the
// barcodes it brings are not looked up and the search index holds what it held before it.
func (db *DB) LoadingProducts() bool { return db.ftsStale.Load() }

// Seq returns the last local change sequence committed. It never waits for a write in progress.
// It moves just after the commit, so a read may already see changes above it: DurableHead is the
// figure to hold a device's position against.
func (db *DB) Seq() int64 { return db.seq.Load() }

// AnySeq as Changes's upTo bounds nothing.
const AnySeq = math.MaxInt64

// DurableHead is the position of the delta feed a device may be given: the last local change
// sequence that is on the disk. The database's commits do not each wait for the disk
// (synchronous NORMAL), so a power cut can undo the last seconds of them; a device given a change
// of those would hold a position the database then numbers again with other changes, under the
// same epoch, and skip them. So the changes committed since the last call are made durable
// first (an fsync of the WAL), once for the devices that ask together: at most one disk flush per
// commit, and none while the catalog does not change.
func (db *DB) DurableHead(ctx context.Context) (int64, error) {
	if seq, durable := db.seq.Load(), db.durable.Load(); seq <= durable {
		return durable, nil
	}
	db.durableMu.Lock()
	defer db.durableMu.Unlock()
	if err := ctx.Err(); err != nil { // the device went away while another request synced
		return 0, err
	}
	seq := db.seq.Load() // every commit up to it is in the WAL: seq moves after its commit
	if durable := db.durable.Load(); seq <= durable {
		return durable, nil
	}
	if err := db.syncCommitted(ctx); err != nil {
		return 0, fmt.Errorf("storage: sync the delta feed to the disk: %w", err)
	}
	// What is given out is on the disk before it is: a restore after a crash then knows that
	// devices hold it (epoch.go).
	if err := db.noteGiven(seq); err != nil {
		return 0, fmt.Errorf("storage: write %s: %w", filepath.Base(db.epochFile), err)
	}
	db.durable.Store(seq)
	return seq, nil
}

// syncWAL flushes the database's write-ahead log to the disk, which makes every commit in it
// durable (what a checkpoint moved to the database file, SQLite synced with it). Called with
// flush.mu held.
//
// It keeps one handle on the file open (db.wal) rather than opening it each time: Linux reports a
// failure to write a file's pages back once to each handle open when it happened, so a handle
// opened after SQLite's own sync met the failure (a durable commit's, a checkpoint's, whose
// error SQLite drops) would hear nothing of it. The handle is opened again when the file at the
// path is another one (SQLite removes the log when its last connection closes). SQLite's unix
// VFS takes no POSIX lock on the WAL file (its locks are on the database and the -shm file), so
// this descriptor holds or releases none of SQLite's; on Windows locks belong to handles anyway.
func (db *DB) syncWAL() error {
	// SQLite keeps the WAL beside the file a link to the database names, not beside the link.
	path, err := filepath.EvalSymlinks(db.path)
	if err != nil {
		return err
	}
	path += "-wal"
	if db.wal != nil {
		// Only when the file at the path is another, or none: a stat that fails otherwise
		// keeps the handle, and a failure it holds unreported.
		held, err1 := db.wal.Stat()
		now, err2 := os.Stat(path)
		switch {
		case err1 != nil && err2 == nil:
			// Which file it holds cannot be told: it is flushed, then the path's is opened.
			if err := db.wal.Sync(); err != nil {
				return &diskFlushError{err}
			}
			fallthrough
		case errors.Is(err2, fs.ErrNotExist), err1 == nil && err2 == nil && !os.SameFile(held, now):
			db.wal.Close()
			db.wal = nil
		}
	}
	if db.wal == nil {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // no log: every commit is in the database file, synced
		}
		if err != nil {
			return err
		}
		db.wal = f
	}
	if err := db.wal.Sync(); err != nil {
		return &diskFlushError{err}
	}
	if testHookSyncedWAL != nil {
		testHookSyncedWAL(db.wal.Name())
	}
	return nil
}

// testHookSyncedWAL, when set by a test, is told of each WAL synced.
var testHookSyncedWAL func(path string)

// Changes returns up to limit changes with a local sequence greater than since and at most upTo
// (DurableHead for a device; AnySeq for every change committed), in sequence order, from the given
// collections (all when empty). Each item appears once, in its latest state.
func (db *DB) Changes(ctx context.Context, since, upTo int64, limit int, collections []string) ([]LocalChange, error) {
	if len(collections) == 0 {
		collections = cloudapi.Collections
	}
	parts := make([]string, 0, len(collections))
	args := make([]any, 0, 2*len(collections)+1)
	for _, c := range collections {
		if !cloudapi.IsCollection(c) {
			return nil, fmt.Errorf("storage: unknown collection %q", c)
		}
		parts = append(parts, `SELECT * FROM (SELECT seq, '`+c+`' AS collection, id, deleted, rev, doc FROM `+c+` WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?)`)
		args = append(args, since, upTo, limit)
	}
	q := strings.Join(parts, " UNION ALL ") + ` ORDER BY seq LIMIT ?`
	args = append(args, limit)
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: changes: %w", err)
	}
	defer rows.Close()
	out := []LocalChange{}
	for rows.Next() {
		var c LocalChange
		var deleted bool
		var doc sql.NullString
		if err := rows.Scan(&c.Seq, &c.Collection, &c.ID, &deleted, &c.Rev, &doc); err != nil {
			return nil, fmt.Errorf("storage: changes: %w", err)
		}
		c.Op = cloudapi.OpUpsert
		if deleted {
			c.Op = cloudapi.OpDelete
		} else {
			c.Doc = json.RawMessage(doc.String)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: changes: %w", err)
	}
	return out, nil
}
