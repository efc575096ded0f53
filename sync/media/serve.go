package media

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// File is an open, verified media file, ready to be served. The caller closes it.
type File struct {
	*os.File
	ID          string
	MD5         string // hex: the ETag
	Size        int64
	ContentType string
	ModTime     time.Time // when the file was stored: Last-Modified
}

// Open returns the verified file of a media item. An item the catalog knows but the cache does
// not hold yet is fetched first, ahead of everything else, waiting at most media.on_demand_wait
// (and ctx). Its errors: ErrUnknown for an item the catalog does not have, *UnavailableError
// (with a Retry-After) for one that cannot be served now, another error for a local failure.
func (f *Fetcher) Open(ctx context.Context, id string) (*File, error) {
	for attempt := 0; ; attempt++ {
		file, err := f.openCached(ctx, id, attempt > 0)
		if err == nil && attempt == 0 {
			f.hits.Add(1)
		}
		if err == nil || !errors.Is(err, storage.ErrNotFound) || attempt > 0 {
			if errors.Is(err, storage.ErrNotFound) {
				err = &UnavailableError{Reason: "its file was given up (the cache needed the room) while it was fetched", RetryAfter: time.Second}
			}
			return file, err
		}
		err = f.fetchNow(ctx, id)
		if !errors.Is(err, ErrUnknown) {
			f.misses.Add(1)
		}
		if err != nil {
			return nil, err
		}
	}
}

// Hits counts, since start, the items Open found in the cache (hits) and the catalog's items it
// had to fetch from Blob storage first, or tried to (misses); both only grow.
func (f *Fetcher) Hits() (hits, misses int64) { return f.hits.Load(), f.misses.Load() }

// openCached opens the file the index names for id; storage.ErrNotFound when there is none.
// fresh reads the index as of the last commit, for a file just fetched.
func (f *Fetcher) openCached(ctx context.Context, id string, fresh bool) (*File, error) {
	mf, err := f.lookup(ctx, id, fresh)
	if err != nil {
		return nil, err
	}
	fh, err := f.o.Cache.Open(mf.MD5)
	if errors.Is(err, fs.ErrNotExist) {
		// Deleted behind the server's back: forget it and fetch it again.
		f.invalidate()
		if err := f.o.DB.EvictMediaFiles(ctx, []string{mf.MD5}); err != nil {
			return nil, err
		}
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("media: open %s: %w", id, err)
	}
	return &File{File: fh, ID: id, MD5: mf.MD5, Size: mf.Size, ContentType: mf.ContentType, ModTime: mf.StoredAt}, nil
}

// lookup finds the file served for id: in memory when it was looked up before, else in the
// index (as of the last commit when fresh). Every change of the index goes through the Fetcher,
// which drops what it changes from memory (invalidate); a lookup that raced with a change is not
// kept.
func (f *Fetcher) lookup(ctx context.Context, id string, fresh bool) (storage.MediaFile, error) {
	f.imu.RLock()
	mf, ok := f.index[id]
	gen := f.igen
	f.imu.RUnlock()
	if ok && !fresh {
		return mf, nil
	}
	read := f.o.DB.MediaFile
	if fresh {
		read = f.o.DB.MediaFileExact
	}
	mf, err := read(ctx, id)
	if err != nil {
		return mf, err
	}
	f.imu.Lock()
	if f.igen == gen {
		f.index[id] = mf
	}
	f.imu.Unlock()
	return mf, nil
}

// invalidate drops ids (all of them when none is named) from the in-memory index.
func (f *Fetcher) invalidate(ids ...string) {
	f.imu.Lock()
	f.igen++
	if len(ids) == 0 {
		clear(f.index)
	}
	for _, id := range ids {
		delete(f.index, id)
	}
	f.imu.Unlock()
}

// fetchNow fetches a media item the cache lacks, first in line, and waits for it.
func (f *Fetcher) fetchNow(ctx context.Context, id string) error {
	m, err := f.o.DB.MediaManifest(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrUnknown
	}
	if err != nil {
		return err
	}
	if f.o.Source == nil {
		return &UnavailableError{Reason: "it is not cached, and fetching is off (media.enabled is false)", RetryAfter: time.Hour}
	}
	md5hex, ok := m.HexMD5()
	if !ok {
		return fmt.Errorf("media: manifest %s: md5 %q is not base64 of 16 bytes", id, m.MD5)
	}
	ch, t, early := f.want(id, m, md5hex)
	if early != nil {
		return early
	}
	wait := time.NewTimer(f.o.OnDemandWait)
	defer wait.Stop()
	select {
	case err := <-ch:
		return err
	case <-wait.C:
	case <-ctx.Done():
	}
	f.unwant(id, ch)
	got := t.got.Load()
	return &UnavailableError{Reason: fmt.Sprintf("it is not cached yet; being fetched: %s of %s so far", fmtBytes(got), fmtBytes(m.Size)), RetryAfter: f.retryAfter(m.Size - got)}
}

// want puts id first in line and registers a waiter. It answers at once (early) when the item
// cannot come now: quarantined and not due for another attempt, or Blob storage unreachable.
func (f *Fetcher) want(id string, m cloudapi.MediaManifest, md5hex string) (chan error, *task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	t := f.q.tasks[id]
	if t == nil {
		f.back.drop(id)
		t = f.enqueueLocked(id, m, md5hex, classOnDemand)
	}
	if t.running {
		// A prefetch under way is now what a device waits for: the large-file window no longer
		// stops it, and, stopped already, it goes on at once (finish).
		f.q.setClass(t, classOnDemand)
	} else {
		if !t.notBefore.IsZero() && t.why != whyWindow && t.why != storage.MediaNoSpace {
			fl := f.failures[id]
			return nil, nil, &UnavailableError{Reason: failureReason(fl.Kind, fl.Reason), RetryAfter: t.notBefore.Sub(now)}
		}
		f.q.promote(t)
		f.changedLocked()
	}
	if now.Before(f.pausedTo) {
		return nil, nil, &UnavailableError{Reason: notCachedBecause(f.blob.state, f.blob.lastError), RetryAfter: f.pausedTo.Sub(now)}
	}
	ch := make(chan error, 1)
	f.waiters[id] = append(f.waiters[id], ch)
	if _, ok := f.waitedFor[id]; !ok {
		f.waitedFor[id] = t.md5
		f.countWant(t.md5, 1)
	}
	return ch, t, nil
}

// unwant drops a waiter that gave up.
func (f *Fetcher) unwant(id string, ch chan error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := f.waiters[id]
	for i, c := range list {
		if c == ch {
			f.waiters[id] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(f.waiters[id]) == 0 {
		delete(f.waiters, id)
		f.unwaitedLocked(id)
	}
}

// rewantedLocked moves the devices waiting for t's item to its task's content, after the task
// took another version of the item.
func (f *Fetcher) rewantedLocked(t *task) {
	sum, ok := f.waitedFor[t.id]
	if !ok || sum == t.md5 {
		return
	}
	f.waitedFor[t.id] = t.md5
	f.countWant(sum, -1)
	f.countWant(t.md5, 1)
}

// unwaitedLocked notes that no device waits for id any more.
func (f *Fetcher) unwaitedLocked(id string) {
	sum, ok := f.waitedFor[id]
	if !ok {
		return
	}
	delete(f.waitedFor, id)
	f.countWant(sum, -1)
}

// countWant adds d to the devices waiting for content sum.
func (f *Fetcher) countWant(sum [md5.Size]byte, d int) {
	f.deviceMu.Lock()
	defer f.deviceMu.Unlock()
	if f.wanted[sum] += d; f.wanted[sum] <= 0 {
		delete(f.wanted, sum)
	}
}

// contentWanted reports whether a device waits for an item with this content.
func (f *Fetcher) contentWanted(sum [md5.Size]byte) bool {
	f.deviceMu.Lock()
	defer f.deviceMu.Unlock()
	return f.wanted[sum] > 0
}

// retryAfter estimates when left more bytes will be in, at the current rate.
func (f *Fetcher) retryAfter(left int64) time.Duration {
	f.mu.Lock()
	r := f.prog.rate()
	f.mu.Unlock()
	return min(max(eta(left, r), time.Second), 5*time.Minute)
}

// Served notes that a file was served, for the least-recently-served order of the quota.
func (f *Fetcher) Served(md5hex string) {
	f.smu.Lock()
	f.served[md5hex] = f.now()
	f.smu.Unlock()
}

// flushServed writes the times files were served to the index.
func (f *Fetcher) flushServed(ctx context.Context) {
	f.smu.Lock()
	served := f.served
	f.served = map[string]time.Time{}
	f.smu.Unlock()
	if err := f.o.DB.TouchMediaFiles(ctx, served); err != nil && ctx.Err() == nil {
		f.log.Warn("media: cannot record when files were served", "err", err.Error())
	}
}
