package hotcache

import (
	"sync"
)

// front keeps copies of the records read most often in process memory, so that the hot part of a
// skewed workload (a shop's best sellers are asked for far more than the rest) is answered without
// a pread: the system call is most of what a lookup from the arena costs. It is small and fixed
// in size, outside the Go heap: slots of frontSlotBytes, each holding at most one record, in sets
// of two chosen by the record's offset in the arena (which names it until the arena is emptied).
//
// A record read from the arena takes the place of a record of its set that was not read since
// the last such offer (a second chance, CLOCK's rule), so that a record read all the time stays
// while records read once pass through.
type front struct {
	mem   *region
	data  []byte
	meta  []frontMeta
	mask  uint64
	locks [frontStripes]sync.Mutex // the set of slot i is guarded by locks[i/2%frontStripes]
}

type frontMeta struct {
	off1 int64 // the record's arena offset plus one; 0: empty
	n    int32 // its length
	ref  bool  // read since it came, or since its last second chance
}

const (
	frontSlotBytes = 1024
	frontStripes   = 64
	// frontMaxBytes bounds the front: 64 MiB is 65,536 records of at most 1 KiB, which answer
	// about nine requests in ten of a million products asked for by a Zipf law of exponent 1.1.
	frontMaxBytes = 64 << 20
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

// set is the first of the two slots that may hold the record at off.
func (f *front) set(off int) uint64 {
	return (uint64(off/recordAlign) * 0x9E3779B97F4A7C15 >> 20) & f.mask &^ 1
}

func (f *front) lock(set uint64) *sync.Mutex { return &f.locks[set/2%frontStripes] }

// get copies the record at off into *buf, when the front holds it.
func (f *front) get(off int, buf *[]byte) ([]byte, bool) {
	s := f.set(off)
	l := f.lock(s)
	l.Lock()
	defer l.Unlock()
	for i := s; i < s+2; i++ {
		m := &f.meta[i]
		if m.off1 != int64(off)+1 {
			continue
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
	return nil, false
}

// offer gives the front a record just read from the arena.
func (f *front) offer(off int, rec []byte) {
	if len(rec) > frontSlotBytes {
		return
	}
	s := f.set(off)
	l := f.lock(s)
	l.Lock()
	defer l.Unlock()
	a, b := &f.meta[s], &f.meta[s+1]
	victim := s
	switch {
	case a.off1 == int64(off)+1 || b.off1 == int64(off)+1:
		return
	case !a.ref:
	case !b.ref:
		victim = s + 1
	default: // both read since: each loses its mark, the record is not taken
		a.ref, b.ref = false, false
		return
	}
	copy(f.data[victim*frontSlotBytes:], rec)
	f.meta[victim] = frontMeta{off1: int64(off) + 1, n: int32(len(rec))}
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
