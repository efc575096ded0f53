// Package hotcache is a bounded map from byte keys to byte values, kept outside the Go heap, for
// the answers devices ask for all the time (a product by id, by barcode).
//
// A pure-Go SQLite point read costs more CPU than a whole bare HTTP answer, so the hottest reads
// are served from here. A million products are about half a gigabyte of documents: held as Go
// objects they would double the heap the garbage collector paces itself on, and held in the
// process at all they would be half a gigabyte of resident memory on a small box. So the records
// live in a file (see arena) that the kernel keeps in its page cache as far as memory allows, and
// only a hash table of 8-byte slots lives in the process, in memory mapped from the operating
// system, which the collector never sees.
//
// The cache is a copy, never the truth: a caller fills it from the database and invalidates it
// after each write. Gen and PutIf close the race between the two: a filler notes Gen before it
// reads the database and its PutIf is refused if an invalidation happened since, so an answer
// read before a write can never be cached after it.
//
// When the arena is full the whole cache is emptied (Resets counts it) and fills again; records
// replaced or deleted leave garbage behind until then.
package hotcache

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Slot layout: the upper 32 bits are the key's tag (the upper half of its hash, its lowest bit
// replaced by smallBit when the record is at most smallSlotBytes), the lower 32 bits the record's
// arena offset in units of recordAlign, plus one. 0 is an empty slot, tombstone a deleted one. A
// key's first slot is the top bits of its tag, so the table grows without reading a single key
// back from the arena.
const (
	tombstone    = ^uint64(0)
	smallBit     = 1
	recordAlign  = 8
	headerBytes  = 8 // uint32 key length, uint32 value length
	minSlotsLog  = 12
	maxLoadNum   = 7 // grow when live+deleted slots exceed 7/10 of the table
	maxLoadDenom = 10
	// MaxArena is the largest arena the 32-bit slot offsets can address.
	MaxArena = recordAlign * (1<<32 - 2)
)

// Stats are counters for the status page and benchmarks.
type Stats struct {
	Entries    int   `json:"entries"`
	ArenaBytes int64 `json:"arena_bytes"` // used, garbage included
	TableBytes int64 `json:"table_bytes"`
	Budget     int64 `json:"budget_bytes"`
	Hits       int64 `json:"hits"`
	Misses     int64 `json:"misses"`
	Resets     int64 `json:"resets"`
}

// Cache is safe for concurrent use.
type Cache struct {
	seed   maphash.Seed
	budget int64

	mu      sync.RWMutex // protects the fields below
	arena   *arena
	table   *region // slots; len is a power of two
	slots   []uint64
	log     uint // len(slots) is 1<<log
	live    int  // slots holding a record
	deleted int  // tombstones
	gen     uint64
	resets  int64
	closed  bool
	wbuf    []byte  // a record being written
	rbuf    *[]byte // a record read while writing

	hits, misses atomic.Int64
	// What Stats reports of the fields above, published at the end of every change, so that
	// a status read never waits for a fill of thousands of records holding the lock.
	entries, arenaBytes, tableBytes, resetsShown atomic.Int64
}

// New returns a cache whose arena, a file in dir ("" for the system's temporary directory), holds
// at most budget bytes of records (at least 64 KiB, at most MaxArena).
func New(dir string, budget int64) (*Cache, error) {
	budget = min(max(budget, 1<<16), MaxArena)
	a, err := newArena(dir, int(budget))
	if err != nil {
		return nil, err
	}
	rbuf := make([]byte, readAhead)
	c := &Cache{seed: maphash.MakeSeed(), budget: budget, arena: a, rbuf: &rbuf}
	if err := c.newTableLocked(minSlotsLog); err != nil {
		a.close()
		return nil, err
	}
	c.publishLocked()
	return c, nil
}

// Close gives the memory and the file back. The cache must not be used after.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.slots = nil
	return errors.Join(c.arena.close(), c.table.free())
}

// Gen is the count of invalidations so far; pass it to PutIf.
func (c *Cache) Gen() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (c *Cache) tag(key []byte) uint32 { return uint32(maphash.Bytes(c.seed, key)>>32) &^ smallBit }

// Get appends the value of key to dst. ok is false when the key is not cached.
func (c *Cache) Get(dst, key []byte) (_ []byte, ok bool) {
	t := c.tag(key)
	buf := readBufs.Get().(*[]byte)
	c.mu.RLock()
	_, rec, found := c.findLocked(t, key, buf)
	if found {
		dst = append(dst, recordValue(rec)...)
	}
	c.mu.RUnlock()
	readBufs.Put(buf)
	return dst, found
}

// GetLinked reads the value of key and then, under the same read lock, the value of the key that
// link builds from it (appending to keyBuf), so that the pair is one consistent read for the price
// of one lookup's locking. It appends both values to dst and returns where the second starts; ok
// is false unless both are cached. link must not keep value.
func (c *Cache) GetLinked(dst, key []byte, link func(keyBuf, value []byte) []byte) (out []byte, second int, ok bool) {
	t := c.tag(key)
	buf, kb := readBufs.Get().(*[]byte), readBufs.Get().(*[]byte) // kb: link's key, which would escape from the stack
	defer readBufs.Put(buf)
	defer readBufs.Put(kb)
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, rec, found := c.findLocked(t, key, buf)
	if !found {
		return dst, 0, false
	}
	start := len(dst)
	dst = append(dst, recordValue(rec)...)
	second = len(dst)
	k2 := link((*kb)[:0], dst[start:second])
	if k2 == nil {
		return dst, 0, false
	}
	if _, rec, found = c.findLocked(c.tag(k2), k2, buf); !found {
		return dst, 0, false
	}
	return append(dst, recordValue(rec)...), second, true
}

// PutIf stores value under key unless an invalidation happened after gen was read (it reports
// false then, and when the record cannot fit at all).
func (c *Cache) PutIf(gen uint64, key, value []byte) bool {
	return c.PutAllIf(gen, []KV{{key, value}})
}

// KV is one record for PutAllIf.
type KV struct{ Key, Value []byte }

// PutAllIf stores every record, or none when an invalidation happened after gen was read.
func (c *Cache) PutAllIf(gen uint64, kvs []KV) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.publishLocked()
	if c.closed || c.gen != gen {
		return false
	}
	for _, kv := range kvs {
		if !c.putLocked(kv.Key, kv.Value) {
			return false
		}
	}
	return true
}

// Delete invalidates keys. It always advances the generation, so fills started before it are
// refused even when none of the keys was cached.
func (c *Cache) Delete(keys ...[]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.publishLocked()
	c.gen++
	for _, k := range keys {
		c.deleteLocked(c.tag(k), k)
	}
}

// Reset empties the cache.
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.publishLocked()
	c.resetLocked()
}

// CountHit records a lookup answered from the cache, CountMiss one answered from elsewhere. They
// are kept apart from Get so that a lookup made of two Gets counts once.
func (c *Cache) CountHit()  { c.hits.Add(1) }
func (c *Cache) CountMiss() { c.misses.Add(1) }

// Stats returns the counters, as of the last change finished.
func (c *Cache) Stats() Stats {
	return Stats{
		Entries: int(c.entries.Load()), ArenaBytes: c.arenaBytes.Load(), TableBytes: c.tableBytes.Load(), Budget: c.budget,
		Hits: c.hits.Load(), Misses: c.misses.Load(), Resets: c.resetsShown.Load(),
	}
}

// publishLocked makes the counters of the change just made visible to Stats.
func (c *Cache) publishLocked() {
	c.entries.Store(int64(c.live))
	c.arenaBytes.Store(int64(c.arena.used))
	c.tableBytes.Store(int64(len(c.slots) * 8))
	c.resetsShown.Store(c.resets)
}

func (c *Cache) resetLocked() {
	clear(c.slots)
	c.live, c.deleted = 0, 0
	c.gen++
	c.resets++
	c.arena.reset() // on failure the file keeps its old bytes, which no slot names any more
	c.table.discard()
}

func recordKey(rec []byte) []byte {
	return rec[headerBytes : headerBytes+binary.LittleEndian.Uint32(rec)]
}

func recordValue(rec []byte) []byte {
	return rec[headerBytes+binary.LittleEndian.Uint32(rec):]
}

// home is the first slot a key of tag t may sit in.
func (c *Cache) home(t uint32) uint64 { return uint64(t) >> (32 - c.log) }

// findLocked returns the slot of key and its record (read into buf, or in the arena's tail). A
// record that cannot be read counts as absent.
func (c *Cache) findLocked(t uint32, key []byte, buf *[]byte) (int, []byte, bool) {
	if c.closed {
		return 0, nil, false
	}
	mask := uint64(len(c.slots) - 1)
	for i := c.home(t); ; i = (i + 1) & mask {
		s := c.slots[i]
		switch {
		case s == 0:
			return 0, nil, false
		case s != tombstone && uint32(s>>32)&^smallBit == t:
			rec, err := c.arena.read(int(uint32(s)-1)*recordAlign, buf, s>>32&smallBit != 0)
			if err == nil && string(recordKey(rec)) == string(key) {
				return int(i), rec, true
			}
		}
	}
}

func (c *Cache) putLocked(key, value []byte) bool {
	size := headerBytes + len(key) + len(value)
	size = (size + recordAlign - 1) &^ (recordAlign - 1)
	if int64(size) > c.budget {
		return false
	}
	if int64(c.arena.used+size) > c.budget {
		c.resetLocked()
	}
	if (c.live+c.deleted+1)*maxLoadDenom > len(c.slots)*maxLoadNum {
		// Many tombstones: rebuild at the same size; else double.
		log := c.log
		if c.live*2*maxLoadDenom > len(c.slots)*maxLoadNum {
			log++
		}
		if err := c.rehashLocked(log); err != nil {
			return false
		}
	}
	t := c.tag(key)
	c.deleteLocked(t, key)
	b := binary.LittleEndian.AppendUint32(c.wbuf[:0], uint32(len(key)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(value)))
	b = append(append(b, key...), value...)
	b = append(b, make([]byte, size-len(b))...)
	c.wbuf = b
	off, err := c.arena.append(b)
	if err != nil {
		return false
	}
	if size <= smallSlotBytes {
		t |= smallBit
	}
	c.insertLocked(t, off)
	return true
}

func (c *Cache) insertLocked(t uint32, off int) {
	mask := uint64(len(c.slots) - 1)
	for i := c.home(t); ; i = (i + 1) & mask {
		switch c.slots[i] {
		case tombstone:
			c.deleted--
			fallthrough
		case 0:
			c.slots[i] = uint64(t)<<32 | uint64(off/recordAlign+1)
			c.live++
			return
		}
	}
}

func (c *Cache) deleteLocked(t uint32, key []byte) {
	if i, _, found := c.findLocked(t, key, c.rbuf); found {
		c.slots[i] = tombstone
		c.live--
		c.deleted++
	}
}

// rehashLocked moves every live slot into a new table of 1<<log slots. The tags say where each
// goes: no record is read.
func (c *Cache) rehashLocked(log uint) error {
	old, oldSlots := c.table, c.slots
	oldLog := c.log
	if err := c.newTableLocked(log); err != nil {
		c.table, c.slots, c.log = old, oldSlots, oldLog
		return err
	}
	c.live, c.deleted = 0, 0
	for _, s := range oldSlots {
		if s == 0 || s == tombstone {
			continue
		}
		c.insertLocked(uint32(s>>32), int(uint32(s)-1)*recordAlign)
	}
	return old.free()
}

func (c *Cache) newTableLocked(log uint) error {
	log = max(log, minSlotsLog)
	t, err := mapRegion(8 << log)
	if err != nil {
		return err
	}
	c.table, c.slots, c.log = t, t.uint64s(), log
	return nil
}
