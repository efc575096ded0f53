package hotcache

import (
	"sync"
)

// front keeps copies of the records read most often in process memory, so that the hot part of a
// skewed workload (a shop's best sellers are asked for far more than the rest) is answered without
// a pread: the system call is most of what a lookup from the arena costs. It is small and fixed
// in size, outside the Go heap: slots of frontSlotBytes, each holding at most one record, chosen
// by the record's offset in the arena (which names it until the arena is emptied).
//
// A record read from the arena takes its slot's place only when the slot's record was not read
// since the last such offer (a second chance, CLOCK's rule on a slot of one), so that a record
// read all the time stays while records read once pass through.
type front struct {
	mem   *region
	data  []byte
	meta  []frontMeta
	mask  uint64
	locks [frontStripes]sync.Mutex // slot i is guarded by locks[i%frontStripes]
}

type frontMeta struct {
	off1 int64 // the record's arena offset plus one; 0: empty
	n    int32 // its length
	ref  bool  // read since it came, or since its last second chance
}

const (
	frontSlotBytes = 1024
	frontStripes   = 64
	// frontMaxBytes bounds the front: 32 MiB is 32,768 records of at most 1 KiB, which hold most
	// of the requests of a skewed million-product workload.
	frontMaxBytes = 32 << 20
)

// newFront returns a front of about bytes (a power of two of slots, at least frontStripes); nil
// when bytes is too small for one.
func newFront(bytes int64) (*front, error) {
	slots := uint64(1)
	for slots*2*frontSlotBytes <= uint64(min(bytes, frontMaxBytes)) {
		slots *= 2
	}
	if slots < frontStripes {
		return nil, nil
	}
	mem, err := mapRegion(int(slots) * frontSlotBytes)
	if err != nil {
		return nil, err
	}
	return &front{mem: mem, data: mem.b, meta: make([]frontMeta, slots), mask: slots - 1}, nil
}

func (f *front) slot(off int) uint64 {
	return (uint64(off/recordAlign) * 0x9E3779B97F4A7C15 >> 20) & f.mask
}

// get copies the record at off into *buf, when the front holds it.
func (f *front) get(off int, buf *[]byte) ([]byte, bool) {
	i := f.slot(off)
	l := &f.locks[i%frontStripes]
	l.Lock()
	defer l.Unlock()
	m := &f.meta[i]
	if m.off1 != int64(off)+1 {
		return nil, false
	}
	m.ref = true
	n := int(m.n)
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	copy(b, f.data[i*frontSlotBytes:])
	return b, true
}

// offer gives the front a record just read from the arena.
func (f *front) offer(off int, rec []byte) {
	if len(rec) > frontSlotBytes {
		return
	}
	i := f.slot(off)
	l := &f.locks[i%frontStripes]
	l.Lock()
	defer l.Unlock()
	m := &f.meta[i]
	switch {
	case m.off1 == int64(off)+1:
	case m.ref:
		m.ref = false
	default:
		copy(f.data[i*frontSlotBytes:], rec)
		*m = frontMeta{off1: int64(off) + 1, n: int32(len(rec))}
	}
}

// clear forgets every record; the caller holds the cache's write lock, so nothing reads.
func (f *front) clear() {
	for i := range f.locks {
		f.locks[i].Lock()
	}
	clear(f.meta)
	for i := range f.locks {
		f.locks[i].Unlock()
	}
	f.mem.discard()
}

func (f *front) free() error { return f.mem.free() }
