//go:build linux || darwin || freebsd

package hotcache

import (
	"fmt"
	"syscall"
	"unsafe"
)

// region is memory mapped from the operating system, outside the Go heap. Pages take physical
// memory only once written, and discard gives them back.
type region struct{ b []byte }

func mapRegion(n int) (*region, error) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE|mapNoReserve)
	if err != nil {
		return nil, fmt.Errorf("hotcache: reserve %d bytes: %w", n, err)
	}
	r := &region{b: b}
	r.preferHugePages()
	return r, nil
}

// uint64s views the region as 64-bit words; mmap returns page-aligned memory.
func (r *region) uint64s() []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(r.b))), len(r.b)/8)
}

func (r *region) free() error {
	if r.b == nil {
		return nil
	}
	err := syscall.Munmap(r.b)
	r.b = nil
	return err
}
