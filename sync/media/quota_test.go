package media_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/tools/testenv"
)

// When the cache is full, files no product refers to go first, then the least recently served;
// a prefetch never gives up a file a product refers to, a device's request may.
func TestQuotaEvictionOrder(t *testing.T) {
	store := startStore(t, testenv.AzuriteOptions{}, http.DefaultClient)
	s := newShop(t)
	const size = 300 << 10
	a := item{"A", "a.jpg", "image/jpeg", content(11, size)}
	b := item{"B", "b.jpg", "image/jpeg", content(12, size)}
	c := item{"C", "c.jpg", "image/jpeg", content(13, size)}
	d := item{"D", "d.jpg", "image/jpeg", content(14, size)}
	for _, it := range []item{a, b, c, d} {
		store.put(t, it.blob, it.data)
	}
	s.products(t, map[string][]string{"P1": {"A", "B"}, "P2": {"C"}})
	s.catalog(t, a, b, c, d)
	src := media.NewContainer(media.Locator{URL: store.sasURL(t, time.Hour)}, http.DefaultClient)
	clock := testenv.NewClock(time.Now())
	f := s.fetcher(t, src, func(o *media.Options) { o.MaxBytes = 1 << 20; o.Now = clock.Now }) // room for three

	// The prefetch fills the cache with A, B, C and leaves D waiting: all three are referenced.
	st := waitStatus(t, f, "the cache full and D waiting", func(st media.Status) bool { return st.Files == 3 && st.WaitingSpace == 1 })
	if st.Bytes != 3*size {
		t.Fatalf("status %+v", st)
	}
	has := func(it item) bool { _, ok := s.cache.Has(md5hex(it.data)); return ok }
	if !has(a) || !has(b) || !has(c) || has(d) {
		t.Fatalf("prefetch: A %v B %v C %v D %v", has(a), has(b), has(c), has(d))
	}
	// B then A are served; C never is. A device asking for D gives up C, the least recently
	// served.
	for _, it := range []item{b, a} {
		if _, _, err := read(t, f, it.id); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second) // distinct serving times
	}
	if got, _, err := read(t, f, d.id); err != nil || string(got) != string(d.data) {
		t.Fatalf("D on demand: %v", err)
	}
	if !has(a) || !has(b) || has(c) || !has(d) {
		t.Fatalf("after D: A %v B %v C %v D %v, want C given up", has(a), has(b), has(c), has(d))
	}
	// No product refers to A any more: a device asking for C gives up A, although B was served
	// longer ago.
	s.products(t, map[string][]string{"P1": {"B"}})
	if _, _, err := read(t, f, c.id); err != nil {
		t.Fatal(err)
	}
	if has(a) || !has(b) || !has(c) || !has(d) {
		t.Fatalf("after C: A %v B %v C %v D %v, want A given up", has(a), has(b), has(c), has(d))
	}
	// A file larger than the whole cache is refused with the reason.
	big := item{"E", "e.mp4", "video/mp4", content(15, 2<<20)}
	store.put(t, big.blob, big.data)
	s.catalog(t, big)
	_, _, err := read(t, f, big.id)
	var unavailable *media.UnavailableError
	if !errors.As(err, &unavailable) {
		t.Fatalf("a file larger than the cache: %v", err)
	}
}
