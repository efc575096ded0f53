//go:build !(linux || darwin || freebsd)

package hotcache

import "unsafe"

// region is plain Go memory where the system has no mmap in package syscall (Windows): the
// cache works the same, only inside the heap.
type region struct {
	b []byte
	w []uint64
}

func mapRegion(n int) (*region, error) {
	w := make([]uint64, (n+7)/8)
	return &region{b: unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), len(w)*8), w: w}, nil
}

func (r *region) uint64s() []uint64 { return r.w }

func (r *region) discard() {}

func (r *region) free() error {
	r.b, r.w = nil, nil
	return nil
}
