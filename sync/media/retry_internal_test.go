package media

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
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
