package media_test

import (
	"errors"
	"net/http"
	"strings"
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

// A device's request gives up no file it cannot use: while a prefetch's download holds its room,
// giving up the product image A would not make room for D, so A stays and the answer says why.
func TestDeviceRequestGivesUpNothingForNothing(t *testing.T) {
	s := newShop(t)
	a := item{"A", "a.jpg", "image/jpeg", content(1, 300<<10)}
	v := item{"V", "v.mp4", "video/mp4", content(2, 600<<10)}
	d := item{"D", "d.jpg", "image/jpeg", content(3, 500<<10)}
	src := newMemSource(a, v, d)
	s.products(t, map[string][]string{"P": {"A", "V", "D"}})
	s.catalog(t, a)
	f := s.fetcher(t, src, func(o *media.Options) { o.MaxBytes = 1 << 20; o.OnDemandWait = 2 * time.Second })
	waitStatus(t, f, "A cached", func(st media.Status) bool { return st.Files == 1 })
	hold := make(chan struct{})
	defer close(hold)
	src.mu.Lock()
	src.hold = hold // V's download holds its 600 KiB of room
	src.mu.Unlock()
	s.catalog(t, v)
	waitFor(t, func() bool { return strings.Contains(strings.Join(src.requests(), ","), "v.mp4") })
	s.catalog(t, d)
	waitStatus(t, f, "the prefetch finding no room for D", func(st media.Status) bool { return st.WaitingSpace == 1 })
	_, _, err := read(t, f, d.id)
	var unavailable *media.UnavailableError
	if !errors.As(err, &unavailable) || !strings.Contains(unavailable.Reason, "downloads under way") {
		t.Errorf("D on demand: %v; want it unavailable, the downloads under way named", err)
	}
	if _, ok := s.cache.Has(md5hex(a.data)); !ok {
		t.Error("A, which products refer to, was given up without making room for D")
	}
}

// An item larger than the whole cache is a failure to act on (the quota), not an item waiting
// for room: the media_quota_full alert reads waiting_space, and nothing is at the quota here.
func TestItemLargerThanTheCacheFails(t *testing.T) {
	s := newShop(t)
	small := item{"S", "s.jpg", "image/jpeg", content(1, 5000)}
	big := item{"V", "v.mp4", "video/mp4", content(2, 2<<20)}
	src := newMemSource(small, big)
	s.catalog(t, small, big)
	s.products(t, map[string][]string{"P": {"S", "V"}})
	f := s.fetcher(t, src, func(o *media.Options) { o.MaxBytes = 1 << 20 })
	st := waitStatus(t, f, "V refused", func(st media.Status) bool { return st.Files == 1 && len(st.Problems) == 1 })
	if st.WaitingSpace != 0 || st.Failed != 1 || !strings.Contains(st.Problems[0].Reason, "more than the whole cache") {
		t.Errorf("status %+v: want V failed, the quota named, nothing waiting for room", st)
	}
}

// goodAndCorrupt are two images of 5,000 bytes and their source: G's blob whole, B's of the
// same size but another MD5 (quarantined once fetched).
func goodAndCorrupt() (good, bad item, src *memSource) {
	good = item{"G", "g.jpg", "image/jpeg", content(1, 5000)}
	bad = item{"B", "b.jpg", "image/jpeg", content(2, 5000)}
	src = newMemSource(good)
	src.blobs[bad.blob] = append([]byte{bad.data[0] ^ 1}, bad.data[1:]...) // same size, other MD5
	return good, bad, src
}

// A blob that keeps failing (quarantined here) leaves no prefetch running for ever: once the
// rest is fetched the log says the prefetch is done, and no progress lines follow.
func TestPrefetchDoneWithAQuarantinedItemLeft(t *testing.T) {
	s := newShop(t)
	good, bad, src := goodAndCorrupt()
	hold := make(chan struct{})
	src.hold = hold // until the prefetch shows as running
	s.catalog(t, good, bad)
	f := s.fetcher(t, src, func(o *media.Options) { o.RetryMax = time.Hour })
	waitStatus(t, f, "the prefetch running", func(st media.Status) bool { return st.PrefetchActive })
	close(hold)
	if !s.log.WaitFor("media: prefetch done", 10*time.Second, nil) {
		st, _ := f.Status(t.Context())
		t.Fatalf("no \"prefetch done\" with only a quarantined item left; status %+v\n%s", st, s.log)
	}
	if st, _ := f.Status(t.Context()); st.PrefetchActive || st.Quarantined != 1 || st.Files != 1 {
		t.Errorf("status %+v: want the prefetch over, G cached, B quarantined", st)
	}
}

// An item tried again after a failure, failing again, is a run of its own for the status, but
// the log says "prefetch done" only for a run that stored a file or logged its progress: one
// line per retry, backed off up to an hour, would be noise.
func TestFailedRetryLogsNoPrefetchDone(t *testing.T) {
	s := newShop(t)
	good, bad, src := goodAndCorrupt()
	hold, retry := make(chan struct{}), make(chan struct{})
	src.hold = hold                                           // until the first run shows
	src.retryHold = map[string]chan struct{}{bad.blob: retry} // until B's retry shows as a run
	s.catalog(t, good, bad)
	// B is tried again 2.5-5 s after it fails: the status's second (its tick) sees the first
	// run over before that.
	f := s.fetcher(t, src, func(o *media.Options) { o.RetryMax = 5 * time.Second })
	waitStatus(t, f, "the prefetch running", func(st media.Status) bool { return st.PrefetchActive })
	close(hold)
	waitStatus(t, f, "G cached, B quarantined, the first run over", func(st media.Status) bool {
		return st.Files == 1 && st.Quarantined == 1 && !st.PrefetchActive
	})
	if !s.log.WaitFor("media: prefetch done", 10*time.Second, nil) {
		t.Fatalf("no \"prefetch done\" for the first run:\n%s", s.log)
	}
	waitStatus(t, f, "B tried again", func(st media.Status) bool { return st.PrefetchActive })
	close(retry)
	waitStatus(t, f, "B's retry over", func(st media.Status) bool { return !st.PrefetchActive && st.Quarantined == 1 })
	if n := strings.Count(s.log.String(), "media: prefetch done"); n != 1 {
		t.Errorf("%d \"prefetch done\" lines, want 1 (the first run's):\n%s", n, s.log)
	}
}

// A run whose one stored file was stored before the status's second saw the run (the rest
// failing) still ends with its "prefetch done", counting that file.
func TestPrefetchDoneCountsAFileStoredInItsFirstSecond(t *testing.T) {
	s := newShop(t)
	good, bad, src := goodAndCorrupt()
	hold := make(chan struct{})
	src.firstHold = map[string]chan struct{}{bad.blob: hold} // until G is stored and the run shows
	s.catalog(t, good, bad)
	f := s.fetcher(t, src, func(o *media.Options) { o.RetryMax = time.Hour })
	waitStatus(t, f, "G stored, the run showing", func(st media.Status) bool { return st.Files == 1 && st.PrefetchActive })
	close(hold)
	waitStatus(t, f, "B quarantined, the run over", func(st media.Status) bool { return st.Quarantined == 1 && !st.PrefetchActive })
	if !strings.Contains(s.log.String(), `msg="media: prefetch done" files=1 bytes=10000`) {
		t.Errorf("no \"prefetch done\" counting G:\n%s", s.log)
	}
}

// A run that begins on the tick after the one before ended counts only its own files: the
// first run's file is not counted again in the second's "prefetch done".
func TestBackToBackRunsCountTheirOwnFiles(t *testing.T) {
	s := newShop(t)
	first := item{"A", "a.jpg", "image/jpeg", content(1, 5000)}
	second := item{"B", "b.jpg", "image/jpeg", content(2, 7000)}
	src := newMemSource(first, second)
	hold, hold2 := make(chan struct{}), make(chan struct{})
	src.firstHold = map[string]chan struct{}{first.blob: hold, second.blob: hold2} // until each run shows
	s.catalog(t, first)
	f := s.fetcher(t, src, nil)
	waitStatus(t, f, "the first run showing", func(st media.Status) bool { return st.PrefetchActive })
	close(hold)
	waitStatus(t, f, "the first run over", func(st media.Status) bool { return st.Files == 1 && !st.PrefetchActive })
	s.catalog(t, second) // within the second after the first run ended
	waitStatus(t, f, "the second run showing", func(st media.Status) bool { return st.PrefetchActive })
	close(hold2)
	waitStatus(t, f, "the second run over", func(st media.Status) bool { return st.Files == 2 && !st.PrefetchActive })
	log := s.log.String()
	if !strings.Contains(log, `msg="media: prefetch done" files=1 bytes=5000`) || !strings.Contains(log, `msg="media: prefetch done" files=1 bytes=7000`) {
		t.Errorf("want one \"prefetch done\" of each run, with its own file:\n%s", log)
	}
}
