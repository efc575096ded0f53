package media_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/media"
)

// With media.prefetch false, what a crash left is kept for when a device asks: a verified file
// renamed into place but not recorded is taken over without a download, and a download cut short
// goes on from where it stopped (docs/media.md).
func TestPrefetchOffKeepsWhatACrashLeft(t *testing.T) {
	pic := item{"I1", "i1.jpg", "image/jpeg", content(1, 5000)}
	video := item{"V1", "v1.mp4", "video/mp4", content(2, 3<<20)}
	src := newMemSource(pic, video)
	s := newShop(t)
	s.catalog(t, pic, video)
	// As a crash leaves them: the picture in place, unrecorded; the video a third fetched.
	path := s.cache.Path(md5hex(pic.data))
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pic.data, 0o640); err != nil {
		t.Fatal(err)
	}
	d, err := s.cache.Begin(md5hex(video.data), int64(len(video.data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(video.data[:1<<20]); err != nil {
		t.Fatal(err)
	}
	d.Close()

	f := s.fetcher(t, src, func(o *media.Options) { o.Prefetch = false })
	waitFor(t, func() bool { return media.FirstScanDone(f) })
	for _, it := range []item{pic, video} {
		got, _, err := read(t, f, it.id)
		if err != nil || !slices.Equal(got, it.data) {
			t.Fatalf("%s: %d bytes (%v), want its %d", it.id, len(got), err, len(it.data))
		}
	}
	if got, want := src.requests(), []string{"v1.mp4@1048576"}; !slices.Equal(got, want) {
		t.Errorf("Blob storage was asked for %v, want only %v", got, want)
	}
}

// A download cut short leaves no partial file behind once nothing will fetch it: not when its
// item is deleted from the catalog while the download waits to be tried again, nor when the
// item moves to another version meanwhile. Such files are outside the cache's quota.
func TestAbandonedPartialFilesAreRemoved(t *testing.T) {
	for _, change := range []string{"deleted", "new version"} {
		t.Run(change, func(t *testing.T) {
			video := item{"V1", "v1.mp4", "video/mp4", content(3, 3<<20)}
			src := &goneAfterACut{memSource: newMemSource(video)}
			src.cutOnce[video.blob] = 1 << 20
			s := newShop(t)
			s.catalog(t, video)
			f := s.fetcher(t, src, func(o *media.Options) { o.RetryMax = time.Hour })
			old := md5hex(video.data)
			waitStatus(t, f, "the cut download to wait for its retry", func(st media.Status) bool { return st.Failed == 1 })
			if p, _ := s.cache.Partials(); p[old] != 1<<20 {
				t.Fatalf("partial files %v, want the cut download's", p)
			}
			switch change {
			case "deleted":
				s.deleteMedia(t, video.id)
				waitStatus(t, f, "the item to be forgotten", func(st media.Status) bool { return st.Pending == 0 && st.Failed == 0 })
			case "new version":
				next := item{video.id, "v1b.mp4", "video/mp4", content(4, 2<<20)}
				src.mu.Lock()
				src.blobs[next.blob] = next.data
				src.mu.Unlock()
				s.catalog(t, next)
				waitStatus(t, f, "the new version", func(st media.Status) bool { return st.Files == 1 && st.Pending == 0 })
			}
			if p, _ := s.cache.Partials(); p[old] != 0 {
				t.Errorf("partial files %v: the abandoned download's is still there", p)
			}
		})
	}
}

// goneAfterACut is a store whose blobs are cut at the first download and then gone (404): the
// item waits for its retry, its partial file kept.
type goneAfterACut struct {
	*memSource
}

func (g *goneAfterACut) Download(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	body, size, err := g.memSource.Download(ctx, name, offset)
	g.mu.Lock()
	delete(g.blobs, name)
	g.mu.Unlock()
	return body, size, err
}
