package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
)

// The waits between attempts at a failed blob are those media.md gives: the n-th drawn between
// half and all of 5 s·2ⁿ⁻¹, capped at media.retry_max.
func TestRetryDelayAsDocumented(t *testing.T) {
	const retryMax = time.Hour
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 8: 640 * time.Second, 20: retryMax} {
		lo, hi := want, want/2
		for range 200 {
			d := retryDelay(n, retryMax)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < want/2 || hi > want || hi-lo < want/4 {
			t.Errorf("wait %d: drawn from %v to %v, want from %v to %v, spread out", n, lo, hi, want/2, want)
		}
	}
	// A cap below the first step (media.retry_max takes 1 s) caps the first wait too.
	for n := range 4 {
		if d := retryDelay(n+1, time.Second); d > time.Second {
			t.Errorf("wait %d with media.retry_max 1s: %v", n+1, d)
		}
	}
}

// A download the cache's disk cannot take (full, failing) is a failure of the item, which waits
// its backoff while the others go on; a body that is cut or stalls is Blob storage unreachable,
// which pauses every download (media.md, the states).
func TestCopyResultTellsTheDiskFromBlobStorage(t *testing.T) {
	ctx := context.Background()
	if r := copyResult(ctx, &cacheWriteError{syscall.ENOSPC}, time.Minute); r.kind != storage.MediaFailed || !strings.Contains(r.err.Error(), "cannot write it to the media cache") {
		t.Errorf("disk full: %q, %v; want the item failed, saying the cache could not take it", r.kind, r.err)
	}
	if r := copyResult(ctx, io.ErrUnexpectedEOF, time.Minute); r.kind != KindUnreachable {
		t.Errorf("a cut body: %q, want Blob storage unreachable", r.kind)
	}
	stalled, cancel := context.WithCancelCause(ctx)
	cancel(errStalled)
	if r := copyResult(stalled, context.Canceled, time.Minute); r.kind != KindUnreachable || !errors.Is(r.err, errStalled) {
		t.Errorf("a stalled body: %q, %v", r.kind, r.err)
	}
	if r := copyResult(ctx, nil, time.Minute); r.kind != "" || r.err != nil {
		t.Errorf("a whole body: %+v", r)
	}
}

// pictureSource serves pictureBody for any blob.
type pictureSource struct{}

func (pictureSource) Download(_ context.Context, _ string, offset int64) (io.ReadCloser, int64, error) {
	return io.NopCloser(bytes.NewReader(pictureBody[offset:])), int64(len(pictureBody)), nil
}
func (pictureSource) Refresh(context.Context) error { return ErrNoRefresh }

// The cache's disk full in the middle of a download: the item fails and waits its backoff, with
// the disk's reason, while Blob storage stays reachable and no download is paused.
func TestDiskFullFailsTheItemNotBlobStorage(t *testing.T) {
	defer func(w func(*mediacache.Download, []byte) (int, error)) { writeChunk = w }(writeChunk)
	writeChunk = func(*mediacache.Download, []byte) (int, error) { return 0, syscall.ENOSPC }
	f, _, cache := newTestFetcher(t, Options{Source: pictureSource{}})
	m, md5hex := picture("M1")
	f.mu.Lock()
	f.enqueueLocked("M1", m, md5hex, classOnDemand)
	task := f.q.take(true)
	f.mu.Unlock()
	d, err := cache.Begin(md5hex, m.Size)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	res := f.fetchInto(t.Context(), task, d)
	f.finish(t.Context(), task, res)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blob.state == StateUnreachable || !f.pausedTo.IsZero() {
		t.Errorf("Blob storage %q, downloads paused until %v: the disk's failure taken for Blob storage's", f.blob.state, f.pausedTo)
	}
	if fl := f.failures["M1"]; fl.Kind != storage.MediaFailed || !strings.Contains(fl.Reason, "cannot write it to the media cache: no space left on device") || task.notBefore.IsZero() {
		t.Errorf("the item's failure %+v, retried at %v; want it failed with the disk's reason, waiting", fl, task.notBefore)
	}
}
