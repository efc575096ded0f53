package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// The media cache's index (migration 0006): the verified files on disk, the file each media item
// is served from, and the items whose download failed. The files themselves are
// storage/mediacache's; the order of work between the two is the caller's: a file is recorded
// after it is in place, and forgotten before it is deleted.

// MediaItem is an entry of the media collection, live or deleted, with the file the cache serves
// for it.
type MediaItem struct {
	ID       string
	Seq      int64
	Deleted  bool
	Manifest cloudapi.MediaManifest // zero when Deleted or unreadable
	// CachedMD5 is the hex MD5 of the file served for the item now, "" when none, and
	// CachedType the content type it is served with.
	CachedMD5, CachedType string
}

// MediaItems returns up to limit entries of the media collection changed after local sequence
// after, in sequence order, deleted ones included.
func (db *DB) MediaItems(ctx context.Context, after int64, limit int) ([]MediaItem, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT m.id, m.seq, m.deleted, coalesce(m.doc, ''), coalesce(c.md5, ''), coalesce(c.content_type, '')
		FROM media m LEFT JOIN media_cache c ON c.id = m.id WHERE m.seq > ? ORDER BY m.seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: media items: %w", err)
	}
	defer rows.Close()
	var out []MediaItem
	for rows.Next() {
		var it MediaItem
		var doc string
		if err := rows.Scan(&it.ID, &it.Seq, &it.Deleted, &doc, &it.CachedMD5, &it.CachedType); err != nil {
			return nil, fmt.Errorf("storage: media items: %w", err)
		}
		if !it.Deleted {
			// The feed decoder validated the document before it was stored.
			_ = json.Unmarshal([]byte(doc), &it.Manifest)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// qManifestDoc reads the manifest of a live media item, for manifestType.
const qManifestDoc = `SELECT doc FROM media WHERE id = ? AND deleted = 0`

// manifestType is the content type the manifest row (of qManifestDoc) gives now ("" for none),
// when the manifest is of the content whose hex MD5 is md5hex; ok is false otherwise (a new
// version, a deleted or unknown item). The manifest is read as the feed decoder read it.
func manifestType(row *sql.Row, md5hex string) (ctype string, ok bool, err error) {
	var doc []byte
	err = row.Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	var m cloudapi.MediaManifest
	if json.Unmarshal(doc, &m) != nil {
		return "", false, nil
	}
	if sum, ok := m.HexMD5(); !ok || sum != md5hex {
		return "", false, nil
	}
	return m.ContentType, true, nil
}

// RetypeMedia serves the items ids with the content type their manifest gives now, when it is
// still of the content they are served from (a manifest whose content_type changed, not its
// content).
func (db *DB) RetypeMedia(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			var md5hex string
			err := tx.QueryRowContext(ctx, `SELECT md5 FROM media_cache WHERE id = ?`, id).Scan(&md5hex)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			ctype, ok, err := manifestType(tx.QueryRowContext(ctx, qManifestDoc, id), md5hex)
			if err != nil {
				return err
			}
			if ok {
				if _, err := tx.ExecContext(ctx, `UPDATE media_cache SET content_type = ? WHERE id = ?`, ctype, id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: media content types: %w", err)
	}
	return nil
}

// MediaManifest returns the manifest of a live media item, or ErrNotFound.
func (db *DB) MediaManifest(ctx context.Context, id string) (cloudapi.MediaManifest, error) {
	var m cloudapi.MediaManifest
	it, err := db.Get(ctx, cloudapi.Media, id)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(it.Doc, &m); err != nil {
		return m, fmt.Errorf("storage: media manifest %s: %w", id, err)
	}
	return m, nil
}

// MediaFile is the verified file a media item is served from.
type MediaFile struct {
	ID          string
	MD5         string // hex
	Size        int64
	ContentType string
	StoredAt    time.Time
}

// MediaFile returns the file the cache serves for a media item, or ErrNotFound when none.
func (db *DB) MediaFile(ctx context.Context, id string) (MediaFile, error) {
	return mediaFile(ctx, db.r, id)
}

// MediaFileExact is MediaFile read through the writer connection, which sees every commit at
// once: for a file recorded a moment ago.
func (db *DB) MediaFileExact(ctx context.Context, id string) (MediaFile, error) {
	return mediaFile(ctx, db.w, id)
}

func mediaFile(ctx context.Context, conn *sql.DB, id string) (MediaFile, error) {
	f := MediaFile{ID: id}
	var at int64
	err := conn.QueryRowContext(ctx, `SELECT c.md5, c.content_type, f.size, c.stored_at FROM media_cache c
		JOIN media_files f ON f.md5 = c.md5 WHERE c.id = ?`, id).Scan(&f.MD5, &f.ContentType, &f.Size, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return f, ErrNotFound
	}
	if err != nil {
		return f, fmt.Errorf("storage: media file %s: %w", id, err)
	}
	f.StoredAt = time.UnixMilli(at)
	return f, nil
}

// writeTx runs f in a write transaction; the statements f prepared with txStmt are kept
// prepared on the writer's connection after it.
func (db *DB) writeTx(ctx context.Context, op string, f func(tx *sql.Tx) error) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	db.keepWriteStmts(ctx)
	return nil
}

// dropUnused forgets those of the files (hex MD5s) that no media item is served from any more,
// and returns them, for the caller to delete from disk.
func dropUnused(ctx context.Context, tx *sql.Tx, md5s []string) ([]string, error) {
	var out []string
	for _, m := range md5s {
		r, err := tx.ExecContext(ctx, `DELETE FROM media_files WHERE md5 = ? AND NOT EXISTS (SELECT 1 FROM media_cache c WHERE c.md5 = ?)`, m, m)
		if err != nil {
			return nil, err
		}
		if n, _ := r.RowsAffected(); n > 0 {
			out = append(out, m)
		}
	}
	return out, nil
}

// servedFrom returns the file media item id is served from, "" when none.
func servedFrom(ctx context.Context, tx *sql.Tx, id string) (string, error) {
	var m string
	err := tx.QueryRowContext(ctx, `SELECT md5 FROM media_cache WHERE id = ?`, id).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return m, err
}

// StoreMedia records that a verified file is in place and that media item id is served from it
// from now on, and clears the item's failure. It returns the files no item is served from any
// more (the item's old version, typically), already forgotten, for the caller to delete.
func (db *DB) StoreMedia(ctx context.Context, id, md5hex, contentType string, size int64, at time.Time) ([]string, error) {
	return db.StoreMediaFiles(ctx, []MediaRecord{{ID: id, MD5: md5hex, ContentType: contentType, Size: size}}, at)
}

// MediaRecord is a verified file in place and the media item to serve from it.
type MediaRecord struct {
	ID, MD5, ContentType string
	Size                 int64
}

// StoreMediaFiles is StoreMedia for several files, in one transaction: files that finish
// downloading together are recorded together.
func (db *DB) StoreMediaFiles(ctx context.Context, recs []MediaRecord, at time.Time) ([]string, error) {
	var unused []string
	err := db.writeTx(ctx, fmt.Sprintf("store %d media files", len(recs)), func(tx *sql.Tx) error {
		st, err := db.storeMediaStmts(ctx, tx)
		if err != nil {
			return err
		}
		var olds []string
		for _, r := range recs {
			old, err := st.store(ctx, r, at)
			if err != nil {
				return fmt.Errorf("%s: %w", r.ID, err)
			}
			if old != "" && old != r.MD5 {
				olds = append(olds, old)
			}
		}
		if len(olds) > 0 {
			unused, err = dropUnused(ctx, tx, olds)
		}
		return err
	})
	return unused, err
}

// storeMediaStmts are the statements that record a file, prepared once on the writer's
// connection: a prefetch records thousands of files, and preparing them for each cost more
// CPU than running them.
type storeMediaStmts struct{ servedFrom, manifest, file, item, clearFailure *sql.Stmt }

func (db *DB) storeMediaStmts(ctx context.Context, tx *sql.Tx) (storeMediaStmts, error) {
	var s storeMediaStmts
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&s.servedFrom, `SELECT md5 FROM media_cache WHERE id = ?`},
		{&s.manifest, qManifestDoc},
		{&s.file, `INSERT INTO media_files(md5, size, stored_at) VALUES (?, ?, ?) ON CONFLICT(md5) DO NOTHING`},
		// An item's time moves forward at each new version, past the old one's second: a
		// device's If-Modified-Since of the old version must not match the new one.
		{&s.item, `INSERT INTO media_cache(id, md5, content_type, stored_at) VALUES (?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET md5 = excluded.md5, content_type = excluded.content_type,
				stored_at = CASE WHEN media_cache.md5 = excluded.md5 THEN media_cache.stored_at
					ELSE max(excluded.stored_at, media_cache.stored_at - media_cache.stored_at % 1000 + 1000) END`},
		{&s.clearFailure, `DELETE FROM media_failures WHERE id = ?`},
	} {
		var err error
		if *p.st, err = db.txStmt(ctx, tx, p.q); err != nil {
			return s, err
		}
	}
	return s, nil
}

// store records one file and returns the file its item was served from until now.
func (s storeMediaStmts) store(ctx context.Context, r MediaRecord, at time.Time) (string, error) {
	var old string
	if err := s.servedFrom.QueryRowContext(ctx, r.ID).Scan(&old); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	if _, err := s.file.ExecContext(ctx, r.MD5, r.Size, at.UnixMilli()); err != nil {
		return "", err
	}
	// The type is the manifest's as the catalog holds it now, when that is still of this
	// content: the record's was read when the download began.
	ctype := r.ContentType
	if t, ok, err := manifestType(s.manifest.QueryRowContext(ctx, r.ID), r.MD5); err != nil {
		return "", err
	} else if ok {
		ctype = t
	}
	if _, err := s.item.ExecContext(ctx, r.ID, r.MD5, ctype, at.UnixMilli()); err != nil {
		return "", err
	}
	if _, err := s.clearFailure.ExecContext(ctx, r.ID); err != nil {
		return "", err
	}
	return old, nil
}

// ForgetMedia stops serving media items (deleted from the catalog) and forgets their failures.
// It returns the files no item is served from any more, for the caller to delete.
func (db *DB) ForgetMedia(ctx context.Context, ids []string) ([]string, error) {
	var unused []string
	err := db.writeTx(ctx, "forget media", func(tx *sql.Tx) error {
		var olds []string
		for _, id := range ids {
			old, err := servedFrom(ctx, tx, id)
			if err != nil {
				return err
			}
			if old != "" {
				olds = append(olds, old)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM media_cache WHERE id = ?`, id); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM media_failures WHERE id = ?`, id); err != nil {
				return err
			}
		}
		var err error
		unused, err = dropUnused(ctx, tx, olds)
		return err
	})
	return unused, err
}

// EvictMediaFiles forgets files (hex MD5s) and every item served from them, so that the caller
// may delete them from disk; the items are then no longer cached.
func (db *DB) EvictMediaFiles(ctx context.Context, md5s []string) error {
	return db.writeTx(ctx, "evict media", func(tx *sql.Tx) error {
		for _, m := range md5s {
			if _, err := tx.ExecContext(ctx, `DELETE FROM media_cache WHERE md5 = ?`, m); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM media_files WHERE md5 = ?`, m); err != nil {
				return err
			}
		}
		return nil
	})
}

// OrphanMedia lists the media items served from a file although the catalog no longer has them
// live (deleted while the server was stopped before it could act, say).
func (db *DB) OrphanMedia(ctx context.Context) ([]string, error) {
	return db.strings(ctx, "orphan media", `SELECT c.id FROM media_cache c WHERE NOT EXISTS
		(SELECT 1 FROM media m WHERE m.id = c.id AND m.deleted = 0)`)
}

// MediaFileRecorded reports whether a file (hex MD5) is recorded: some item is served from it.
// It reads through the writer connection, which sees every commit at once, a record made a
// moment ago included.
func (db *DB) MediaFileRecorded(ctx context.Context, md5hex string) (bool, error) {
	var n int
	if err := db.w.QueryRowContext(ctx, `SELECT count(*) FROM media_files WHERE md5 = ?`, md5hex).Scan(&n); err != nil {
		return false, fmt.Errorf("storage: media file: %w", err)
	}
	return n > 0, nil
}

// MediaFileNames lists the hex MD5 of every file recorded.
func (db *DB) MediaFileNames(ctx context.Context) ([]string, error) {
	return db.strings(ctx, "media files", `SELECT md5 FROM media_files`)
}

func (db *DB) strings(ctx context.Context, op, q string, args ...any) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", op, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("storage: %s: %w", op, err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// TouchMediaFiles records when files (by hex MD5) were last served.
func (db *DB) TouchMediaFiles(ctx context.Context, served map[string]time.Time) error {
	if len(served) == 0 {
		return nil
	}
	return db.writeTx(ctx, "touch media", func(tx *sql.Tx) error {
		for m, at := range served {
			if _, err := tx.ExecContext(ctx, `UPDATE media_files SET last_served = max(last_served, ?) WHERE md5 = ?`, at.UnixMilli(), m); err != nil {
				return err
			}
		}
		return nil
	})
}

// MediaUsage gives the files recorded and their bytes, for status, as the triggers of
// media_usage keep them.
func (db *DB) MediaUsage(ctx context.Context) (files, bytes int64, err error) {
	return scanMediaUsage(db.stmt(qMediaUsage).QueryRowContext(ctx))
}

// MediaUsageExact is MediaUsage read through the writer connection, which sees every commit at
// once: for the quota's decisions, which must not count from a snapshot a moment old. It waits
// while a catalog page is being applied.
func (db *DB) MediaUsageExact(ctx context.Context) (files, bytes int64, err error) {
	return scanMediaUsage(db.w.QueryRowContext(ctx, qMediaUsage))
}

const qMediaUsage = `SELECT files, bytes FROM media_usage`

func scanMediaUsage(row *sql.Row) (files, bytes int64, err error) {
	if err := row.Scan(&files, &bytes); err != nil {
		return 0, 0, fmt.Errorf("storage: media usage: %w", err)
	}
	return files, bytes, nil
}

// EvictionCandidate is a cached file in the order the cache gives files up.
type EvictionCandidate struct {
	MD5  string // hex
	Size int64
	// Referenced tells that a live product lists an item served from the file.
	Referenced bool
}

// MediaEvictionOrder returns up to limit cached files in the order they should go when the cache
// is full: files no live product refers to first, then the least recently served (never served
// counts as oldest, then the oldest stored). It reads every live product's media list, which takes
// a while on a large catalog: eviction is rare and done in batches.
func (db *DB) MediaEvictionOrder(ctx context.Context, limit int) ([]EvictionCandidate, error) {
	rows, err := db.r.QueryContext(ctx, `WITH refs(id) AS (
			SELECT DISTINCT j.value FROM products p, json_each(p.doc, '$.media') j WHERE p.deleted = 0)
		SELECT f.md5, f.size, EXISTS (SELECT 1 FROM media_cache c WHERE c.md5 = f.md5 AND c.id IN refs) AS referenced
		FROM media_files f ORDER BY referenced, f.last_served, f.stored_at, f.md5 LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: media eviction order: %w", err)
	}
	defer rows.Close()
	var out []EvictionCandidate
	for rows.Next() {
		var c EvictionCandidate
		if err := rows.Scan(&c.MD5, &c.Size, &c.Referenced); err != nil {
			return nil, fmt.Errorf("storage: media eviction order: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Kinds of media failure.
const (
	MediaQuarantined = "quarantined" // the blob does not match its manifest: never served
	MediaFailed      = "failed"      // the blob could not be read
	MediaNoSpace     = "no_space"    // the cache is full of files that products refer to
)

// MediaFailure is a media item whose last download failed.
type MediaFailure struct {
	ID       string    `json:"id"`
	MD5      string    `json:"md5"` // base64, as in the manifest
	Kind     string    `json:"kind"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	NextTry  time.Time `json:"next_try"`
	At       time.Time `json:"at"`
}

// RecordMediaFailure stores (or replaces) the failure of a media item.
func (db *DB) RecordMediaFailure(ctx context.Context, f MediaFailure) error {
	return db.writeTx(ctx, "record media failure", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO media_failures(id, md5, kind, reason, attempts, next_try, at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			f.ID, f.MD5, f.Kind, f.Reason, f.Attempts, f.NextTry.UnixMilli(), f.At.UnixMilli())
		return err
	})
}

// MediaFailures lists the failures of media items' current versions, kind "" for all, newest
// first, up to limit.
func (db *DB) MediaFailures(ctx context.Context, kind string, limit int) ([]MediaFailure, error) {
	return scanMediaFailures(db.stmt(qMediaFailures).QueryContext(ctx, kind, kind, limit))
}

// The failures the status shows and counts are those of each item's version in the catalog now:
// a failure of an earlier version (the shop's platform fixed a quarantined blob with a new one)
// stays recorded until the new version is stored or fails, but is no problem of the shop's.
const (
	qMediaFailuresSelect = `SELECT id, md5, kind, reason, attempts, next_try, at FROM media_failures WHERE `
	qCurrentFailures     = ` FROM media_failures f JOIN media m ON m.id = f.id AND m.deleted = 0 AND json_extract(m.doc, '$.md5') = f.md5`
	qMediaFailures       = `SELECT f.id, f.md5, f.kind, f.reason, f.attempts, f.next_try, f.at` + qCurrentFailures +
		` WHERE ? = '' OR f.kind = ? ORDER BY f.at DESC, f.id LIMIT ?`
	qMediaFailureCounts = `SELECT f.kind, count(*)` + qCurrentFailures + ` GROUP BY f.kind`
)

// MediaFailureSummary returns the failures counted by kind and the latest limit of them (as
// MediaFailures lists them), read together: the counts are those of the list's moment.
func (db *DB) MediaFailureSummary(ctx context.Context, limit int) (map[string]int64, []MediaFailure, error) {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("storage: media failures: %w", err)
	}
	defer tx.Rollback()
	// The statements prepared for the status, on the transaction's connection (statusReads).
	counts, err := countMediaFailures(tx.StmtContext(ctx, db.stmt(qMediaFailureCounts)).QueryContext(ctx))
	if err != nil {
		return nil, nil, err
	}
	list, err := scanMediaFailures(tx.StmtContext(ctx, db.stmt(qMediaFailures)).QueryContext(ctx, "", "", limit))
	return counts, list, err
}

func countMediaFailures(rows *sql.Rows, err error) (map[string]int64, error) {
	out, err := keyedInts(rows, err)
	if err != nil {
		return nil, fmt.Errorf("storage: media failure counts: %w", err)
	}
	return out, nil
}

// keyedInts reads rows of a text and a number into a map, rows and err being a query's.
func keyedInts(rows *sql.Rows, err error) (map[string]int64, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}

// MediaFailureOf returns the failure recorded for a media item, or ErrNotFound.
func (db *DB) MediaFailureOf(ctx context.Context, id string) (MediaFailure, error) {
	list, err := db.mediaFailuresWhere(ctx, `id = ?`, id)
	if err != nil || len(list) == 0 {
		return MediaFailure{}, errors.Join(err, ErrNotFound)
	}
	return list[0], nil
}

func (db *DB) mediaFailuresWhere(ctx context.Context, where string, args ...any) ([]MediaFailure, error) {
	return scanMediaFailures(db.r.QueryContext(ctx, qMediaFailuresSelect+where, args...))
}

func scanMediaFailures(rows *sql.Rows, err error) ([]MediaFailure, error) {
	if err != nil {
		return nil, fmt.Errorf("storage: media failures: %w", err)
	}
	defer rows.Close()
	var out []MediaFailure
	for rows.Next() {
		var f MediaFailure
		var next, at int64
		if err := rows.Scan(&f.ID, &f.MD5, &f.Kind, &f.Reason, &f.Attempts, &next, &at); err != nil {
			return nil, fmt.Errorf("storage: media failures: %w", err)
		}
		f.NextTry, f.At = time.UnixMilli(next).UTC(), time.UnixMilli(at).UTC()
		out = append(out, f)
	}
	return out, rows.Err()
}

// AllMediaFailures returns every failure recorded, for the fetcher's schedule at start.
func (db *DB) AllMediaFailures(ctx context.Context) ([]MediaFailure, error) {
	return db.mediaFailuresWhere(ctx, `1 = 1 ORDER BY id`)
}
