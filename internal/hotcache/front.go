package hotcache

import (
	"sync"
	"sync/atomic"
)

// front keeps copies of the records read most often in process memory, so that the hot part of a
// skewed workload (a shop's best sellers are asked for far more than the rest) is answered without
// a pread: the system call is most of what a lookup from the arena costs. It is small and fixed
// in size, outside the Go heap: slots of frontSlotBytes, each holding at most one record, in sets
// of frontWays chosen by the record's offset in the arena (which names it until the arena is
// emptied). Eight ways keep the records that collide on a set few: with two, a sixth of a
// working set that fills seven tenths of the front found no place (eight: a twenty-fifth).
//
// A record read from the arena takes the place of one of its set by CLOCK's rule: a hand goes
// round the set, taking away the mark of the records read since it last passed (their second
// chance) and stopping at the first without one. So a record read all the time stays while
// records read once pass through: simulated on this front's geometry, eight ways with the hand
// keep as many of a Zipf workload's reads (86 %) as two ways did, and 96 % instead of 87 % of a
// working set that fills seven tenths of the front.
//
// An arena has two fronts: one of 1 KiB slots for documents and one of small slots for the
// records that only point elsewhere (a barcode names its product), which a cache's slot marks as
// small. A barcode lookup reads both a barcode record and a product record: in one front of 1 KiB
// slots, the barcodes would take half of the slots for a few dozen bytes each.
type front struct {
	mem       *region
	data      []byte
	meta      []frontMeta
	mask      uint64
	slotBytes int
	locks     [frontStripes]sync.Mutex // the set of slot i is guarded by locks[i/frontWays%frontStripes]

	// The doorkeeper: a bit per hashed offset, set by a record's first offer; the record is taken
	// at its second offer while the bit is still set. A record read once (most of a uniform
	// workload) then costs a bit, not a lock, a copy of up to a slot and the place of a record
	// read more often. The bits are cleared after seenWindow offers of as many slots, so that
	// "read twice" means within a recent window of reads from the file.
	seen     []atomic.Uint64
	seenMask uint64
	marks    atomic.Int64
}

type frontMeta struct {
	off1 int64 // the record's arena offset plus one; 0: empty
	n    int32 // its length
	ref  bool  // read since it came, or since the hand last passed
	hand uint8 // in a set's first slot: where the hand stands in the set
}

const (
	frontSlotBytes = 1024
	// smallSlotBytes is the slot of the small front, and the largest record a cache's slot marks
	// as small: a barcode record of a 13-digit code and an 8-character product id is 40 bytes.
	smallSlotBytes = 128
	frontWays      = 8
	frontStripes   = 64
	// frontMaxBytes bounds the front: 64 MiB is 65,536 records of at most 1 KiB, which answer
	// about nine requests in ten of a million products asked for by a Zipf law of exponent 1.1.
	frontMaxBytes = 64 << 20
	// seenBits and seenWindow size the doorkeeper per slot: 16 bits (128 KiB for 65,536 slots,
	// small enough to stay in the processor's cache), cleared after 4 offers, when about a fifth
	// of them are set. Under a Zipf workload of exponent 1.1 over twelve times as many records
	// as slots (BenchmarkFrontZipf) the front answers 81.6 % of the reads, 80.4 % without it.
	seenBits   = 16
	seenWindow = 4
)

// frontSlots is the number of slots of a document front of about bytes (a power of two, at least
// frontStripes*frontWays), or 0 when bytes is too small for one.
func frontSlots(bytes int64) int {
	slots := 1
	for int64(slots)*2*frontSlotBytes <= min(bytes, frontMaxBytes) {
		slots *= 2
	}
	if slots < frontStripes*frontWays {
		return 0
	}
	return slots
}

// newFront returns a front of slots slots (a power of two) of slotBytes each.
func newFront(slots, slotBytes int) (*front, error) {
	mem, err := mapRegion(slots * slotBytes)
	if err != nil {
		return nil, err
	}
	words := slots * seenBits / 64
	return &front{mem: mem, data: mem.b, meta: make([]frontMeta, slots), mask: uint64(slots) - 1, slotBytes: slotBytes,
		seen: make([]atomic.Uint64, words), seenMask: uint64(words*64) - 1}, nil
}

// admit says whether the record at off was offered before within the doorkeeper's window, and
// notes that it was offered now.
func (f *front) admit(off int) bool {
	i := uint64(off/recordAlign) * 0xC2B2AE3D27D4EB4F >> 17 & f.seenMask
	w, bit := &f.seen[i/64], uint64(1)<<(i%64)
	if w.Load()&bit != 0 {
		return true
	}
	w.Or(bit)
	if f.marks.Add(1) >= int64(len(f.meta))*seenWindow {
		f.marks.Store(0)
		f.forget()
	}
	return false
}

// forget clears the doorkeeper's bits.
func (f *front) forget() {
	for i := range f.seen {
		f.seen[i].Store(0)
	}
}

// set is the first of the frontWays slots that may hold the record at off.
func (f *front) set(off int) uint64 {
	return (uint64(off/recordAlign) * 0x9E3779B97F4A7C15 >> 20) & f.mask &^ (frontWays - 1)
}

func (f *front) lock(set uint64) *sync.Mutex { return &f.locks[set/frontWays%frontStripes] }

// slot is the slot of set s that holds the record at off, or -1.
func (f *front) slot(s uint64, off int) int {
	for i, m := range f.meta[s : s+frontWays] {
		if m.off1 == int64(off)+1 {
			return int(s) + i
		}
	}
	return -1
}

// get copies the record at off into *buf, when the front holds it.
func (f *front) get(off int, buf *[]byte) ([]byte, bool) {
	s := f.set(off)
	l := f.lock(s)
	l.Lock()
	defer l.Unlock()
	i := f.slot(s, off)
	if i < 0 {
		return nil, false
	}
	m := &f.meta[i]
	m.ref = true
	n := int(m.n)
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	copy(b, f.data[i*f.slotBytes:])
	return b, true
}

// offer gives the front a record just read from the arena.
func (f *front) offer(off int, rec []byte) {
	if len(rec) > f.slotBytes || !f.admit(off) {
		return
	}
	s := f.set(off)
	l := f.lock(s)
	l.Lock()
	defer l.Unlock()
	if f.slot(s, off) >= 0 {
		return
	}
	set := f.meta[s : s+frontWays]
	h := set[0].hand
	for set[h].ref {
		set[h].ref = false
		h = (h + 1) % frontWays
	}
	victim := int(s) + int(h)
	set[0].hand = (h + 1) % frontWays
	copy(f.data[victim*f.slotBytes:], rec)
	m := &f.meta[victim]
	m.off1, m.n, m.ref = int64(off)+1, int32(len(rec)), false
}

// clear forgets every record; the caller holds the cache's write lock, so nothing reads.
func (f *front) clear() {
	for i := range f.locks {
		f.locks[i].Lock()
	}
	clear(f.meta)
	f.forget()
	for i := range f.locks {
		f.locks[i].Unlock()
	}
	f.mem.discard()
}

func (f *front) free() error { return f.mem.free() }
