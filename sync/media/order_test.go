package media_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/tools/testenv"
)

// memSource is a Source over blobs in memory that records what was asked, and can cut a
// download after some bytes (a WAN cut) or hold downloads until released.
type memSource struct {
	mu      sync.Mutex // protects the fields below
	blobs   map[string][]byte
	asked   []string // blob@offset, in order
	cutOnce map[string]int
	stallAt map[string]int // blob → bytes after which its body blocks until the download stops
	hold    chan struct{}  // when set, Download waits for it
	// retryHold: a Download of a blob asked for before waits for the blob's channel here.
	retryHold map[string]chan struct{}
	// firstHold: a blob's first Download waits for the blob's channel here.
	firstHold map[string]chan struct{}
	// eofWithData makes a body return io.EOF with its last bytes, as net/http's bodies of a
	// known length do, instead of on the read after them.
	eofWithData bool
	sent        map[string]int64 // bytes read from each blob's bodies
	badRange    map[string]bool  // blobs whose every answer is another part than the one asked
}

func newMemSource(items ...item) *memSource {
	m := &memSource{blobs: map[string][]byte{}, cutOnce: map[string]int{}, stallAt: map[string]int{}, sent: map[string]int64{}}
	for _, it := range items {
		m.blobs[it.blob] = it.data
	}
	return m
}

func (m *memSource) Download(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	m.mu.Lock()
	hold := m.hold
	asked := false
	for _, a := range m.asked {
		asked = asked || strings.HasPrefix(a, name+"@")
	}
	if h := m.retryHold[name]; asked && h != nil {
		hold = h
	}
	if h := m.firstHold[name]; !asked && h != nil {
		hold = h
	}
	m.asked = append(m.asked, name+"@"+itoa(offset))
	data, ok := m.blobs[name]
	cut, cutting := m.cutOnce[name]
	delete(m.cutOnce, name)
	stall, stalling := m.stallAt[name]
	bad := m.badRange[name]
	m.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	if !ok {
		return nil, 0, &media.BlobError{Kind: media.KindNotFound, Status: 404, Err: errors.New("BlobNotFound")}
	}
	if bad {
		return nil, 0, &media.BlobError{Kind: media.KindRange, Status: 206, Err: errors.New("another part than the one asked")}
	}
	r := bytes.NewReader(data[offset:])
	body := io.Reader(r)
	if m.eofWithData {
		body = &eofReader{r: r}
	}
	if cutting {
		body = io.MultiReader(io.LimitReader(body, int64(cut)), errReader{})
	}
	if stalling {
		body = io.MultiReader(io.LimitReader(body, int64(stall)), ctxReader{ctx})
	}
	return io.NopCloser(&countingReader{r: body, m: m, name: name}), int64(len(data)), nil
}

// countingReader counts what is read from a blob in its memSource.
type countingReader struct {
	r    io.Reader
	m    *memSource
	name string
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.m.mu.Lock()
	c.m.sent[c.name] += int64(n)
	c.m.mu.Unlock()
	return n, err
}

// read says how many bytes of each blob named have been read so far, in all.
func (m *memSource) read(names ...string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, name := range names {
		n += m.sent[name]
	}
	return n
}

func (m *memSource) Refresh(context.Context) error { return media.ErrNoRefresh }

func (m *memSource) requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.asked...)
}

// eofReader returns io.EOF together with the last bytes.
type eofReader struct{ r *bytes.Reader }

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == nil && e.r.Len() == 0 {
		err = io.EOF
	}
	return n, err
}

type errReader struct{}

// ctxReader blocks until its context ends.
type ctxReader struct{ ctx context.Context }

func (c ctxReader) Read([]byte) (int, error) {
	<-c.ctx.Done()
	return 0, c.ctx.Err()
}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// The prefetch goes images first, then documents, each in catalog order, then videos, the
// largest first; what a device asks for goes before all of them.
func TestPrefetchOrder(t *testing.T) {
	items := []item{
		{"V1", "v1.mp4", "video/mp4", content(21, 1000)},
		{"D1", "d1.pdf", "application/pdf", content(22, 1000)},
		{"I1", "i1.jpg", "image/jpeg", content(23, 1000)},
		{"V2", "v2.mp4", "video/mp4", content(24, 1000)},
		{"I2", "i2.png", "image/png", content(25, 1000)},
		{"D2", "d2.pdf", "application/pdf", content(26, 1000)},
		{"V3", "v3.mp4", "video/mp4", content(27, 500)},
	}
	src := newMemSource(items...)
	src.hold = make(chan struct{})
	s := newShop(t)
	s.catalog(t, items...)
	f := s.fetcher(t, src, func(o *media.Options) { o.Parallel = 1 })
	// The first download (I1) is held; meanwhile a device asks for V2.
	waitFor(t, func() bool { return len(src.requests()) == 1 })
	got := make(chan error, 1)
	go func() { _, _, err := read(t, f, "V2"); got <- err }()
	waitFor(t, func() bool { return len(src.requests()) == 2 }) // its own lane
	close(src.hold)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	waitStatus(t, f, "every item", func(st media.Status) bool { return st.Files == 7 })
	want := []string{"i1.jpg@0", "v2.mp4@0", "i2.png@0", "d1.pdf@0", "d2.pdf@0", "v1.mp4@0", "v3.mp4@0"}
	if r := src.requests(); !equal(r, want) {
		t.Errorf("requests %v, want %v", r, want)
	}
}

// A download cut by the WAN resumes where it stopped, with a ranged read.
func TestInterruptedDownloadResumes(t *testing.T) {
	it := item{"V1", "v1.mp4", "video/mp4", content(31, 3<<20)}
	src := newMemSource(it)
	src.cutOnce[it.blob] = 1 << 20
	s := newShop(t)
	s.catalog(t, it)
	f := s.fetcher(t, src, func(o *media.Options) { o.RetryMax = time.Second })
	waitStatus(t, f, "the item", func(st media.Status) bool { return st.Files == 1 })
	if r := src.requests(); !equal(r, []string{"v1.mp4@0", "v1.mp4@1048576"}) {
		t.Errorf("requests %v, want the rest asked from byte 1048576", r)
	}
	if got, _, err := read(t, f, it.id); err != nil || !bytes.Equal(got, it.data) {
		t.Errorf("resumed file: %v", err)
	}
}

// A download whose item the catalog deletes stops at once: its partial file goes, it is no
// longer pending, and Blob storage is not taken for unreachable.
func TestDeletedItemStopsItsDownload(t *testing.T) {
	v1 := item{"V1", "v1.mp4", "video/mp4", content(41, 4<<20)}
	i1 := item{"I1", "i1.jpg", "image/jpeg", content(42, 1000)}
	src := newMemSource(v1, i1)
	src.stallAt[v1.blob] = 1 << 20
	s := newShop(t)
	s.catalog(t, v1)
	f := s.fetcher(t, src, func(o *media.Options) { o.Parallel = 1 })
	partial := func() (int64, bool) {
		p, err := s.cache.Partials()
		if err != nil {
			t.Fatal(err)
		}
		n, ok := p[md5hex(v1.data)]
		return n, ok
	}
	waitFor(t, func() bool { n, _ := partial(); return n == 1<<20 })
	s.deleteMedia(t, v1.id)
	s.catalog(t, i1) // the next item comes on the same lane
	st := waitStatus(t, f, "the deleted item's download to stop", func(st media.Status) bool { return st.Files == 1 && idle(st) })
	if n, ok := partial(); ok {
		t.Errorf("the deleted item's partial file is still there, %d bytes", n)
	}
	if _, _, err := read(t, f, v1.id); !errors.Is(err, media.ErrUnknown) {
		t.Errorf("the deleted item: %v, want ErrUnknown", err)
	}
	if st.LastError != "" || strings.Contains(s.log.String(), "cannot be reached") {
		t.Errorf("stopping the download was taken for a failure: last error %q\n%s", st.LastError, s.log)
	}
}

// A manifest whose content_type changes and not its content is served with the new type at once
// (media.md: Content-Type from the manifest), without fetching the file again.
func TestNewContentTypeOfTheSameContent(t *testing.T) {
	i1 := item{"I1", "i1.jpg", "image/jpeg", content(43, 1000)}
	src := newMemSource(i1)
	s := newShop(t)
	s.catalog(t, i1)
	f := s.fetcher(t, src, nil)
	waitStatus(t, f, "the prefetch", func(st media.Status) bool { return st.Files == 1 && idle(st) })
	if _, file, err := read(t, f, i1.id); err != nil || file.ContentType != "image/jpeg" {
		t.Fatalf("before the change: %+v, %v", file, err)
	}
	i1.contentType = "image/webp"
	s.catalog(t, i1)
	var file *media.File
	waitFor(t, func() bool {
		var err error
		if _, file, err = read(t, f, i1.id); err != nil {
			t.Fatal(err)
		}
		return file.ContentType == "image/webp"
	})
	if asked := src.requests(); len(asked) != 1 {
		t.Errorf("blob requests %q: the file was fetched again for a new type", asked)
	}
}

// The bandwidth cap holds for small files too, whose whole body comes in the read that ends it:
// 20 files of 24 KiB at 160 KiB/s (a burst of 32 KiB) cannot arrive in less than 2.8 s.
func TestBandwidthCapHoldsForSmallFiles(t *testing.T) {
	var items []item
	for i := range 20 {
		id := fmt.Sprintf("I%02d", i)
		items = append(items, item{id, strings.ToLower(id) + ".jpg", "image/jpeg", content(uint64(60+i), 24<<10)})
	}
	src := newMemSource(items...)
	src.eofWithData = true
	s := newShop(t)
	s.catalog(t, items...)
	const limit = 160 << 10
	start := time.Now()
	f := s.fetcher(t, src, func(o *media.Options) { o.Bandwidth = limit })
	st := waitStatus(t, f, "every item", func(st media.Status) bool { return st.Files == int64(len(items)) })
	took := time.Since(start)
	floor := time.Duration(float64(st.Bytes-32<<10) / limit * float64(time.Second))
	if took < floor {
		t.Errorf("%d bytes arrived in %v under a cap of %d bytes/s: at least %v expected", st.Bytes, took, limit, floor)
	}
}

// A download that waits for the bandwidth cap longer than media.stall_timeout is not stalled
// (media.md): two lanes share 32 KiB/s in chunks of 32 KiB, so each waits about 2 s for its
// next chunk, four times the stall timeout; every blob is read once, and Blob storage is never
// shown unreachable.
func TestWaitingForTheCapIsNoStall(t *testing.T) {
	a := item{"V1", "v1.mp4", "video/mp4", content(91, 96<<10)}
	b := item{"V2", "v2.mp4", "video/mp4", content(92, 96<<10)}
	src := newMemSource(a, b)
	s := newShop(t)
	s.catalog(t, a, b)
	f := s.fetcher(t, src, func(o *media.Options) { o.Bandwidth = 32 << 10; o.StallTimeout = 500 * time.Millisecond })
	var states []string
	waitStatus(t, f, "both videos", func(st media.Status) bool {
		if st.State == "unreachable" && !slices.Contains(states, st.State+": "+st.LastError) {
			states = append(states, st.State+": "+st.LastError)
		}
		return st.Files == 2
	})
	if asked := src.requests(); len(asked) != 2 {
		t.Errorf("blob requests %q, want each blob once", asked)
	}
	if len(states) > 0 || strings.Contains(s.log.String(), "stalled") {
		t.Errorf("Blob storage shown %q while downloads waited for the cap\n%s", states, s.log)
	}
}

// Under the bandwidth cap, a download a device waits for gets the cap's bytes before the
// prefetch: the prefetch's downloads running beside it take no more than what they had read or
// reserved when it began, about a chunk each (32 KiB at this cap), where sharing the cap evenly
// would give them twice what the device's item gets.
func TestDeviceDownloadGoesFirstUnderTheCap(t *testing.T) {
	v1 := item{"V1", "v1.mp4", "video/mp4", content(81, 4<<20)}
	v2 := item{"V2", "v2.mp4", "video/mp4", content(82, 4<<20)}
	asked := item{"V3", "v3.mp4", "video/mp4", content(83, 320<<10)}
	src := newMemSource(v1, v2, asked)
	s := newShop(t)
	s.catalog(t, v1, v2, asked)
	f := s.fetcher(t, src, func(o *media.Options) { o.Bandwidth = 320 << 10 })        // two lanes, the largest first
	waitFor(t, func() bool { return src.read(v1.blob) > 0 && src.read(v2.blob) > 0 }) // both lanes on the large videos
	before := src.read(v1.blob, v2.blob)
	got, _, err := read(t, f, asked.id)
	if err != nil || !bytes.Equal(got, asked.data) {
		t.Fatalf("the item a device asked for: %v", err)
	}
	if during := src.read(v1.blob, v2.blob) - before; during > 192<<10 {
		t.Errorf("the prefetch read %d KiB while a device waited for %d KiB; want at most 192 KiB", during>>10, len(asked.data)>>10)
	}
}

// A device that waits for an item whose content a prefetch download is already fetching (the
// same image under another id) puts that download first: the other prefetch pauses.
func TestDeviceWaitingForSharedContentGoesFirst(t *testing.T) {
	shared := content(84, 640<<10)
	v1 := item{"V1", "v1.mp4", "video/mp4", shared}
	v2 := item{"V2", "v2.mp4", "video/mp4", content(85, 4<<20)}
	asked := item{"V3", "v3.mp4", "video/mp4", shared}
	src := newMemSource(v1, v2, asked)
	s := newShop(t)
	s.catalog(t, v1, v2, asked)
	f := s.fetcher(t, src, func(o *media.Options) { o.Bandwidth = 320 << 10 })
	waitFor(t, func() bool { return src.read(v1.blob) > 0 && src.read(v2.blob) > 0 }) // both lanes busy
	before := src.read(v2.blob)
	got, _, err := read(t, f, asked.id)
	if err != nil || !bytes.Equal(got, shared) {
		t.Fatalf("the item a device asked for: %v", err)
	}
	if during := src.read(v2.blob) - before; during > 128<<10 {
		t.Errorf("the other prefetch read %d KiB while a device waited for content being fetched; want at most 128 KiB", during>>10)
	}
}

// Large files wait for their time window; a device asking for one gets it at once.
func TestLargeFilesWaitForTheirWindow(t *testing.T) {
	small := item{"I1", "i1.jpg", "image/jpeg", content(41, 1000)}
	large := item{"V1", "v1.mp4", "video/mp4", content(42, 2<<20)}
	large2 := item{"V2", "v2.mp4", "video/mp4", content(43, 2<<20)}
	src := newMemSource(small, large, large2)
	s := newShop(t)
	s.catalog(t, small, large, large2)
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.Local)
	f := s.fetcher(t, src, func(o *media.Options) {
		o.LargeFile = 1 << 20
		o.Window = media.Window{Start: 21 * 60, End: 7 * 60, Set: true} // 21:00-07:00
		o.Now = func() time.Time { return now }
	})
	// The file stored can show in Pending for a moment after it shows in Files: the record comes
	// first, then its task ends.
	waitStatus(t, f, "the small file, the large ones waiting", func(st media.Status) bool {
		return st.Files == 1 && st.WaitingWindow == 2 && st.Pending == 2
	})
	if got, _, err := read(t, f, large.id); err != nil || !bytes.Equal(got, large.data) {
		t.Fatalf("asked for outside the window: %v", err)
	}
	if st, _ := f.Status(context.Background()); st.WaitingWindow != 1 {
		t.Errorf("after the request: %+v", st)
	}
	if _, _, err := read(t, f, small.id); err != nil {
		t.Fatal(err)
	}
	// The large file was fetched for the request, the small one was in the cache already.
	if hits, misses := f.Hits(); hits != 1 || misses != 1 {
		t.Errorf("%d hits, %d misses; want 1, 1", hits, misses)
	}
}

func TestWindow(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 12, 2, h, m, 0, 0, time.UTC) }
	night := media.Window{Start: 21 * 60, End: 7 * 60, Set: true}
	day := media.Window{Start: 9 * 60, End: 17 * 60, Set: true}
	for _, tc := range []struct {
		w    media.Window
		t    time.Time
		open bool
		next time.Time
	}{
		{media.Window{}, at(12, 0), true, at(12, 0)},
		{night, at(22, 0), true, at(22, 0)},
		{night, at(6, 59), true, at(6, 59)},
		{night, at(7, 0), false, at(21, 0)},
		{night, at(12, 0), false, at(21, 0)},
		{day, at(8, 0), false, at(9, 0)},
		{day, at(17, 0), false, at(9, 0).AddDate(0, 0, 1)},
		{day, at(9, 0), true, at(9, 0)},
	} {
		if got := tc.w.Open(tc.t); got != tc.open {
			t.Errorf("%+v.Open(%s) = %v", tc.w, tc.t.Format("15:04"), got)
		}
		if got := tc.w.NextOpen(tc.t); !got.Equal(tc.next) {
			t.Errorf("%+v.NextOpen(%s) = %s, want %s", tc.w, tc.t.Format("15:04"), got, tc.next)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two items with the same content (one image under two names) are fetched once: the second
// waits for the first's file instead of downloading it again beside it.
func TestSameContentIsFetchedOnce(t *testing.T) {
	data := content(51, 2<<20)
	a := item{"A", "a.jpg", "image/jpeg", data}
	b := item{"B", "b.jpg", "image/jpeg", data}
	src := newMemSource(a, b)
	src.hold = make(chan struct{})
	s := newShop(t)
	s.catalog(t, a, b)
	f := s.fetcher(t, src, func(o *media.Options) { o.Parallel = 2 })
	waitFor(t, func() bool { return len(src.requests()) >= 1 })
	close(src.hold)
	st := waitStatus(t, f, "both items", func(st media.Status) bool { return idle(st) && st.Pending == 0 })
	for _, it := range []item{a, b} {
		if got, _, err := read(t, f, it.id); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %v", it.id, err)
		}
	}
	if r := src.requests(); len(r) != 1 || st.Failed != 0 || len(st.Problems) != 0 {
		t.Errorf("requests %v, %d failed %+v; want one download and no failure", r, st.Failed, st.Problems)
	}
}

// A quarantined item whose manifest the shop's platform fixes (a new MD5, a new blob) is fetched
// at once, not after the old version's backoff, and a device asking meanwhile is not told the
// old version's reason. The clock stands still: the old version's backoff never ends.
func TestNewVersionOfAQuarantinedItemIsFetchedAtOnce(t *testing.T) {
	s := newShop(t)
	bad := item{"M5", "img/M5.jpg", "image/jpeg", content(5, 5000)}
	good := item{"M5", "img/M5b.jpg", "image/jpeg", content(6, 6000)}
	src := newMemSource(good)
	src.blobs[bad.blob] = append([]byte{bad.data[0] ^ 1}, bad.data[1:]...) // same size, other MD5
	held := make(chan struct{})
	src.firstHold = map[string]chan struct{}{good.blob: held}
	s.catalog(t, bad)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	f := s.fetcher(t, src, func(o *media.Options) { o.Now = func() time.Time { return now } })
	waitStatus(t, f, "the quarantine", func(st media.Status) bool { return st.Quarantined == 1 })
	s.catalog(t, good)
	// Until the new version is stored (its download held here), the status shows no problem of
	// the old one: the shop's platform fixed it.
	waitStatus(t, f, "the old version's quarantine gone from the status", func(st media.Status) bool {
		return st.Quarantined == 0 && len(st.Problems) == 0
	})
	close(held)
	waitStatus(t, f, "the new version", func(st media.Status) bool { return st.Files == 1 })
	got, file, err := read(t, f, "M5")
	if err != nil || !bytes.Equal(got, good.data) || file.MD5 != md5hex(good.data) {
		t.Fatalf("after the fix: %d bytes, MD5 %s, %v; want the new version", len(got), file.MD5, err)
	}
}

// renewingSource refuses its first download (a SAS that expired), takes the renewed one, and
// holds the download after the renewal until released.
type renewingSource struct {
	*memSource
	mu        sync.Mutex
	refused   bool
	renewed   bool
	retrying  chan struct{} // closed when the download after the renewal starts
	releaseIt chan struct{}
}

func (r *renewingSource) Download(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	r.mu.Lock()
	refuse, renewed := !r.refused, r.renewed
	r.refused = true
	r.mu.Unlock()
	if refuse {
		return nil, 0, &media.BlobError{Kind: media.KindAuth, Status: 403, Err: errors.New("AuthenticationFailed")}
	}
	if renewed {
		close(r.retrying)
		<-r.releaseIt
	}
	return r.memSource.Download(ctx, name, offset)
}

func (r *renewingSource) Refresh(context.Context) error {
	r.mu.Lock()
	r.renewed = true
	r.mu.Unlock()
	return nil
}

// A SAS refused once and renewed at once is no state of "unauthorized": that state says that
// reading the container URL again did not help (openapi.yaml), and the renewed one is in use.
func TestRenewedSASIsNotUnauthorized(t *testing.T) {
	s := newShop(t)
	it := item{"M1", "img/M1.jpg", "image/jpeg", content(1, 5000)}
	src := &renewingSource{memSource: newMemSource(it), retrying: make(chan struct{}), releaseIt: make(chan struct{})}
	s.catalog(t, it)
	f := s.fetcher(t, src, nil)
	<-src.retrying
	st, err := f.Status(context.Background())
	close(src.releaseIt)
	if err != nil || st.State == media.StateUnauthorized {
		t.Errorf("while the renewed SAS is tried: state %q (%s), %v", st.State, st.LastError, err)
	}
	waitStatus(t, f, "the file", func(st media.Status) bool { return st.Files == 1 && st.State == media.StateOK })
}

// The large files waiting for their window count in the window of the prefetch: the fetcher
// does not read the whole catalog's large files into memory while the window is closed, the
// kinds after theirs go on meanwhile, and everything comes once the window opens, the large
// files a device took out of the wait included.
func TestLargeFilesWaitingForTheirWindowAreBounded(t *testing.T) {
	const window, large = 4, 40
	// A small image first; then large images and videos, which hold back the document after
	// them (the kind after images) in a fetcher that waits for every image before documents;
	// then a small video, which waits behind the large videos of its kind.
	items := []item{{"I1", "i1.jpg", "image/jpeg", content(41, 1000)}}
	for i := range large {
		class := []string{"video/mp4", "image/jpeg"}[i%2]
		items = append(items, item{fmt.Sprintf("L%02d", i), fmt.Sprintf("l%02d", i), class, content(uint64(300+i), 2<<20)})
	}
	items = append(items, item{"D1", "d1.pdf", "application/pdf", content(42, 1000)}, item{"V1", "v1.mp4", "video/mp4", content(43, 1000)})
	src := newMemSource(items...)
	s := newShop(t)
	s.catalog(t, items...)
	var mu sync.Mutex
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.Local)
	f := s.fetcher(t, src, func(o *media.Options) {
		o.Parallel = 1
		o.QueueWindow = window
		o.LargeFile = 1 << 20
		o.Window = media.Window{Start: 21 * 60, End: 7 * 60, Set: true} // 21:00-07:00
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	waitStatus(t, f, "the small image and the document, the large files waiting", func(st media.Status) bool {
		return st.Files == 2 && st.WaitingWindow >= window/2 && st.Pending == large+1
	})
	// A device's request takes two large files out of the wait.
	for _, it := range items[1:3] {
		if got, _, err := read(t, f, it.id); err != nil || !bytes.Equal(got, it.data) {
			t.Fatalf("%s asked for outside the window: %v", it.id, err)
		}
	}
	if n := media.QueuedTasks(f); n > 2*window {
		t.Errorf("%d tasks in memory while the window is closed, for a window of %d for each of two kinds", n, window)
	}
	if st, _ := f.Status(context.Background()); st.WaitingWindow > 2*window || st.Pending != large-1 {
		t.Errorf("%d waiting for the window, %d pending; want at most %d, %d", st.WaitingWindow, st.Pending, 2*window, large-1)
	}
	mu.Lock()
	now = now.Add(12 * time.Hour) // 21:00
	mu.Unlock()
	media.Wake(f) // what a timer set for the window's opening would do
	waitStatus(t, f, "every large file once the window opened", func(st media.Status) bool {
		return st.Files == int64(len(items)) && st.Pending == 0
	})
}

// A blob whose answers are always another part than the one asked, from the start too, is a
// failed item, counted and listed as such, as media.md and the status's problem kinds say.
func TestWrongPartAgainIsAFailure(t *testing.T) {
	it := item{"D1", "d1.pdf", "application/pdf", content(51, 5000)}
	src := newMemSource(it)
	src.badRange = map[string]bool{it.blob: true}
	s := newShop(t)
	s.catalog(t, it)
	f := s.fetcher(t, src, nil)
	st := waitStatus(t, f, "the item failed", func(st media.Status) bool { return len(st.Problems) == 1 })
	if st.Failed != 1 || st.Quarantined != 0 || st.Problems[0].Kind != storage.MediaFailed || st.State == media.StateUnreachable {
		t.Errorf("failed %d, quarantined %d, state %q, problem %+v; want one failed item", st.Failed, st.Quarantined, st.State, st.Problems[0])
	}
}

// A large file being prefetched when its window closes stops there, keeping what it received;
// it goes on from there when the window opens again (media.md): the prefetch never runs into
// the shop's opening hours.
func TestLargeDownloadStopsWhenItsWindowCloses(t *testing.T) {
	video := item{"V1", "v1.mp4", "video/mp4", content(44, 1<<20)}
	var logs testenv.Buffer
	f, src, at := windowShop(t, video, 512<<10, func(o *media.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	// The fifth read has begun: the fourth is written and its check of the window done.
	waitFor(t, func() bool { return src.reads.Load() == 5 })

	at(7, 0)
	src.permits <- struct{}{} // the next read comes after the window closed
	st := waitStatus(t, f, "the download stopped, waiting for the window", func(st media.Status) bool {
		return st.WaitingWindow == 1 && st.Pending == 1
	})
	if st.Files != 0 {
		t.Fatalf("a file stored from a download stopped half-way: %+v", st)
	}
	if got := src.read(video.blob); got != 320<<10 {
		t.Errorf("%d KiB read; want the 320 KiB received before the stop", got>>10)
	}
	const stopped = "media: the large-file window closed" // media.md names the line
	if !logs.WaitFor(stopped, 10*time.Second, nil) {
		t.Errorf("the log lacks %q:\n%s", stopped, logs.String())
	}

	at(21, 0)
	close(src.permits) // no more gating
	media.Wake(f)
	waitStatus(t, f, "the file stored once the window opened", func(st media.Status) bool {
		return st.Files == 1 && st.Pending == 0
	})
	if got, _, err := read(t, f, video.id); err != nil || !bytes.Equal(got, video.data) {
		t.Fatalf("the file: %v", err)
	}
	if reqs := src.requests(); !slices.Equal(reqs, []string{"v1.mp4@0", "v1.mp4@" + itoa(320<<10)}) {
		t.Errorf("requests %v; want the start, then the rest from where it stopped", reqs)
	}
	if got := src.read(video.blob); got != int64(len(video.data)) {
		t.Errorf("%d KiB read in all for a file of %d KiB", got>>10, len(video.data)>>10)
	}
}

// A device that asks for a large file while its prefetch runs makes it its own: the window's
// closing no longer stops it, even once the device gave up waiting (it comes back for it).
func TestLargeDownloadADeviceAskedForGoesOnPastTheWindow(t *testing.T) {
	video := item{"V1", "v1.mp4", "video/mp4", content(45, 1<<20)}
	f, src, at := windowShop(t, video, 512<<10, func(o *media.Options) {
		o.OnDemandWait = 100 * time.Millisecond // the device gives up while the prefetch is held
	})
	waitFor(t, func() bool { return src.reads.Load() == 5 })
	var unavailable *media.UnavailableError
	if _, err := f.Open(context.Background(), video.id); !errors.As(err, &unavailable) {
		t.Fatalf("asked for while held half-way: %v, want it not there yet", err)
	}

	at(7, 0)
	close(src.permits)
	waitStatus(t, f, "the file stored although the window closed", func(st media.Status) bool {
		return st.Files == 1 && st.Pending == 0
	})
	if reqs := src.requests(); !slices.Equal(reqs, []string{"v1.mp4@0"}) {
		t.Errorf("requests %v; want the one download, never stopped", reqs)
	}
}

// A large file whose last bytes came just as the window closed is stored, not left whole on the
// disk waiting for the window to open again.
func TestLargeDownloadCompleteAsTheWindowClosesIsStored(t *testing.T) {
	video := item{"V1", "v1.mp4", "video/mp4", content(46, 320<<10)} // five reads
	f, src, at := windowShop(t, video, 256<<10, nil)
	waitFor(t, func() bool { return src.reads.Load() == 5 })
	at(7, 0)
	close(src.permits) // the last bytes, then the end of the body
	waitStatus(t, f, "the file stored", func(st media.Status) bool { return st.Files == 1 && st.Pending == 0 })
	if reqs := src.requests(); !slices.Equal(reqs, []string{"v1.mp4@0"}) {
		t.Errorf("requests %v; want the one download", reqs)
	}
}

// windowShop is a shop whose one item, video, is prefetched from a gatedSource under a large-file
// window of 21:00-07:00 (files of largeFile bytes or more), by a clock at 06:59 that at moves;
// the source has let four reads through.
func windowShop(t *testing.T, video item, largeFile int64, mod func(*media.Options)) (*media.Fetcher, *gatedSource, func(h, m int)) {
	t.Helper()
	src := &gatedSource{memSource: newMemSource(video), permits: make(chan struct{}, 8)}
	s := newShop(t)
	s.catalog(t, video)
	var now atomic.Int64
	at := func(h, m int) { now.Store(time.Date(2026, 12, 2, h, m, 0, 0, time.Local).UnixNano()) }
	at(6, 59)
	f := s.fetcher(t, src, func(o *media.Options) {
		o.LargeFile = largeFile
		o.Window = media.Window{Start: 21 * 60, End: 7 * 60, Set: true}
		o.Now = func() time.Time { return time.Unix(0, now.Load()) }
		if mod != nil {
			mod(o)
		}
	})
	for range 4 {
		src.permits <- struct{}{}
	}
	return f, src, at
}

// gatedSource hands its blobs out 64 KiB a read, one read per permit, counting the reads begun.
type gatedSource struct {
	*memSource
	permits chan struct{}
	reads   atomic.Int64
}

func (g *gatedSource) Download(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	body, size, err := g.memSource.Download(ctx, name, offset)
	if err != nil {
		return nil, 0, err
	}
	return &gatedBody{ctx: ctx, body: body, permits: g.permits, reads: &g.reads}, size, nil
}

type gatedBody struct {
	ctx     context.Context
	body    io.ReadCloser
	permits <-chan struct{}
	reads   *atomic.Int64
}

func (b *gatedBody) Read(p []byte) (int, error) {
	b.reads.Add(1)
	select {
	case <-b.permits:
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	}
	return b.body.Read(p[:min(len(p), 64<<10)])
}

func (b *gatedBody) Close() error { return b.body.Close() }

// A Blob endpoint that takes the connection and never answers (a proxy whose far side hangs)
// is a stall like a body that stops: media.stall_timeout cuts the request, the state is
// unreachable with the reason, and the download is tried again later (media.md).
func TestSilentBlobEndpointIsAStall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var requests atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			requests.Add(1)
			go func() { io.Copy(io.Discard, c); c.Close() }() // reads the request, answers nothing
		}
	}()
	s := newShop(t)
	s.catalog(t, item{id: "a", blob: "a.jpg", contentType: "image/jpeg", data: content(1, 1000)})
	src := media.NewContainer(media.Locator{URL: "http://" + ln.Addr().String() + "/media?sv=2021-08-06&se=2099-01-01&sp=r&sig=abc"}, &http.Client{})
	src.SetAnswerTimeout(300 * time.Millisecond) // media.stall_timeout, as the daemon sets it
	f := s.fetcher(t, src, func(o *media.Options) { o.StallTimeout = 300 * time.Millisecond })
	st := waitStatus(t, f, "the silent endpoint taken for unreachable", func(st media.Status) bool { return st.State == media.StateUnreachable })
	if !strings.Contains(st.LastError, "no answer within media.stall_timeout") {
		t.Errorf("the status's last error %q does not say the download stalled", st.LastError)
	}
	waitStatus(t, f, "the download tried again", func(media.Status) bool { return requests.Load() >= 2 })
}

// The answer timeout bounds Blob storage's answer only: reading the container URL from a cloud
// slower than media.stall_timeout (but within cloud.request_timeout) is no stall of Blob storage.
func TestSlowCloudConfigurationIsNoStall(t *testing.T) {
	store := startStore(t, testenv.AzuriteOptions{}, &http.Client{})
	a := item{id: "a", blob: "a.jpg", contentType: "image/jpeg", data: content(3, 2000)}
	store.put(t, a.blob, a.data)
	containerURL := store.sasURL(t, time.Hour)
	src := media.NewContainer(media.Locator{Remote: func(ctx context.Context) (string, error) {
		select { // the cloud's answer, slower than the stall timeout
		case <-time.After(600 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return containerURL, nil
	}}, &http.Client{})
	src.SetAnswerTimeout(200 * time.Millisecond)
	s := newShop(t)
	s.catalog(t, a)
	f := s.fetcher(t, src, func(o *media.Options) { o.StallTimeout = 200 * time.Millisecond })
	st := waitStatus(t, f, "the item fetched", func(st media.Status) bool { return st.Files == 1 || st.State == media.StateUnreachable })
	if st.Files != 1 || st.State != media.StateOK {
		t.Fatalf("status %+v; want the item fetched, Blob storage never taken for unreachable", st)
	}
}
