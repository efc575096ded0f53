package media_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/storeedge/storeedge/sync/media"
)

// A prefetch longer than the queue's window keeps only the window in memory and the rest in the
// catalog, yet status counts all of it, the order of work holds across the whole catalog, a
// device's request for an item deep in the backlog goes first, and items changed or deleted
// while they wait are fetched at their new version or not at all.
func TestLongPrefetchKeepsAWindowInMemory(t *testing.T) {
	const window = 8
	var items []item
	for i := range 40 {
		items = append(items, item{fmt.Sprintf("I%02d", i), fmt.Sprintf("i%02d.jpg", i), "image/jpeg", content(uint64(100+i), 300)})
	}
	for i := range 20 {
		items = append(items, item{fmt.Sprintf("D%02d", i), fmt.Sprintf("d%02d.pdf", i), "application/pdf", content(uint64(200+i), 400)})
	}
	for i := range 12 {
		items = append(items, item{fmt.Sprintf("V%02d", i), fmt.Sprintf("v%02d.mp4", i), "video/mp4", content(uint64(300+i), 500)})
	}
	rand.New(rand.NewPCG(5, 9)).Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	src := newMemSource(items...)
	src.hold = make(chan struct{})
	s := newShop(t)
	s.catalog(t, items...)
	var total int64
	for _, it := range items {
		total += int64(len(it.data))
	}
	f := s.fetcher(t, src, func(o *media.Options) { o.Parallel = 1; o.QueueWindow = window })

	// The first download is held: everything is pending, a window of each kind is in memory.
	waitFor(t, func() bool { return len(src.requests()) == 1 })
	st := waitStatus(t, f, "every item pending", func(st media.Status) bool { return st.Pending == len(items) })
	if st.PendingBytes != total {
		t.Errorf("pending %d bytes, want %d", st.PendingBytes, total)
	}
	if n := media.QueuedTasks(f); n > 3*window+1 {
		t.Errorf("%d tasks in memory for a window of %d per kind", n, window)
	}

	// While they wait: a device asks for the last video, one image is deleted and one document
	// gets new content (so a new place in the catalog's order).
	last := lastOf(items, "video/mp4")
	got := make(chan error, 1)
	go func() { _, _, err := read(t, f, last.id); got <- err }()
	waitFor(t, func() bool { return len(src.requests()) == 2 })
	gone := lastOf(items, "image/jpeg")
	s.deleteMedia(t, gone.id)
	changed := lastOf(items, "application/pdf")
	changed.blob, changed.data = "changed.pdf", content(999, 450)
	src.mu.Lock()
	src.blobs[changed.blob] = changed.data
	src.mu.Unlock()
	s.catalog(t, changed)
	waitStatus(t, f, "the deletion and the new version counted", func(st media.Status) bool {
		return st.Pending == len(items)-1 && st.PendingBytes == total-int64(len(gone.data))+50
	})
	close(src.hold)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	waitStatus(t, f, "every item", func(st media.Status) bool { return st.Files == int64(len(items)-1) && st.Pending == 0 })

	// Images, documents, videos, each in catalog order; the changed document last of its kind.
	want := []string{}
	for _, ct := range []string{"image/jpeg", "application/pdf", "video/mp4"} {
		for _, it := range items {
			if it.contentType == ct && it.id != gone.id && it.id != changed.id && it.id != last.id {
				want = append(want, it.blob+"@0")
			}
		}
		if ct == "application/pdf" {
			want = append(want, changed.blob+"@0")
		}
	}
	first := want[0]
	want = append([]string{first, last.blob + "@0"}, want[1:]...)
	if r := src.requests(); !equal(r, want) {
		t.Errorf("requests\n%v\nwant\n%v", r, want)
	}
	if b, _, err := read(t, f, changed.id); err != nil || !bytes.Equal(b, changed.data) {
		t.Errorf("the changed document: %v", err)
	}
	if _, _, err := read(t, f, gone.id); err == nil {
		t.Errorf("the deleted image is served")
	}
	if n := media.QueuedTasks(f); n != 0 {
		t.Errorf("%d tasks left in memory", n)
	}
}

// lastOf is the last item of a content type in catalog order.
func lastOf(items []item, ct string) item {
	var it item
	for _, i := range items {
		if i.contentType == ct {
			it = i
		}
	}
	return it
}
