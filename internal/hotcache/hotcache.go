// Package hotcache is a bounded in-memory map from byte keys to byte values, kept outside the
// Go heap, for the answers devices ask for all the time (a product by id, by barcode).
//
// A pure-Go SQLite point read costs more CPU than a whole bare HTTP answer, so the hottest reads
// are served from memory. A million products are about half a gigabyte of documents: held as Go
// objects they would double the heap the garbage collector paces itself on and give it millions
// of pointers to trace. Here records live in one append-only arena and a hash table of 8-byte
// slots, both in memory mapped from the operating system, which the collector never sees.
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
	"math/bits"
	"sync"
	"sync/atomic"
)

// Slot layout: the upper 32 bits are a tag from the key's hash, the lower 32 bits the record's
// arena offset in units of recordAlign, plus one. 0 is an empty slot, tombstone a deleted one.
const (
	tombstone    = ^uint64(0)
	recordAlign  = 8
	headerBytes  = 8 // uint32 key length, uint32 value length
	minSlots     = 1 << 12
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
	arena   *region      // records, appended at used
	used    int
	table   *region // slots; len is a power of two
	slots   []uint64
	live    int // slots holding a record
	deleted int // tombstones
	gen     uint64
	resets  int64
	closed  bool

	hits, misses atomic.Int64
}

// New returns a cache whose arena holds at most budget bytes of records (at least 64 KiB, at most
// MaxArena). The memory is reserved from the operating system but only pages actually written
// take physical memory.
func New(budget int64) (*Cache, error) {
	budget = min(max(budget, 1<<16), MaxArena)
	arena, err := mapRegion(int(budget))
	if err != nil {
		return nil, err
	}
	c := &Cache{seed: maphash.MakeSeed(), budget: budget, arena: arena}
	if err := c.newTableLocked(minSlots); err != nil {
		arena.free()
		return nil, err
	}
	return c, nil
}

// Close gives the memory back. The cache must not be used after.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.slots = nil
	return errors.Join(c.arena.free(), c.table.free())
}

// Gen is the count of invalidations so far; pass it to PutIf.
func (c *Cache) Gen() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// Get appends the value of key to dst. ok is false when the key is not cached.
func (c *Cache) Get(dst, key []byte) (_ []byte, ok bool) {
	h := maphash.Bytes(c.seed, key)
	c.mu.RLock()
	off, found := c.findLocked(h, key)
	if found {
		dst = append(dst, c.valueLocked(off)...)
	}
	c.mu.RUnlock()
	return dst, found
}

// GetLinked reads the value of key and then, under the same read lock, the value of the key that
// link builds from it (appending to keyBuf), so that the pair is one consistent read for the price
// of one lookup's locking. It appends both values to dst and returns where the second starts; ok
// is false unless both are cached. link must not keep value.
func (c *Cache) GetLinked(dst, key []byte, link func(keyBuf, value []byte) []byte) (out []byte, second int, ok bool) {
	h := maphash.Bytes(c.seed, key)
	var kb [512]byte
	c.mu.RLock()
	defer c.mu.RUnlock()
	off, found := c.findLocked(h, key)
	if !found {
		return dst, 0, false
	}
	start := len(dst)
	dst = append(dst, c.valueLocked(off)...)
	second = len(dst)
	k2 := link(kb[:0], dst[start:second])
	if k2 == nil {
		return dst, 0, false
	}
	if off, found = c.findLocked(maphash.Bytes(c.seed, k2), k2); !found {
		return dst, 0, false
	}
	return append(dst, c.valueLocked(off)...), second, true
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
	c.gen++
	for _, k := range keys {
		c.deleteLocked(maphash.Bytes(c.seed, k), k)
	}
}

// Reset empties the cache.
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked()
}

// CountHit records a lookup answered from the cache, CountMiss one answered from elsewhere. They
// are kept apart from Get so that a lookup made of two Gets counts once.
func (c *Cache) CountHit()  { c.hits.Add(1) }
func (c *Cache) CountMiss() { c.misses.Add(1) }

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return Stats{
		Entries: c.live, ArenaBytes: int64(c.used), TableBytes: int64(len(c.slots) * 8), Budget: c.budget,
		Hits: c.hits.Load(), Misses: c.misses.Load(), Resets: c.resets,
	}
}

func (c *Cache) resetLocked() {
	clear(c.slots)
	c.live, c.deleted, c.used = 0, 0, 0
	c.gen++
	c.resets++
	c.arena.discard()
	c.table.discard()
}

func tag(h uint64) uint64 { return h >> 32 << 32 }

// findLocked returns the arena offset of key's record.
func (c *Cache) findLocked(h uint64, key []byte) (int, bool) {
	if c.closed {
		return 0, false
	}
	mask := uint64(len(c.slots) - 1)
	t := tag(h)
	for i := h & mask; ; i = (i + 1) & mask {
		s := c.slots[i]
		switch {
		case s == 0:
			return 0, false
		case s != tombstone && s&^0xffffffff == t:
			off := int(uint32(s)-1) * recordAlign
			if string(c.keyLocked(off)) == string(key) {
				return off, true
			}
		}
	}
}

func (c *Cache) keyLocked(off int) []byte {
	klen := int(binary.LittleEndian.Uint32(c.arena.b[off:]))
	return c.arena.b[off+headerBytes : off+headerBytes+klen]
}

func (c *Cache) valueLocked(off int) []byte {
	klen := int(binary.LittleEndian.Uint32(c.arena.b[off:]))
	vlen := int(binary.LittleEndian.Uint32(c.arena.b[off+4:]))
	start := off + headerBytes + klen
	return c.arena.b[start : start+vlen]
}

func (c *Cache) putLocked(key, value []byte) bool {
	size := headerBytes + len(key) + len(value)
	size = (size + recordAlign - 1) &^ (recordAlign - 1)
	if size > len(c.arena.b) {
		return false
	}
	if c.used+size > len(c.arena.b) {
		c.resetLocked()
	}
	if (c.live+c.deleted+1)*maxLoadDenom > len(c.slots)*maxLoadNum {
		// Many tombstones: rebuild at the same size; else double.
		n := len(c.slots)
		if c.live*2*maxLoadDenom > n*maxLoadNum {
			n *= 2
		}
		if err := c.rehashLocked(n); err != nil {
			return false
		}
	}
	h := maphash.Bytes(c.seed, key)
	c.deleteLocked(h, key)
	off := c.used
	b := c.arena.b[off : off+size]
	binary.LittleEndian.PutUint32(b, uint32(len(key)))
	binary.LittleEndian.PutUint32(b[4:], uint32(len(value)))
	copy(b[headerBytes:], key)
	copy(b[headerBytes+len(key):], value)
	c.used += size
	c.insertLocked(h, off)
	return true
}

func (c *Cache) insertLocked(h uint64, off int) {
	mask := uint64(len(c.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch c.slots[i] {
		case tombstone:
			c.deleted--
			fallthrough
		case 0:
			c.slots[i] = tag(h) | uint64(off/recordAlign+1)
			c.live++
			return
		}
	}
}

func (c *Cache) deleteLocked(h uint64, key []byte) {
	mask := uint64(len(c.slots) - 1)
	t := tag(h)
	for i := h & mask; ; i = (i + 1) & mask {
		s := c.slots[i]
		switch {
		case s == 0:
			return
		case s != tombstone && s&^0xffffffff == t:
			off := int(uint32(s)-1) * recordAlign
			if string(c.keyLocked(off)) == string(key) {
				c.slots[i] = tombstone
				c.live--
				c.deleted++
				return
			}
		}
	}
}

// rehashLocked moves every live slot into a new table of n slots.
func (c *Cache) rehashLocked(n int) error {
	old, oldSlots := c.table, c.slots
	if err := c.newTableLocked(n); err != nil {
		c.table, c.slots = old, oldSlots
		return err
	}
	c.live, c.deleted = 0, 0
	for _, s := range oldSlots {
		if s == 0 || s == tombstone {
			continue
		}
		off := int(uint32(s)-1) * recordAlign
		c.insertLocked(maphash.Bytes(c.seed, c.keyLocked(off)), off)
	}
	return old.free()
}

func (c *Cache) newTableLocked(n int) error {
	n = 1 << bits.Len(uint(max(n, minSlots)-1))
	t, err := mapRegion(n * 8)
	if err != nil {
		return err
	}
	c.table, c.slots = t, t.uint64s()
	return nil
}
