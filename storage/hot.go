package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/storeedge/storeedge/internal/hotcache"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// The read cache answers products by id and by barcode from memory (internal/hotcache); every
// other read goes to SQLite. Records:
//
//	'p' id    -> rev (8 bytes) seq (8 bytes) doc     a live product
//	'b' code  -> rev (8 bytes) product id            the product carrying a barcode, at that rev
//
// A barcode record is trusted only while the product's own record holds the same rev, so any
// change of the product (which drops its record) retires its barcode records with it. A change
// that gives a barcode to another product drops that barcode's record explicitly.
const (
	hotProduct = 'p'
	hotBarcode = 'b'
	// warmBatch is the rows read per database query while warming.
	warmBatch = 2000
)

// ReadCacheStats are the read cache's counters, for the status page.
type ReadCacheStats = hotcache.Stats

// EnableReadCache serves products by id and by barcode from a cache of at most budget bytes,
// filled as devices ask and by WarmReadCache. Its records live in a file beside the database
// that the kernel keeps in its page cache (internal/hotcache). Call it once, before serving.
func (db *DB) EnableReadCache(budget int64) error {
	c, err := hotcache.New(filepath.Dir(db.path), budget)
	if err != nil {
		return fmt.Errorf("storage: read cache: %w", err)
	}
	db.hot = c
	return nil
}

// ReadCacheStats reports the read cache; ok is false when it is off.
func (db *DB) ReadCacheStats() (ReadCacheStats, bool) {
	if db.hot == nil {
		return ReadCacheStats{}, false
	}
	return db.hot.Stats(), true
}

func hotKey(dst []byte, kind byte, id string) []byte {
	return append(append(dst, kind), id...)
}

// productKV is the record of a product.
func productKV(it *Item) hotcache.KV {
	v := binary.LittleEndian.AppendUint64(make([]byte, 0, 16+len(it.Doc)), uint64(it.Rev))
	v = binary.LittleEndian.AppendUint64(v, uint64(it.Seq))
	return hotcache.KV{Key: hotKey(nil, hotProduct, it.ID), Value: append(v, it.Doc...)}
}

// barcodeKV is the record of a barcode carried by product id at rev.
func barcodeKV(code string, rev int64, id string) hotcache.KV {
	return hotcache.KV{Key: hotKey(nil, hotBarcode, code), Value: append(binary.LittleEndian.AppendUint64(nil, uint64(rev)), id...)}
}

// hotGet reads a product's record, appending it to buf; ok is false when it is not cached.
func (db *DB) hotGet(buf []byte, id string) (Item, bool) {
	var kb [1 + cloudapi.MaxIDBytes]byte
	v, ok := db.hot.Get(buf, hotKey(kb[:0], hotProduct, id))
	v = v[len(buf):]
	if !ok || len(v) < 16 {
		return Item{}, false
	}
	return Item{
		ID:  id,
		Rev: int64(binary.LittleEndian.Uint64(v)),
		Seq: int64(binary.LittleEndian.Uint64(v[8:])),
		Doc: v[16:],
	}, true
}

// getProduct is Get for products: memory first, then SQLite, whose answer is kept.
func (db *DB) getProduct(ctx context.Context, buf []byte, id string) (Item, error) {
	if it, ok := db.hotGet(buf, id); ok {
		db.hot.CountHit()
		return it, nil
	}
	db.hot.CountMiss()
	gen := db.hot.Gen()
	it, err := db.one(ctx, qGet(cloudapi.Products), id)
	if err != nil {
		return it, err
	}
	kv := productKV(&it)
	db.hot.PutIf(gen, kv.Key, kv.Value)
	return it, nil
}

// productByBarcode is ProductByBarcode from memory first.
func (db *DB) productByBarcode(ctx context.Context, buf []byte, code string) (Item, error) {
	if len(code) <= cloudapi.MaxIDBytes {
		var kb [1 + cloudapi.MaxIDBytes]byte
		out, second, ok := db.hot.GetLinked(buf, hotKey(kb[:0], hotBarcode, code), linkProduct)
		out, second = out[len(buf):], second-len(buf)
		if ok && second > 8 && len(out)-second >= 16 {
			hint, rec := out[:second], out[second:]
			if rev := int64(binary.LittleEndian.Uint64(rec)); rev == int64(binary.LittleEndian.Uint64(hint)) {
				db.hot.CountHit()
				return Item{ID: string(hint[8:]), Rev: rev, Seq: int64(binary.LittleEndian.Uint64(rec[8:])), Doc: rec[16:]}, nil
			}
		}
	}
	db.hot.CountMiss()
	gen := db.hot.Gen()
	it, err := db.one(ctx, qProductByBarcode, code)
	if err != nil {
		return it, err
	}
	db.hot.PutAllIf(gen, []hotcache.KV{productKV(&it), barcodeKV(code, it.Rev, it.ID)})
	return it, nil
}

// linkProduct is the key of the product record a barcode record names.
func linkProduct(keyBuf, barcodeRecord []byte) []byte {
	if len(barcodeRecord) <= 8 {
		return nil
	}
	return append(append(keyBuf, hotProduct), barcodeRecord[8:]...)
}

// invalidateHot drops what a committed page of products may have made stale: the record of every
// product it touched and of every barcode those products now carry; all of it when the page ended
// a bulk load (bulkDone).
func (db *DB) invalidateHot(p *Page, bulkDone bool) {
	if db.hot == nil || p.Collection != cloudapi.Products {
		return
	}
	if bulkDone {
		// The barcodes staged by the bulk load just moved into barcodes: a barcode record cached
		// during the load may name the product that held the barcode before it. Start afresh,
		// and warm the cache again once every collection caught up.
		db.hot.Reset()
		db.warmWant.Store(true)
		return
	}
	keys := make([][]byte, 0, len(p.Changes)*2)
	for i := range p.Changes {
		c := &p.Changes[i]
		keys = append(keys, hotKey(nil, hotProduct, c.ID))
		prod := c.Product
		if prod == nil && c.Op == cloudapi.OpUpsert {
			if p, err := cloudapi.ParseProduct(c.ID, c.Doc); err == nil {
				prod = &p
			}
		}
		if prod != nil {
			for _, code := range prod.Barcodes {
				keys = append(keys, hotKey(nil, hotBarcode, code))
			}
		}
	}
	db.hot.Delete(keys...)
}

// warmDue reports whether a bulk load asked for a warm pass and every collection has caught up
// since: warming during the rest of a first sync would take memory and CPU from it.
func (db *DB) warmDue() bool {
	if !db.warmWant.Load() {
		return false
	}
	for _, st := range db.FeedStates() {
		if st.LastSuccess.IsZero() || st.Remaining > 0 {
			return false
		}
	}
	return true
}

// RunReadCacheWarmer fills the read cache with every product and barcode at start and after
// each bulk load, once every collection has caught up, so that lookups do not wait for SQLite
// one by one until devices have asked for everything. A cache emptied because the catalog
// outgrew its budget is not warmed again: it would only fill up and empty again. It returns nil when the read cache is off, ctx.Err() when
// ctx ends, and the database's error if a read fails.
func (db *DB) RunReadCacheWarmer(ctx context.Context, log *slog.Logger) error {
	if db.hot == nil {
		return nil
	}
	for first := true; ; first = false {
		next := db.warmSig.wait()
		if !first && !db.warmDue() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-next:
				continue
			}
		}
		db.warmWant.Store(false)
		start := time.Now()
		products, codes, err := db.WarmReadCache(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		st := db.hot.Stats()
		log.LogAttrs(ctx, slog.LevelInfo, "storage: read cache warmed", slog.Int("products", products), slog.Int("barcodes", codes),
			slog.Int64("bytes", st.ArenaBytes+st.TableBytes), slog.Duration("took", time.Since(start)))
		db.warmDone.notify()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-next:
		}
	}
}

// WarmReadCache reads every live product and barcode into the read cache, in batches, and
// returns how many of each it cached (none when the cache is off). A batch overtaken by a write
// is skipped: its products are filled when devices ask. RunReadCacheWarmer calls it when needed.
func (db *DB) WarmReadCache(ctx context.Context) (products, codes int, err error) {
	if db.hot == nil {
		return 0, 0, nil
	}
	after := ""
	st := db.stmt(qList(cloudapi.Products))
	for {
		gen := db.hot.Gen()
		items, err := db.many(ctx, st, after, warmBatch)
		if err != nil {
			return products, codes, err
		}
		if len(items) == 0 {
			break
		}
		kvs := make([]hotcache.KV, len(items))
		for i := range items {
			kvs[i] = productKV(&items[i])
		}
		if db.hot.PutAllIf(gen, kvs) {
			products += len(kvs)
		}
		after = items[len(items)-1].ID
	}
	after = ""
	for {
		gen := db.hot.Gen()
		kvs, last, err := db.warmBarcodes(ctx, after)
		if err != nil {
			return products, codes, err
		}
		if last == "" {
			return products, codes, nil
		}
		if db.hot.PutAllIf(gen, kvs) {
			codes += len(kvs)
		}
		after = last
	}
}

// warmBarcodes reads a batch of barcodes after the code after and returns the records of those
// whose product is cached, and the last code read ("" at the end).
func (db *DB) warmBarcodes(ctx context.Context, after string) ([]hotcache.KV, string, error) {
	rows, err := db.stmt(qBarcodes).QueryContext(ctx, after, warmBatch)
	if err != nil {
		return nil, "", fmt.Errorf("storage: warm read cache: %w", err)
	}
	defer rows.Close()
	var kvs []hotcache.KV
	last := ""
	var code, id string
	var rec, kb []byte // the product's record, read for its rev only
	for rows.Next() {
		if err := rows.Scan(&code, &id); err != nil {
			return nil, "", fmt.Errorf("storage: warm read cache: %w", err)
		}
		last = code
		kb = hotKey(kb[:0], hotProduct, id)
		var ok bool
		if rec, ok = db.hot.Get(rec[:0], kb); ok && len(rec) >= 8 {
			kvs = append(kvs, barcodeKV(code, int64(binary.LittleEndian.Uint64(rec)), id))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("storage: warm read cache: %w", err)
	}
	return kvs, last, nil
}

const qBarcodes = `SELECT code, product_id FROM barcodes WHERE code > ? ORDER BY code LIMIT ?`
