// Package media fetches the shop's media (images, videos, documents) from its Azure Blob
// container into the content-addressed cache under data_dir, and finds them for serving.
//
// The media collection of the catalog says what should be cached: every live manifest (blob
// name, size, MD5, content type). The Fetcher compares it with the cache's index, fetches what is
// missing or changed, and removes what the catalog deleted. A download grows a partial file that
// a restart resumes with a ranged read; it is checked against the manifest's size and MD5,
// synced and renamed into place, and only then recorded, so nothing unverified is ever served and
// nothing verified is fetched twice. A blob that does not match is quarantined with the reason
// and retried with backoff. Work goes in priority order: what a device is waiting for, then
// images, documents and videos; downloads share one bandwidth cap, large files wait for their
// time window, and the cache stays under its quota by giving up first the files no product
// refers to, then the least recently served.
package media

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// DefaultPollInterval is how often, with nothing else to wake it, the fetcher looks for work.
// Zero Options take the configuration's defaults (internal/config) otherwise.
const DefaultPollInterval = time.Second

// Log attribute keys.
const (
	keyID       = "media_id"
	keyBlob     = "blob"
	keyErr      = "err"
	keyFiles    = "files"
	keyOf       = "of"
	keyBytes    = "bytes"
	keyTotal    = "total_bytes"
	keyRate     = "bytes_per_second"
	keyETA      = "time_left"
	keyRetryIn  = "retry_in"
	keyKind     = "kind"
	keyAttempts = "attempts"
)

// Options configure a Fetcher.
type Options struct {
	DB    *storage.DB
	Cache *mediacache.Cache
	// Source reads the blobs; nil when fetching is off (media.enabled false): the Fetcher then
	// only serves what is cached and removes what the catalog deleted.
	Source Source
	// Describe says where the blobs come from, for status: "cloud", "container_url", …
	Describe string

	Prefetch     bool
	MaxBytes     int64 // the quota; 0: none
	Bandwidth    int64 // bytes per second over all downloads; 0: no cap
	Parallel     int
	LargeFile    int64
	Window       Window
	OnDemandWait time.Duration
	StallTimeout time.Duration
	RetryMax     time.Duration
	// ProgressInterval is how often a prefetch in progress is logged.
	ProgressInterval time.Duration
	// PollInterval is how often the catalog is checked for media changes.
	PollInterval time.Duration
	// QueueWindow is how many ready downloads of each kind (images, documents, videos) are
	// held in memory; the rest wait in the catalog. 0: DefaultQueueWindow.
	QueueWindow int

	Logger *slog.Logger
	Now    func() time.Time
}

// Fetcher keeps the media cache in step with the catalog. Run does the work; Open and Status
// are safe for concurrent use with it.
type Fetcher struct {
	o       Options
	log     *slog.Logger
	now     func() time.Time
	limiter *rate.Limiter // nil: no cap
	burst   int

	// Downloads a device waits for, running under the cap; while there is any, devicesDone is
	// open and the prefetch's downloads wait for it to close (yieldToDevices). wanted counts the
	// items devices wait for by content, whichever task downloads it.
	deviceMu    sync.Mutex
	deviceRuns  int
	devicesDone chan struct{}
	wanted      map[[md5.Size]byte]int

	spaceMu  sync.Mutex // serialises making room in the cache
	recordMu sync.Mutex // orders recording a fetched file with forgetting deleted items and evicting files

	pendMu  sync.Mutex // protects the field below
	pending []*task    // verified files waiting to be recorded together (see stored)

	commitSlots chan struct{}  // bounds the downloads being checked, synced and recorded
	commits     sync.WaitGroup // those under way

	mu        sync.Mutex // protects the fields below
	q         *queue
	back      *backlog
	changed   chan struct{}              // closed and replaced whenever the queue changes
	demanded  chan struct{}              // the same, only when a device waits for a ready task
	waiters   map[string][]chan error    // on-demand requests waiting for a task, by id
	waitedFor map[string][md5.Size]byte  // the content the waiters of each id wait for
	fetching  map[[16]byte]chan struct{} // content being downloaded, closed when its download ends
	reserved  int64                      // bytes of downloads in progress, counted against the quota
	usedHint  int64                      // an upper bound of the cache's bytes: the last reading plus what was recorded since; -1 unknown
	recorded  int64                      // bytes of the files recorded since start
	failures  map[string]storage.MediaFailure
	pausedTo  time.Time        // Blob storage unreachable: no download starts before
	blobBack  *backoff.Backoff // delays while Blob storage is unreachable
	blob      blobState
	prog      progress
	lastSeq   int64
	started   bool             // the first pass over the catalog is done: workers may start
	unadopted map[string]int64 // verified files on disk the index does not know, by MD5
	// candidates are the MD5s of the unrecorded and partial files found at start; true for
	// those the first pass put in the backlog, which still wants them.
	candidates map[string]bool

	refill chan struct{} // asks reconcile to fill the queue's window from the backlog

	// The catalog's media entries are read outside mu, and a file can be recorded, and its
	// task forgotten, between that read and consider: the entry then says "not cached" and no
	// task says otherwise. recent keeps the files recorded while such reads are under way, so
	// that consider does not fetch a complete file again.
	reads     int                     // reads of the catalog's media under way
	recordGen uint64                  // files recorded since start
	recent    map[string]recentRecord // by id: the files recorded while reads > 0

	received atomic.Int64 // bytes downloaded since start
	// hits and misses count the items Open found in the cache and those it fetched first.
	hits, misses atomic.Int64

	smu    sync.Mutex // protects the field below
	served map[string]time.Time

	imu   sync.RWMutex                 // protects the fields below
	index map[string]storage.MediaFile // the file served for each id, as last read; see lookup
	igen  uint64                       // counts invalidations
}

// blobState is what status says of Blob storage.
type blobState struct {
	state       string
	lastError   string
	lastContact time.Time
}

// Blob storage states.
const (
	StateOK            = "ok"
	StateStarting      = "starting"
	StateUnreachable   = KindUnreachable
	StateUnauthorized  = KindAuth
	StateNotConfigured = "not_configured"
	StateDisabled      = "disabled"
)

// New checks the options and returns a Fetcher; nothing runs until Run.
func New(o Options) (*Fetcher, error) {
	if o.DB == nil || o.Cache == nil {
		return nil, errors.New("media: a database and a cache are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Parallel = orDefaultInt(o.Parallel, config.DefaultMediaParallel)
	o.LargeFile = orDefaultInt(o.LargeFile, config.DefaultMediaLargeFileBytes)
	o.StallTimeout = orDefaultInt(o.StallTimeout, config.DefaultMediaStallTimeout)
	o.RetryMax = orDefaultInt(o.RetryMax, config.DefaultMediaRetryMax)
	o.ProgressInterval = orDefaultInt(o.ProgressInterval, config.DefaultMediaProgressInterval)
	o.PollInterval = orDefaultInt(o.PollInterval, DefaultPollInterval)
	o.QueueWindow = max(orDefaultInt(o.QueueWindow, DefaultQueueWindow), 2)
	f := &Fetcher{
		o: o, log: o.Logger, now: o.Now,
		q:         newQueue(),
		back:      newBacklog(),
		refill:    make(chan struct{}, 1),
		changed:   make(chan struct{}),
		demanded:  make(chan struct{}),
		waiters:   map[string][]chan error{},
		waitedFor: map[string][md5.Size]byte{},
		wanted:    map[[md5.Size]byte]int{},
		fetching:  map[[16]byte]chan struct{}{},
		failures:  map[string]storage.MediaFailure{},
		blobBack:  backoff.New(time.Second, o.RetryMax),
		served:    map[string]time.Time{},
		index:     map[string]storage.MediaFile{},
		blob:      blobState{state: StateStarting},
	}
	f.commitSlots = make(chan struct{}, o.Parallel)
	f.usedHint = -1
	if o.Source == nil {
		f.blob.state = StateDisabled
	}
	if o.Bandwidth > 0 {
		f.burst = int(min(max(o.Bandwidth/10, 32<<10), 1<<20))
		f.limiter = rate.NewLimiter(rate.Limit(o.Bandwidth), f.burst)
	}
	return f, nil
}

func orDefaultInt[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Run keeps the cache in step with the catalog until ctx ends, then returns nil.
func (f *Fetcher) Run(ctx context.Context) error {
	if err := f.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.reconcile(gctx) })
	g.Go(func() error { return f.housekeep(gctx) })
	if f.o.Source != nil {
		for i := 0; i < f.o.Parallel; i++ {
			g.Go(func() error { return f.work(gctx, false) })
			// Lanes of their own for what devices wait for, so that a device never waits
			// behind a prefetch of videos.
			g.Go(func() error { return f.work(gctx, true) })
		}
	}
	err := g.Wait()
	f.commits.Wait()
	f.flushServed(context.WithoutCancel(ctx))
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// start reconciles the disk with the index, after a crash or a change made while stopped.
func (f *Fetcher) start(ctx context.Context) error {
	onDisk, err := f.o.Cache.Files()
	if err != nil {
		return err
	}
	known, err := f.o.DB.MediaFileNames(ctx)
	if err != nil {
		return err
	}
	var missing []string
	for _, m := range known {
		if _, ok := onDisk[m]; ok {
			delete(onDisk, m)
			continue
		}
		missing = append(missing, m)
	}
	if len(missing) > 0 {
		// Removed behind the server's back: fetch them again.
		f.log.Warn("media: cached files missing from disk; they will be fetched again", slog.Int(keyFiles, len(missing)))
		if err := f.o.DB.EvictMediaFiles(ctx, missing); err != nil {
			return err
		}
	}
	orphans, err := f.o.DB.OrphanMedia(ctx)
	if err != nil {
		return err
	}
	if err := f.forget(ctx, orphans); err != nil {
		return err
	}
	failures, err := f.o.DB.AllMediaFailures(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range failures {
		f.failures[fl.ID] = fl
	}
	// Files on disk that the index does not know were verified and renamed, but the stop came
	// before they were recorded: the first pass adopts those still wanted.
	f.unadopted = onDisk
	f.candidates = map[string]bool{}
	for m := range onDisk {
		f.candidates[m] = false
	}
	if partials, err := f.o.Cache.Partials(); err == nil {
		for m := range partials {
			f.candidates[m] = false
		}
	}
	return nil
}

// forget removes media items from the cache and deletes the files nothing is served from.
func (f *Fetcher) forget(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	f.invalidate(ids...)
	unused, err := f.o.DB.ForgetMedia(ctx, ids)
	f.invalidate(ids...)
	if err != nil {
		return err
	}
	f.removeFiles(unused)
	return nil
}

func (f *Fetcher) removeFiles(md5s []string) {
	for _, m := range md5s {
		if err := f.o.Cache.Remove(m); err != nil {
			// The index no longer knows it; the next start's sweep tries again.
			f.log.Warn("media: cannot delete a file", slog.String(keyErr, err.Error()))
		}
	}
}

// reconcile follows the media collection: every change after the last one seen, then again
// whenever the collection's feed moves.
func (f *Fetcher) reconcile(ctx context.Context) error {
	var seen storage.FeedState
	first := true
	t := time.NewTicker(f.o.PollInterval)
	defer t.Stop()
	for {
		st, _ := f.o.DB.FeedState(cloudapi.Media)
		if first || st.Pages != seen.Pages || st.Cursor != seen.Cursor {
			if err := f.scan(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				f.log.Warn("media: cannot read the catalog's media; will try again", slog.String(keyErr, err.Error()))
			} else {
				seen = st
				if first {
					f.afterFirstScan()
					first = false
				}
			}
		}
		if !first {
			if err := f.fill(ctx); err != nil && ctx.Err() == nil {
				f.log.Warn("media: cannot read the catalog's media; will try again", slog.String(keyErr, err.Error()))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-f.refill:
		}
	}
}

// scanBatch is the number of media entries read per query.
const scanBatch = 1000

// scan applies every change of the media collection after the last one seen.
func (f *Fetcher) scan(ctx context.Context) error {
	for {
		f.mu.Lock()
		after := f.lastSeq
		f.mu.Unlock()
		gen := f.readStart()
		items, err := f.o.DB.MediaItems(ctx, after, scanBatch)
		if err != nil {
			f.readEnd()
			return err
		}
		var gone []string
		var retyped []string
		for i := range items {
			it := &items[i]
			read := it.CachedMD5
			if f.consider(it, false, gen) == itemDeleted {
				gone = append(gone, it.ID)
				continue
			}
			// The same content, perhaps under another content type: nothing to fetch, but the
			// type served follows the manifest. A file recorded during the read (consider then
			// names it) may have been recorded before the manifest changed.
			if md5hex, ok := it.Manifest.HexMD5(); ok && md5hex == it.CachedMD5 && (it.CachedType != it.Manifest.ContentType || read != md5hex) {
				retyped = append(retyped, it.ID)
			}
		}
		f.readEnd()
		if err := f.forgetDeleted(ctx, gone); err != nil {
			return err
		}
		if len(retyped) > 0 {
			if err := f.o.DB.RetypeMedia(ctx, retyped); err != nil {
				return err
			}
			f.invalidate(retyped...)
		}
		if len(items) > 0 {
			f.mu.Lock()
			f.lastSeq = items[len(items)-1].Seq
			f.mu.Unlock()
		}
		if len(items) < scanBatch {
			return nil
		}
	}
}

// forgetDeleted removes items deleted from the catalog and stops their downloads; under
// recordMu, so that a download that ends meanwhile cannot record a deleted item again.
func (f *Fetcher) forgetDeleted(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	f.recordMu.Lock()
	defer f.recordMu.Unlock()
	f.mu.Lock()
	for _, id := range ids {
		delete(f.failures, id)
		if t := f.q.tasks[id]; t != nil {
			if t.running {
				t.deleted = true
				if t.stop != nil {
					t.stop(errDeleted)
				}
			} else {
				f.q.remove(t)
				f.dropPartialLocked(t, t.md5)
				f.notifyLocked(id, ErrUnknown)
			}
		}
	}
	f.changedLocked()
	f.mu.Unlock()
	return f.forget(ctx, ids)
}

// recentRecord is a file recorded while the catalog was being read.
type recentRecord struct {
	md5hex string
	gen    uint64 // recordGen once it was recorded
}

// readStart notes a read of the catalog's media about to start; what it returns goes to consider
// with the entries read.
func (f *Fetcher) readStart() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.recordGen
}

// readEnd notes that the entries of a read were all considered.
func (f *Fetcher) readEnd() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reads--; f.reads == 0 {
		clear(f.recent)
	}
}

// What consider did with a catalog entry.
const (
	considered   = iota
	itemDeleted  // the item left the catalog: the caller forgets it
	windowIsFull // filling the window: it is full, the item stays in the backlog
)

// consider decides what one catalog entry needs: nothing, a new version for its task, a task in
// the queue's window or a place in the backlog. fill passes the backlog's items (refill). gen is
// what readStart gave before the entry was read.
func (f *Fetcher) consider(it *storage.MediaItem, refill bool, gen uint64) int {
	if it.Deleted {
		f.mu.Lock()
		f.back.drop(it.ID)
		f.mu.Unlock()
		return itemDeleted
	}
	md5hex, ok := it.Manifest.HexMD5()
	if !ok {
		return considered // the feed decoder lets no such manifest through
	}
	class := classOf(it.Manifest.ContentType)
	f.mu.Lock()
	defer f.mu.Unlock()
	full := f.q.held(class) >= f.o.QueueWindow
	if refill && full {
		return windowIsFull
	}
	f.back.drop(it.ID)
	t := f.q.tasks[it.ID]
	if r, ok := f.recent[it.ID]; ok && r.gen > gen && t == nil {
		it.CachedMD5 = r.md5hex // recorded after the entry was read
	}
	if t != nil && t.running {
		// The version the manifest names comes after the one downloading, even the content
		// served (whose file may go with the other once it is in); the one downloading needs
		// nothing after it.
		t.next = nil
		if t.md5hex() != md5hex {
			m := it.Manifest
			t.next = &m
		}
		return considered
	}
	if it.CachedMD5 == md5hex {
		if t != nil {
			f.q.remove(t)
		}
		return considered
	}
	if t != nil {
		old := t.md5
		f.q.setVersion(t, it.Manifest, md5hex)
		if old != t.md5 {
			f.dropPartialLocked(t, old)
			f.rewantedLocked(t)
			// A new version owes nothing to the failures of the old one (a blob fixed by the
			// shop's platform is fetched now, not after the old one's backoff, and a device is
			// not told the old one's reason).
			if fl, ok := f.failures[t.id]; ok && fl.MD5 != t.md5b64() {
				delete(f.failures, t.id)
				t.attempts = 0
				if fl.Kind == t.why {
					f.q.retryNow(t)
					f.changedLocked()
				}
			}
		}
		if t.class != classOnDemand {
			f.q.reclass(t, class)
		}
		return considered
	}
	if _, ok := f.candidates[md5hex]; ok {
		// Wanted, prefetched or not: a verified file a crash left unrecorded is adopted, and a
		// partial one resumed, when the item is fetched (with media.prefetch false, when a
		// device asks for it).
		f.candidates[md5hex] = true
	}
	if it.CachedMD5 == "" && !f.o.Prefetch {
		return considered
	}
	if full || (!refill && f.back.n[class] > 0) {
		f.back.add(it.ID, class, it.Manifest.Size)
		return considered
	}
	f.enqueueLocked(it.ID, it.Manifest, md5hex, class)
	return considered
}

// enqueueLocked adds a task, waiting out the backoff of an earlier failure of the same version.
func (f *Fetcher) enqueueLocked(id string, m cloudapi.MediaManifest, md5hex string, class int) *task {
	t := &task{id: id, class: class}
	t.set(m, md5hex)
	if fl, ok := f.failures[id]; ok && fl.MD5 == m.MD5 {
		t.attempts = fl.Attempts
		if fl.NextTry.After(f.now()) {
			t.notBefore, t.why = fl.NextTry, fl.Kind
		}
	}
	f.q.add(t)
	f.changedLocked()
	return t
}

// afterFirstScan adopts the verified files found on disk unrecorded, and deletes the partial
// files nothing wants any more.
func (f *Fetcher) afterFirstScan() {
	f.mu.Lock()
	unadopted := f.unadopted
	f.unadopted = nil
	// Wanted: the files of the queued tasks and of the backlog's items.
	wanted := f.candidates
	f.candidates = nil
	if wanted == nil {
		wanted = map[string]bool{}
	}
	for _, t := range f.q.tasks {
		wanted[t.md5hex()] = true
	}
	f.mu.Unlock()
	var stray []string
	for m := range unadopted {
		if !wanted[m] {
			stray = append(stray, m)
		}
	}
	f.removeFiles(stray)
	if partials, err := f.o.Cache.Partials(); err == nil {
		for m := range partials {
			if !wanted[m] {
				f.o.Cache.RemovePartial(m)
			}
		}
	}
	f.mu.Lock()
	f.unadopted = map[string]int64{}
	for m, size := range unadopted {
		if wanted[m] {
			f.unadopted[m] = size
		}
	}
	f.started = true
	f.changedLocked()
	f.mu.Unlock()
}

// changedLocked wakes the workers waiting for work.
func (f *Fetcher) changedLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
	if f.q.ready.n[classOnDemand] > 0 {
		// The lanes kept for what devices wait for sleep through the rest: a prefetch of
		// thousands of files would wake them for nothing after every file.
		close(f.demanded)
		f.demanded = make(chan struct{})
	}
}

// notifyLocked answers the on-demand requests waiting for id.
func (f *Fetcher) notifyLocked(id string, err error) {
	f.unwaitedLocked(id)
	for _, ch := range f.waiters[id] {
		ch <- err
	}
	delete(f.waiters, id)
}

// ErrUnknown means the catalog has no such media item.
var ErrUnknown = errors.New("media: no such media item in the catalog")

// UnavailableError means a known media item cannot be served now: it is not cached yet, or its
// blob is quarantined, or Blob storage cannot be reached.
type UnavailableError struct {
	// Reason says why, in words that follow "cannot be served now: ".
	Reason     string
	RetryAfter time.Duration
}

func (e *UnavailableError) Error() string { return "media: " + e.Reason }

func fmtBytes(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 10<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
