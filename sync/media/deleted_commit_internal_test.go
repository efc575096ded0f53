package media

import (
	"context"
	"testing"
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
