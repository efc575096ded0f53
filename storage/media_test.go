package storage

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Files recorded together in one transaction give back exactly the files no item is served from
// any more: a file one item leaves and another item of the same group moves to stays.
func TestStoreMediaFilesTogether(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	const x, y, z, w = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccccccccccc", "dddddddddddddddddddddddddddddddd"
	at := time.Unix(1e9, 0)
	if _, err := db.StoreMediaFiles(ctx, []MediaRecord{
		{ID: "A", MD5: x, ContentType: "image/jpeg", Size: 10},
		{ID: "C", MD5: z, ContentType: "image/png", Size: 30},
	}, at); err != nil {
		t.Fatal(err)
	}
	// A moves from x to y, B comes to x, C moves from z to w: only z is left unused.
	unused, err := db.StoreMediaFiles(ctx, []MediaRecord{
		{ID: "A", MD5: y, ContentType: "image/jpeg", Size: 20},
		{ID: "B", MD5: x, ContentType: "image/jpeg", Size: 10},
		{ID: "C", MD5: w, ContentType: "image/png", Size: 40},
	}, at)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unused, []string{z}) {
		t.Errorf("unused %v, want [%s]", unused, z)
	}
	for id, want := range map[string]string{"A": y, "B": x, "C": w} {
		if f, err := db.MediaFileExact(ctx, id); err != nil || f.MD5 != want {
			t.Errorf("%s served from %+v (%v), want %s", id, f, err, want)
		}
	}
	if files, bytes, err := db.MediaUsageExact(ctx); err != nil || files != 3 || bytes != 70 {
		t.Errorf("usage %d files %d bytes (%v), want 3 files, 70 bytes", files, bytes, err)
	}
}

// An item's stored time, its Last-Modified, only moves forward at a new version, past the old
// version's second, even when the new content is a file stored long before (another item's) or
// the change comes within the same second: a device asking If-Modified-Since with the old
// version's time must get the new one, not 304.
func TestMediaItemTimeMovesForwardAtANewVersion(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	const c1, c2 = "11111111111111111111111111111111", "22222222222222222222222222222222"
	store := func(id, md5 string, at time.Time) time.Time {
		t.Helper()
		if _, err := db.StoreMediaFiles(ctx, []MediaRecord{{ID: id, MD5: md5, ContentType: "image/jpeg", Size: 10}}, at); err != nil {
			t.Fatal(err)
		}
		f, err := db.MediaFileExact(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return f.StoredAt
	}
	t0 := time.UnixMilli(1_000_000_000_100)
	store("A", c1, t0)
	b1 := store("B", c2, t0.Add(5*time.Second))
	// B moves to the content A has had since t0.
	b2 := store("B", c1, t0.Add(6*time.Second))
	if want := t0.Add(6 * time.Second); !b2.Equal(want) {
		t.Errorf("B moved to an older file: stored at %v, want %v (was %v)", b2, want, b1)
	}
	// Back to c2 within the same second: the next second.
	b3 := store("B", c2, t0.Add(6*time.Second+300*time.Millisecond))
	if want := b2.Truncate(time.Second).Add(time.Second); !b3.Equal(want) {
		t.Errorf("a change within the second: stored at %v, want %v", b3, want)
	}
	// The same version again (a restart adopting it) keeps its time.
	if b4 := store("B", c2, t0.Add(time.Hour)); !b4.Equal(b3) {
		t.Errorf("the same version recorded again: stored at %v, want %v", b4, b3)
	}
	if a := store("A", c1, t0.Add(time.Hour)); !a.Equal(t0) {
		t.Errorf("A unchanged: stored at %v, want %v", a, t0)
	}
}
