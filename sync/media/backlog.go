package media

import (
	"context"
	"hash/maphash"
	"log/slog"
)

// The queue holds at most a window of ready tasks per prefetch class; the rest of a long
// prefetch (a first sync of a large catalog queues hundreds of thousands of items, and while
// Blob storage cannot be reached they stay) waits in the catalog, where it already is. The
// backlog keeps only what status and progress need of those items — a count and their bytes —
// and reads them back from the media collection, in sequence order, as the window empties.
//
// A class's window is filled again once it is half empty. While a class still has items in the
// backlog, the workers take no task of a later class (they wait for the fill instead), so that
// the order of work holds across the backlog.

// DefaultQueueWindow is how many ready tasks of one class the queue holds.
const DefaultQueueWindow = 1024

// backlog is the items to fetch that are not in the queue: every one of class c has a local
// sequence above after[c] and at most the last one scanned. It is guarded by the fetcher's
// mutex.
type backlog struct {
	seeds [2]maphash.Seed
	items map[[2]uint64]int64 // by hash of the id: size<<2 | class
	n     [classVideo + 1]int
	bytes int64
	after [classVideo + 1]int64
}

func newBacklog() *backlog {
	return &backlog{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, items: map[[2]uint64]int64{}}
}

// The items are keyed by a 128-bit hash of their id (two 64-bit hashes with seeds of their own),
// so that the backlog of a million items is a few tens of megabytes the garbage collector need
// not scan; two ids of a million sharing a key is a chance in 10^26. Which items the window is
// filled with is read from the catalog; the counts say whether there are any left to read.
func (b *backlog) key(id string) [2]uint64 {
	return [2]uint64{maphash.String(b.seeds[0], id), maphash.String(b.seeds[1], id)}
}

// add counts an item as waiting in the backlog.
func (b *backlog) add(id string, class int, size int64) {
	k := b.key(id)
	b.remove(k)
	b.items[k] = size<<2 | int64(class)
	b.n[class]++
	b.bytes += size
}

// drop forgets an item, wherever the caller now keeps it.
func (b *backlog) drop(id string) {
	if len(b.items) > 0 {
		b.remove(b.key(id))
	}
}

func (b *backlog) remove(k [2]uint64) {
	v, ok := b.items[k]
	if !ok {
		return
	}
	delete(b.items, k)
	b.n[v&3]--
	b.bytes -= v >> 2
}

// clear forgets the items of a class still counted once the catalog has none left to read
// (none, unless two ids shared a key).
func (b *backlog) clear(class int) {
	for k, v := range b.items {
		if int(v&3) == class {
			b.remove(k)
		}
	}
}

// total is the number of items in the backlog and their bytes.
func (b *backlog) total() (int, int64) {
	return len(b.items), b.bytes
}

// countsLocked is what is left to fetch, in the queue and in the backlog, and what waits in the
// queue, by reason.
func (f *Fetcher) countsLocked() (pending int, bytes int64, waiting map[string]int) {
	pending, bytes, waiting = f.q.counts()
	n, b := f.back.total()
	return pending + n, bytes + b, waiting
}

// wantsRefillLocked says whether a class's window should be filled from the backlog.
func (f *Fetcher) wantsRefillLocked(class int) bool {
	return class != classOnDemand && f.back.n[class] > 0 && f.q.held(class) < f.o.QueueWindow/2
}

// askRefillLocked wakes reconcile to fill the windows that run low.
func (f *Fetcher) askRefillLocked(class int) {
	if f.wantsRefillLocked(class) {
		select {
		case f.refill <- struct{}{}:
		default:
		}
	}
}

// fill fills every class's window that runs low from the backlog.
func (f *Fetcher) fill(ctx context.Context) error {
	for class := classImage; class <= classVideo; class++ {
		if err := f.fillClass(ctx, class); err != nil {
			return err
		}
	}
	return nil
}

// fillClass reads the catalog after the class's backlog mark and queues its items until the
// window is full or the items scanned so far are all read.
func (f *Fetcher) fillClass(ctx context.Context, class int) error {
	for {
		f.mu.Lock()
		want, after, last := f.wantsRefillLocked(class), f.back.after[class], f.lastSeq
		f.mu.Unlock()
		if !want {
			return nil
		}
		gen := f.readStart()
		items, err := f.o.DB.MediaItems(ctx, after, scanBatch)
		if err != nil {
			f.readEnd()
			return err
		}
		end := len(items) < scanBatch
		full := false
		for i := range items {
			it := &items[i]
			if it.Seq > last {
				end = true
				break
			}
			if !it.Deleted && classOf(it.Manifest.ContentType) == class && f.consider(it, true, gen) == windowIsFull {
				full = true
				break
			}
			f.setAfter(class, it.Seq)
		}
		f.readEnd()
		if full {
			return nil // the window is full again
		}
		if end {
			f.endOfBacklog(class)
			return nil
		}
	}
}

func (f *Fetcher) setAfter(class int, seq int64) {
	f.mu.Lock()
	f.back.after[class] = max(f.back.after[class], seq)
	f.mu.Unlock()
}

// endOfBacklog is reached when every item scanned so far was read: nothing of the class is
// left in the backlog.
func (f *Fetcher) endOfBacklog(class int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.back.n[class]; n > 0 {
		f.log.Debug("media: backlog counts corrected", slog.Int(keyFiles, n))
		f.back.clear(class)
		f.changedLocked()
	}
}

// backlogAheadLocked says whether the backlog holds work of a class before class, to be read
// into the queue before a task of class is taken.
func (f *Fetcher) backlogAheadLocked(class int) bool {
	for c := classImage; c < class; c++ {
		// A class whose window is held by large files waiting for their hours reads no more
		// of its backlog until they go: the classes after it do not wait for that.
		if f.back.n[c] > 0 && f.q.windowN[c] < f.o.QueueWindow/2 {
			f.askRefillLocked(c)
			return true
		}
	}
	return false
}
