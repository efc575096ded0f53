package media

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
)

// TestDeletedWhilePutInPlace: the catalog may delete an item after its download was verified and
// while its file is being synced and renamed into place. The file is then not recorded; it is
// removed at once instead of staying on disk until the next start's sweep, unless another item
// is served from the same content.
func TestDeletedWhilePutInPlace(t *testing.T) {
	ctx := context.Background()
	f, db, cache := newTestFetcher(t, Options{})
	_, md5hex := picture("M1")
	// putInPlace runs id's task up to a verified file under its final name.
	putInPlace := func(id string) *task {
		t.Helper()
		f.mu.Lock()
		m, _ := picture(id)
		f.enqueueLocked(id, m, md5hex, classOnDemand)
		task := f.q.take(true)
		f.mu.Unlock()
		if task == nil || task.id != id {
			t.Fatalf("took %v, want %s", task, id)
		}
		d, err := cache.Begin(md5hex, int64(len(pictureBody)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Write(pictureBody); err != nil {
			t.Fatal(err)
		}
		if res := f.commit(d, task); res.err != nil {
			t.Fatal(res.err)
		}
		return task
	}
	onDisk := func() bool { _, ok := cache.Has(md5hex); return ok }

	// Deleted while its file was put in place, and nothing else has that content.
	task := putInPlace("M1")
	if err := f.forgetDeleted(ctx, []string{"M1"}); err != nil {
		t.Fatal(err)
	}
	f.finish(ctx, task, result{})
	if onDisk() {
		t.Error("the file of an item deleted while it was put in place stays on disk")
	}
	if rec, err := db.MediaFileRecorded(ctx, md5hex); err != nil || rec {
		t.Errorf("the file of a deleted item is recorded (%v, %v)", rec, err)
	}

	// The same content is recorded for another item: the file stays, and is served.
	f.finish(ctx, putInPlace("M2"), result{})
	task = putInPlace("M3")
	if err := f.forgetDeleted(ctx, []string{"M3"}); err != nil {
		t.Fatal(err)
	}
	f.finish(ctx, task, result{})
	if !onDisk() {
		t.Fatal("removed a file another item is served from")
	}
	if mf, err := db.MediaFileExact(ctx, "M2"); err != nil || mf.MD5 != md5hex {
		t.Errorf("M2 is served from %+v, %v; want %s", mf, err, md5hex)
	}
}

// TestAdoptedFileEvictedBeforeItIsRecorded: an item whose content another item's file already
// has takes that file over without a download; if the cache gives the file up before the item is
// recorded, the item is fetched again rather than recorded for a file that is gone (it would be
// counted as cached and never prefetched, and a device would wait for an on-demand fetch).
func TestAdoptedFileEvictedBeforeItIsRecorded(t *testing.T) {
	ctx := context.Background()
	f, db, cache := newTestFetcher(t, Options{})
	m2, md5hex := picture("M2")
	if _, err := db.StoreMediaFiles(ctx, []storage.MediaRecord{{ID: "M2", MD5: md5hex, ContentType: m2.ContentType, Size: m2.Size}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	d, err := cache.Begin(md5hex, m2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(pictureBody); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(m2.Size); err != nil {
		t.Fatal(err)
	}

	m3, _ := picture("M3")
	f.mu.Lock()
	f.enqueueLocked("M3", m3, md5hex, classOnDemand)
	task := f.q.take(true)
	f.mu.Unlock()
	if file, res := f.download(ctx, task); file != nil || res.err != nil {
		t.Fatalf("download of content already in place: %v, %v; want it taken over", file, res.err)
	}
	if _, err := f.evict(ctx, 0, 1<<30, true); err != nil {
		t.Fatal(err)
	}
	f.finish(ctx, task, result{})
	if mf, err := db.MediaFileExact(ctx, "M3"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("M3 is recorded as served from %+v (%v), and its file is gone", mf, err)
	}
	f.mu.Lock()
	queued := f.q.tasks["M3"]
	f.mu.Unlock()
	if queued == nil || queued.running {
		t.Errorf("M3 is not queued to be fetched again: %+v", queued)
	}
}

// TestEvictionPastOneBatch: when more files than one eviction reads must go to make room (many
// small files no product refers to, a large one to fetch), the room is made batch after batch,
// at once. And when the downloads under way leave no room for an item, a device's request
// gives up nothing, however many files there are.
func TestEvictionPastOneBatch(t *testing.T) {
	ctx := context.Background()
	defer func(n int) { evictBatch = n }(evictBatch)
	evictBatch = 2
	fill := func(t *testing.T) (*Fetcher, *storage.DB) {
		f, db, _ := newTestFetcher(t, Options{MaxBytes: 500})
		var recs []storage.MediaRecord
		for i := range 5 {
			recs = append(recs, storage.MediaRecord{ID: fmt.Sprintf("S%d", i), MD5: fmt.Sprintf("%032x", i+1), ContentType: "image/jpeg", Size: 100})
		}
		if _, err := db.StoreMediaFiles(ctx, recs, time.Now()); err != nil {
			t.Fatal(err)
		}
		return f, db
	}
	t.Run("room_made", func(t *testing.T) {
		f, db := fill(t)
		if err := f.reserve(ctx, &task{id: "V", size: 450, class: classVideo}); err != nil {
			_, used, _ := db.MediaUsageExact(ctx)
			t.Fatalf("no room made for 450 bytes in a 500-byte cache of files no product refers to: %v (%d bytes cached)", err, used)
		}
	})
	t.Run("no_room_possible", func(t *testing.T) {
		f, db := fill(t)
		f.mu.Lock()
		f.reserved = 300 // downloads under way
		f.mu.Unlock()
		err := f.reserve(ctx, &task{id: "D", size: 450, class: classOnDemand})
		if _, used, _ := db.MediaUsageExact(ctx); err == nil || used != 500 {
			t.Fatalf("a request that cannot fit beside the downloads under way: %v, %d bytes left cached; want refused, the 500 kept", err, used)
		}
	})
}
