package media_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/tools/testenv"
)

// The catalog's media are fetched from Blob storage, verified, and served from the cache; a blob
// that does not match its manifest is quarantined and never served.
func TestPrefetchVerifiesAndQuarantines(t *testing.T) {
	store := startStore(t, testenv.AzuriteOptions{}, http.DefaultClient)
	s := newShop(t)
	items := []item{
		{"M1", "img/M1.jpg", "image/jpeg", content(1, 30_000)},
		{"M2", "doc/M2.pdf", "application/pdf", content(2, 200_000)},
		{"M3", "vid/M3.mp4", "video/mp4", content(3, 3<<20)},
		{"M4", "img/M4.png", "image/png", content(4, 1)},
	}
	for _, it := range items {
		store.put(t, it.blob, it.data)
	}
	bad := item{"M5", "img/M5.jpg", "image/jpeg", content(5, 5000)}
	store.put(t, bad.blob, append([]byte{bad.data[0] ^ 1}, bad.data[1:]...)) // same size, other MD5
	s.catalog(t, append(items, bad)...)

	src := media.NewContainer(media.Locator{URL: store.sasURL(t, time.Hour)}, http.DefaultClient)
	f := s.fetcher(t, src, nil)
	st := waitStatus(t, f, "the prefetch to end", func(st media.Status) bool { return st.Files == 4 && st.Quarantined == 1 })
	if st.Bytes != 30_000+200_000+3<<20+1 {
		t.Errorf("status counts %d bytes", st.Bytes)
	}
	for _, it := range items {
		got, file, err := read(t, f, it.id)
		if err != nil {
			t.Fatalf("%s: %v", it.id, err)
		}
		if !bytes.Equal(got, it.data) || file.MD5 != md5hex(it.data) || file.ContentType != it.contentType {
			t.Errorf("%s: served %d bytes, MD5 %s, type %s", it.id, len(got), file.MD5, file.ContentType)
		}
	}
	if hits, misses := f.Hits(); hits != 4 || misses != 0 {
		t.Errorf("after reading the prefetched items: %d hits, %d misses; want 4, 0", hits, misses)
	}
	_, _, err := read(t, f, bad.id)
	var unavailable *media.UnavailableError
	if !errors.As(err, &unavailable) || unavailable.RetryAfter <= 0 ||
		!strings.HasPrefix(unavailable.Reason, "its blob does not match its manifest and is quarantined") {
		t.Fatalf("quarantined item: %v, want unavailable with a retry time, saying it is quarantined", err)
	}
	if len(st.Problems) != 1 || st.Problems[0].ID != "M5" || st.Problems[0].Kind != storage.MediaQuarantined {
		t.Errorf("status problems %+v", st.Problems)
	}
	if _, _, err := read(t, f, "M9"); !errors.Is(err, media.ErrUnknown) {
		t.Errorf("unknown id: %v", err)
	}

	// Fixed in the store, the quarantined blob comes in at its next attempt.
	store.put(t, bad.blob, bad.data)
	waitStatus(t, f, "the quarantined blob fetched again", func(st media.Status) bool { return st.Files == 5 && st.Quarantined == 0 })
	if got, _, err := read(t, f, bad.id); err != nil || !bytes.Equal(got, bad.data) {
		t.Errorf("after the fix: %v", err)
	}
	// The quarantined item was a miss; the unknown id is neither.
	if hits, misses := f.Hits(); hits != 5 || misses != 1 {
		t.Errorf("in the end: %d hits, %d misses; want 5, 1", hits, misses)
	}
}

// After a restart, a cache that lacks nothing says Blob storage is "starting", with no last
// contact, as media.md promises: nothing has asked Blob storage anything yet, and deleting a
// cached item needs no download. The first download needed makes it "ok", with a contact time.
func TestCompleteCacheStaysStartingUntilADownloadIsNeeded(t *testing.T) {
	store := startStore(t, testenv.AzuriteOptions{}, http.DefaultClient)
	s := newShop(t)
	m1 := item{"M1", "img/M1.jpg", "image/jpeg", content(1, 10_000)}
	m2 := item{"M2", "img/M2.jpg", "image/jpeg", content(2, 20_000)}
	m3 := item{"M3", "img/M3.jpg", "image/jpeg", content(3, 30_000)}
	for _, it := range []item{m1, m2, m3} {
		store.put(t, it.blob, it.data)
	}
	s.catalog(t, m1, m2)
	src := media.NewContainer(media.Locator{URL: store.sasURL(t, time.Hour)}, http.DefaultClient)

	first, stop := s.startFetcher(t, src, nil)
	waitStatus(t, first, "the first prefetch", func(st media.Status) bool { return st.Files == 2 && idle(st) })
	stop()

	f := s.fetcher(t, src, nil)
	if st, err := f.Status(context.Background()); err != nil || st.State != media.StateStarting || st.LastContact != nil {
		t.Fatalf("right after the restart: %v, state %q, last contact %v; want starting and none", err, st.State, st.LastContact)
	}
	s.deleteMedia(t, m1.id)
	st := waitStatus(t, f, "the deleted item removed", func(st media.Status) bool { return st.Files == 1 })
	if st.State != media.StateStarting || st.LastContact != nil {
		t.Errorf("with a cache that lacks nothing: state %q, last contact %v; want starting and none", st.State, st.LastContact)
	}
	if got, _, err := read(t, f, m2.id); err != nil || !bytes.Equal(got, m2.data) {
		t.Errorf("the cached item while starting: %v", err)
	}

	s.catalog(t, m3)
	st = waitStatus(t, f, "the new item fetched", func(st media.Status) bool { return st.Files == 2 && idle(st) })
	if st.LastContact == nil {
		t.Errorf("after a download: state %q with no last contact", st.State)
	}
}

// With media.enabled false (no source) the cache serves what it has, and an item it lacks is
// unavailable for an hour, saying fetching is off (media.md: 503 with Retry-After: 3600); it is
// neither fetched nor unknown.
func TestFetchingOffAnswersAnHour(t *testing.T) {
	s := newShop(t)
	s.catalog(t, item{"M1", "img/M1.jpg", "image/jpeg", content(1, 100)})
	f := s.fetcher(t, nil, func(o *media.Options) { o.Prefetch = false })
	_, _, err := read(t, f, "M1")
	var unavailable *media.UnavailableError
	if !errors.As(err, &unavailable) || unavailable.RetryAfter != time.Hour || !strings.Contains(unavailable.Reason, "fetching is off") {
		t.Fatalf("an item not cached with fetching off: %v; want unavailable for an hour, saying fetching is off", err)
	}
}
