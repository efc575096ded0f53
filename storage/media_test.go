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
