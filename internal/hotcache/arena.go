package hotcache

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// arena is where the records live: a file, appended to and read with pread. Its pages sit in the
// kernel's page cache, not in the process: the kernel keeps the hot ones in memory while it has
// memory to spare and drops the cold ones when something else needs it, and a read of a dropped
// page reads the disk. The records last written sit in a tail buffer until it fills, so that
// filling the cache costs one write per tailBytes rather than one per record.
//
// On Linux and macOS the file is removed as soon as it is open: nothing is left behind, even by a
// crash. Windows cannot remove an open file; it is removed on Close, and New removes those a
// crash left.
type arena struct {
	f       *os.File
	name    string // the file's path while it exists on disk
	size    int    // most bytes it may hold
	used    int    // bytes appended, tail included
	flushed int    // bytes in the file; records at or after it are in tail
	tail    []byte
	// Copies of the records read most, documents and small records apart; both nil when the
	// arena is too small for them.
	front, small *front
}

const (
	tailBytes    = 1 << 20 // records buffered before one write to the file
	readAhead    = 1024    // bytes read at once: most records are smaller
	frontShare   = 16      // the front is at most this fraction of the arena
	arenaPrefix  = "storeedge-read-cache-"
	arenaPattern = arenaPrefix + "*"
)

func newArena(dir string, size int) (*arena, error) {
	if runtime.GOOS == "windows" {
		removeStale(dir)
	}
	f, err := os.CreateTemp(dir, arenaPattern)
	if err != nil {
		return nil, fmt.Errorf("hotcache: create the cache file: %w", err)
	}
	a := &arena{f: f, name: f.Name(), size: size, tail: make([]byte, 0, tailBytes)}
	if runtime.GOOS != "windows" && os.Remove(a.name) == nil {
		a.name = ""
	}
	if slots := frontSlots(int64(size) / frontShare); slots > 0 {
		a.front, err = newFront(slots, frontSlotBytes)
		if err == nil {
			a.small, err = newFront(slots, smallSlotBytes)
		}
		if err != nil {
			a.close()
			return nil, err
		}
	}
	return a, nil
}

// removeStale removes the cache files a crash left behind.
func removeStale(dir string) {
	if dir == "" {
		dir = os.TempDir()
	}
	names, _ := os.ReadDir(dir)
	for _, e := range names {
		if strings.HasPrefix(e.Name(), arenaPrefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// append adds a record and returns its offset. The caller holds the cache's write lock.
func (a *arena) append(rec []byte) (int, error) {
	if len(a.tail)+len(rec) > cap(a.tail) {
		if err := a.flush(); err != nil {
			return 0, err
		}
	}
	off := a.used
	if len(rec) > cap(a.tail) { // larger than the buffer: straight to the file
		if _, err := a.f.WriteAt(rec, int64(off)); err != nil {
			return 0, fmt.Errorf("hotcache: write the cache file: %w", err)
		}
		a.used += len(rec)
		a.flushed = a.used
		return off, nil
	}
	a.tail = append(a.tail, rec...)
	a.used += len(rec)
	return off, nil
}

func (a *arena) flush() error {
	if len(a.tail) == 0 {
		return nil
	}
	if _, err := a.f.WriteAt(a.tail, int64(a.flushed)); err != nil {
		return fmt.Errorf("hotcache: write the cache file: %w", err)
	}
	a.flushed += len(a.tail)
	a.tail = a.tail[:0]
	return nil
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, readAhead); return &b }}

// read returns the record at off (header, key, value), in the tail or read into *buf (from
// readBufs, grown when the record is larger). small says the record is at most smallSlotBytes.
// The caller holds the cache's lock, read or write.
func (a *arena) read(off int, buf *[]byte, small bool) ([]byte, error) {
	if off >= a.flushed {
		rec := a.tail[off-a.flushed:]
		return rec[:recordLen(rec)], nil
	}
	f := a.front
	if small {
		f = a.small
	}
	if f != nil {
		if rec, ok := f.get(off, buf); ok {
			return rec, nil
		}
	}
	ahead := readAhead
	if small {
		ahead = smallSlotBytes // the whole record: the kernel copies no more than that
	}
	b := (*buf)[:min(ahead, a.flushed-off)]
	if _, err := a.f.ReadAt(b, int64(off)); err != nil {
		return nil, fmt.Errorf("hotcache: read the cache file: %w", err)
	}
	n := recordLen(b)
	if n <= len(b) {
		if f != nil {
			f.offer(off, b[:n])
		}
		return b[:n], nil
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b = (*buf)[:n]
	if _, err := a.f.ReadAt(b, int64(off)); err != nil {
		return nil, fmt.Errorf("hotcache: read the cache file: %w", err)
	}
	return b, nil
}

// reset empties the arena and gives its disk space and page cache back.
func (a *arena) reset() error {
	a.used, a.flushed, a.tail = 0, 0, a.tail[:0]
	if a.front != nil {
		a.front.clear()
		a.small.clear()
	}
	if err := a.f.Truncate(0); err != nil {
		return fmt.Errorf("hotcache: empty the cache file: %w", err)
	}
	return nil
}

func (a *arena) close() error {
	err := a.f.Close()
	if a.front != nil {
		a.front.free()
	}
	if a.small != nil {
		a.small.free()
	}
	if a.name != "" {
		os.Remove(a.name)
	}
	return err
}

// recordLen is the length of the record that rec starts with, from its header.
func recordLen(rec []byte) int {
	return headerBytes + int(binary.LittleEndian.Uint32(rec)) + int(binary.LittleEndian.Uint32(rec[4:]))
}
