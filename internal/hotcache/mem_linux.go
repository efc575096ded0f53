package hotcache

import "syscall"

const mapNoReserve = syscall.MAP_NORESERVE

// discard gives the pages back to the system; they read as zeros after.
func (r *region) discard() { _ = syscall.Madvise(r.b, syscall.MADV_DONTNEED) }

// preferHugePages asks for transparent huge pages: lookups land anywhere in hundreds of
// megabytes, and with 4 KiB pages nearly every one would also miss the TLB.
func (r *region) preferHugePages() { _ = syscall.Madvise(r.b, syscall.MADV_HUGEPAGE) }
