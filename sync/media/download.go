package media

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
)

// work runs tasks until ctx ends. An onDemandOnly worker takes only what a device waits for.
// A downloaded file is checked, synced and recorded by a commit of its own, so that the worker
// starts its next download while the disk syncs the last one.
func (f *Fetcher) work(ctx context.Context, onDemandOnly bool) error {
	for {
		t, err := f.next(ctx, onDemandOnly)
		if err != nil {
			return nil
		}
		// The item may leave the catalog while it downloads: forgetDeleted then stops the
		// download through tctx.
		tctx, stop := context.WithCancelCause(ctx)
		f.mu.Lock()
		t.stop = stop
		if t.deleted {
			stop(errDeleted)
		}
		f.mu.Unlock()
		var d *mediacache.Download
		var res result
		release, err := f.claim(tctx, t)
		if err == nil {
			d, res = f.download(tctx, t)
		}
		f.mu.Lock()
		t.stop = nil
		f.mu.Unlock()
		stop(nil)
		// Only once the file is recorded does the index count it against the quota; and only
		// then may another task of the same content look for it.
		end := func() { f.unreserve(t); release() }
		if f.dropIfDeleted(t, d) {
			end()
			continue
		}
		if d == nil {
			if ctx.Err() == nil {
				f.finish(ctx, t, res)
			}
			end()
			continue
		}
		select {
		case f.commitSlots <- struct{}{}:
		case <-ctx.Done():
			d.Close()
			end()
			return nil
		}
		f.commits.Add(1)
		go func() {
			defer func() { <-f.commitSlots; f.commits.Done() }()
			// A verified file is recorded even while the Fetcher stops: it is quick, and it
			// saves checking the file again at the next start. An item deleted while the file
			// waited for its turn is not put in place for nothing.
			if !f.dropIfDeleted(t, d) {
				f.finish(context.WithoutCancel(ctx), t, f.commit(d, t))
			}
			end()
		}()
	}
}

// next waits for a task this worker may run.
func (f *Fetcher) next(ctx context.Context, onDemandOnly bool) (*task, error) {
	for {
		f.mu.Lock()
		now := f.now()
		due := f.q.release(now)
		var t *task
		if now.Before(f.pausedTo) {
			due = f.pausedTo
		} else if f.started {
			t = f.takeLocked(now, onDemandOnly)
		}
		wake := f.changed
		if onDemandOnly {
			wake = f.demanded
		}
		f.mu.Unlock()
		if t != nil {
			return t, nil
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !due.IsZero() {
			timer = time.NewTimer(max(due.Sub(now), time.Millisecond))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// takeLocked pops a ready task, sending large files outside their window to wait for it.
func (f *Fetcher) takeLocked(now time.Time, onDemandOnly bool) *task {
	for {
		if q := &f.q.ready; q.Len() > 0 && f.backlogAheadLocked(q.peek().class) {
			return nil
		}
		t := f.q.take(onDemandOnly)
		if t == nil {
			return nil
		}
		if t.class == classOnDemand || t.size < f.o.LargeFile || f.o.Window.Open(now) {
			f.askRefillLocked(t.class)
			return t
		}
		// Counted again in its class's window, as it waits: asked for after, the refill sees it.
		f.q.requeue(t, f.o.Window.NextOpen(now), whyWindow)
		f.askRefillLocked(t.class)
	}
}

// result is how a download ended.
type result struct {
	err  error  // nil: stored
	kind string // with err: storage.MediaQuarantined, MediaFailed, MediaNoSpace, or a BlobError kind
}

// download fetches the rest of a task's blob into its partial file and returns the file, ready
// to commit; or no file and how it failed (or, for content already on disk, succeeded).
func (f *Fetcher) download(ctx context.Context, t *task) (*mediacache.Download, result) {
	t.adopted = false
	if f.inPlace(t) && f.adopt(t) {
		t.adopted = true
		return nil, result{} // the file is in place already: another item has the same content
	}
	if f.outsideWindow(t) && f.o.Cache.PartialSize(t.md5hex()) != t.size {
		// Taken as the window closed, or after waiting for another download of its content
		// that stopped at the close (claim): no request, no room made, no partial file read.
		// (One already whole, left by a stop before its commit, is committed.)
		return nil, result{err: errWindowClosed, kind: whyWindow}
	}
	if f.o.MaxBytes > 0 && t.size > f.o.MaxBytes {
		// No room ever made would fit it: a failure for shop IT to act on (the quota), not an
		// item waiting for room in a full cache.
		return nil, result{err: fmt.Errorf("the file is %s, more than the whole cache (media.cache_max_bytes %s)", fmtBytes(t.size), fmtBytes(f.o.MaxBytes)),
			kind: storage.MediaFailed}
	}
	if err := f.reserve(ctx, t); err != nil {
		return nil, result{err: err, kind: storage.MediaNoSpace}
	}
	d, err := f.o.Cache.Begin(t.md5hex(), t.size)
	if err != nil {
		return nil, result{err: err, kind: storage.MediaFailed}
	}
	t.got.Store(d.Offset())
	t.resumed = d.Offset() > 0
	if t.resumed {
		f.log.Info("media: resuming a download", slog.String(keyID, t.id), slog.Int64(keyBytes, d.Offset()), slog.Int64(keyTotal, t.size))
	}
	if d.Offset() < t.size {
		if r := f.fetchInto(ctx, t, d); r.err != nil {
			d.Close()
			return nil, r
		}
	}
	return d, result{}
}

// claim makes t the one download of its content. Items with the same content (one image under
// two names) would otherwise download it twice into the same partial file, and the second
// commit would fail: a task whose content another download is fetching waits until that one has
// ended (its file is then in place and t adopts it, or it failed and t tries on its own). The
// func returned ends the claim; it is a no-op when claim failed (ctx ended).
func (f *Fetcher) claim(ctx context.Context, t *task) (func(), error) {
	key := t.md5 // a running task's version does not change
	for {
		f.mu.Lock()
		ch, busy := f.fetching[key]
		if !busy {
			ch = make(chan struct{})
			f.fetching[key] = ch
			f.mu.Unlock()
			return func() {
				f.mu.Lock()
				delete(f.fetching, key)
				f.mu.Unlock()
				close(ch)
			}, nil
		}
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return func() {}, context.Cause(ctx)
		}
	}
}

// errDeleted stops the download of an item the catalog deleted.
var errDeleted = errors.New("media: the item was deleted from the catalog")

// dropIfDeleted ends the download of an item the catalog deleted while it ran, and tells
// whether it did: the partial file d (when there is one) goes, unless another item being fetched
// has the same content, and whoever waits for the item hears that it is unknown.
func (f *Fetcher) dropIfDeleted(t *task, d *mediacache.Download) bool {
	f.mu.Lock()
	if !t.deleted {
		f.mu.Unlock()
		return false
	}
	shared := f.sharedLocked(t)
	f.notifyLocked(t.id, ErrUnknown)
	f.doneLocked(t)
	f.mu.Unlock()
	if d != nil {
		d.Close()
	}
	if !shared {
		if err := f.o.Cache.RemovePartial(t.md5hex()); err != nil {
			f.log.Warn("media: cannot remove the partial file of a deleted item", slog.String(keyID, t.id), slog.String(keyErr, err.Error()))
		}
	}
	f.log.Info("media: download stopped: the item was deleted from the catalog", slog.String(keyID, t.id), slog.Int64(keyBytes, t.got.Load()))
	return true
}

// dropPartialLocked removes the partial file of content sum that task t no longer fetches (its
// item was deleted, or moved to another version before it ran), unless another item being
// fetched has that content. Under f.mu, so that a task of that content queued now starts afresh.
func (f *Fetcher) dropPartialLocked(t *task, sum [md5.Size]byte) {
	if f.fetchingLocked(t, sum) {
		return
	}
	if err := f.o.Cache.RemovePartial(hex.EncodeToString(sum[:])); err != nil {
		f.log.Warn("media: cannot remove a partial file no item needs", slog.String(keyID, t.id), slog.String(keyErr, err.Error()))
	}
}

// sharedLocked reports whether another item being fetched has t's content.
func (f *Fetcher) sharedLocked(t *task) bool { return f.fetchingLocked(t, t.md5) }

// fetchingLocked reports whether an item being fetched, other than t's, has content sum.
func (f *Fetcher) fetchingLocked(t *task, sum [md5.Size]byte) bool {
	for _, o := range f.q.tasks {
		if o != t && o.md5 == sum {
			return true
		}
	}
	return false
}

// retryWhole is the result of a resumed download that does not match: the part kept from
// before might be what is wrong, so it is fetched once more whole before it is quarantined.
const retryWhole = "retry_whole"

// commit checks a downloaded file against its manifest and puts it in place.
func (f *Fetcher) commit(d *mediacache.Download, t *task) result {
	err := d.Commit(t.size)
	switch {
	case err == nil:
		return result{}
	case errors.Is(err, mediacache.ErrMismatch) && t.resumed && !t.wholeTried:
		t.wholeTried = true
		return result{err: err, kind: retryWhole}
	case errors.Is(err, mediacache.ErrMismatch):
		return result{err: fmt.Errorf("blob %s: %w", t.blob, err), kind: storage.MediaQuarantined}
	}
	return result{err: err, kind: storage.MediaFailed}
}

// inPlace reports whether t's file is in the cache, whole.
func (f *Fetcher) inPlace(t *task) bool {
	size, ok := f.o.Cache.Has(t.md5hex())
	return ok && size == t.size
}

// adopt accepts a verified file already on disk for t (a file another item shares, or one that
// a stop left unrecorded).
func (f *Fetcher) adopt(t *task) bool {
	f.mu.Lock()
	_, unrecorded := f.unadopted[t.md5hex()]
	delete(f.unadopted, t.md5hex())
	f.mu.Unlock()
	if unrecorded {
		return f.o.Cache.Verify(t.md5hex(), t.size)
	}
	return true // recorded for another item: verified when it was stored
}

// fetchInto reads the rest of t's blob into d.
func (f *Fetcher) fetchInto(ctx context.Context, t *task, d *mediacache.Download) result {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	body, total, err := f.o.Source.Download(ctx, t.blob, d.Offset())
	var be *BlobError
	if errors.As(err, &be) && be.Kind == KindRange {
		// The partial file is longer than the blob: start again.
		if err = d.Restart(); err != nil {
			return result{err: err, kind: storage.MediaFailed}
		}
		body, total, err = f.o.Source.Download(ctx, t.blob, 0)
	}
	if err != nil {
		return blobResult(err)
	}
	defer body.Close()
	f.contact()
	if total != t.size {
		d.Restart()
		return result{err: fmt.Errorf("blob %s is %d bytes; its manifest says %d", t.blob, total, t.size), kind: storage.MediaQuarantined}
	}
	stall := time.AfterFunc(f.o.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	return copyResult(ctx, f.copy(ctx, d, body, t, stall), f.o.StallTimeout)
}

// copyResult classifies how copying a blob into the cache ended: the shop's disk failing is a
// failure of the item (the others go on), a body cut or stalled one of Blob storage.
func copyResult(ctx context.Context, err error, stallTimeout time.Duration) result {
	var we *cacheWriteError
	switch {
	case errors.As(err, &we):
		return result{err: err, kind: storage.MediaFailed}
	case errors.Is(err, errWindowClosed):
		return result{err: err, kind: whyWindow}
	case errors.Is(context.Cause(ctx), errStalled):
		err = &BlobError{Kind: KindUnreachable, Err: fmt.Errorf("%w (%s)", errStalled, stallTimeout)}
	}
	if err != nil {
		return blobResult(err)
	}
	return result{}
}

// writeChunk writes to a partial file (a variable, so that a test can make the disk fail).
var writeChunk = (*mediacache.Download).Write

// cacheWriteError is a download that could not be written to the cache's disk (full, failing):
// a failure of the item, not of Blob storage.
type cacheWriteError struct{ err error }

func (e *cacheWriteError) Error() string {
	return "cannot write it to the media cache: " + e.err.Error()
}
func (e *cacheWriteError) Unwrap() error { return e.err }

var errStalled = errors.New("download stalled: nothing received within media.stall_timeout")

// errWindowClosed stops the prefetch of a large file when media.large_file_window closes; what
// it received is kept, and it goes on from there when the window opens again.
var errWindowClosed = errors.New("the large-file window closed")

// outsideWindow reports whether t is the prefetch of a large file that must not go on: the window
// is closed, and no device asked for it (takeLocked's rule, applied while it runs: a task a
// device asked for keeps the on-demand class, and a device waiting for its content holds it).
func (f *Fetcher) outsideWindow(t *task) bool {
	if !f.o.Window.Set || t.size < f.o.LargeFile || f.o.Window.Open(f.now()) {
		return false
	}
	f.mu.Lock()
	onDemand := t.class == classOnDemand
	f.mu.Unlock()
	return !onDemand && !f.contentWanted(t.md5)
}

// copyChunk is the most read from a blob at once.
const copyChunk = 256 << 10

// copyBuffers are the downloads' buffers, reused: most media files are smaller than one, and a
// new one for each would keep the garbage collector busy through a prefetch.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// copy moves the body into d, within the bandwidth cap, counting progress. Reads from the
// network return a few tens of kilobytes at a time; they are gathered into whole buffers before
// they are written, so that a large file costs the disk (and the runtime, which hands the
// thread of a blocking system call's goroutine over) a quarter of the writes or fewer.
func (f *Fetcher) copy(ctx context.Context, d *mediacache.Download, body io.Reader, t *task, stall *time.Timer) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	chunk := len(buf)
	if f.limiter != nil {
		chunk = min(chunk, f.burst)
	}
	filled := 0
	forDevice := false
	defer func() {
		if forDevice {
			f.deviceRunEnds()
		}
	}()
	for {
		n, err := body.Read(buf[filled:chunk])
		if n > 0 {
			stall.Reset(f.o.StallTimeout)
			filled += n
			t.got.Add(int64(n))
			f.counted(int64(n))
			// Every byte waits for the cap, those that come with io.EOF too: a body of a
			// known length ends that way, and a small file is often nothing else. A device
			// waiting for its item gets the cap's bytes before the prefetch.
			if f.limiter != nil {
				// Whether a device waits for this content, checked at each chunk: the device may
				// have asked after the download began, or given up.
				if wanted := f.contentWanted(t.md5); wanted != forDevice {
					if forDevice = wanted; wanted {
						f.deviceRunStarts()
					} else {
						f.deviceRunEnds()
					}
				}
				var werr error
				if !forDevice {
					werr = f.yieldToDevices(ctx, stall)
				}
				if werr == nil {
					// Waiting for the cap is the shop's doing, not a stall of Blob storage.
					stall.Stop()
					werr = f.limiter.WaitN(ctx, n)
					stall.Reset(f.o.StallTimeout)
				}
				if werr != nil {
					err = werr
				}
			}
			// Not once every byte is in: the file is committed, not left to wait for the window.
			if err == nil && t.got.Load() < t.size && f.outsideWindow(t) {
				err = errWindowClosed
			}
		}
		if filled == chunk || (err != nil && filled > 0) {
			// What was received is written even when the download stops here: a resumed
			// download goes on from it.
			if _, werr := writeChunk(d, buf[:filled]); werr != nil {
				return &cacheWriteError{werr}
			}
			filled = 0
			if d.Offset() > t.size {
				return nil // longer than the manifest says: Commit tells
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// deviceRunStarts and deviceRunEnds count the downloads a device waits for.
func (f *Fetcher) deviceRunStarts() {
	f.deviceMu.Lock()
	defer f.deviceMu.Unlock()
	if f.deviceRuns == 0 {
		f.devicesDone = make(chan struct{})
	}
	f.deviceRuns++
}

func (f *Fetcher) deviceRunEnds() {
	f.deviceMu.Lock()
	defer f.deviceMu.Unlock()
	f.deviceRuns--
	if f.deviceRuns == 0 {
		close(f.devicesDone)
		f.devicesDone = nil
	}
}

// yieldToDevices holds a prefetch download while downloads a device waits for run, so that
// they get the bandwidth cap to themselves. The stall timer does not run meanwhile: the
// download waits on the shop, not on Blob storage.
func (f *Fetcher) yieldToDevices(ctx context.Context, stall *time.Timer) error {
	f.deviceMu.Lock()
	done := f.devicesDone
	f.deviceMu.Unlock()
	if done == nil {
		return nil
	}
	stall.Stop()
	defer stall.Reset(f.o.StallTimeout)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// blobResult classifies a failed request.
func blobResult(err error) result {
	var be *BlobError
	switch {
	case errors.As(err, &be) && (be.Kind == KindNotFound || be.Kind == KindRange):
		// No such blob, or another part than asked again after starting over: the item fails.
		return result{err: err, kind: storage.MediaFailed}
	case errors.As(err, &be):
		return result{err: err, kind: be.Kind}
	case notConfigured(err):
		return result{err: err, kind: StateNotConfigured}
	}
	return result{err: &BlobError{Kind: KindUnreachable, Err: err}, kind: KindUnreachable}
}

// contact records that Blob storage answered.
func (f *Fetcher) contact() {
	f.mu.Lock()
	f.blob.state, f.blob.lastError, f.blob.lastContact = StateOK, "", f.now()
	f.blobBack.Reset()
	f.mu.Unlock()
}

// finish records how a task ended and answers whoever waits for it.
func (f *Fetcher) finish(ctx context.Context, t *task, res result) {
	switch res.kind {
	case "":
		f.stored(ctx, t)
	case retryWhole:
		f.log.Info("media: a resumed download does not match; fetching it whole", slog.String(keyID, t.id))
		f.mu.Lock()
		f.requeueLocked(t, time.Time{}, "")
		f.mu.Unlock()
	case whyWindow:
		f.mu.Lock()
		if t.class == classOnDemand {
			// A device asked for it as it stopped: it goes on now.
			f.requeueLocked(t, time.Time{}, "")
			f.mu.Unlock()
			return
		}
		next := f.o.Window.NextOpen(f.now())
		f.requeueLocked(t, next, whyWindow)
		f.askRefillLocked(t.class)
		f.mu.Unlock()
		f.log.Info("media: the large-file window closed; the download goes on from where it stopped when the window opens",
			slog.String(keyID, t.id), slog.Int64(keyBytes, t.got.Load()), slog.Int64(keyTotal, t.size), slog.Time("at", next))
	case KindAuth:
		f.refused(ctx, t, res.err)
	case KindUnreachable, StateNotConfigured:
		f.unreachable(t, res)
	default:
		f.failed(ctx, t, res)
	}
}

// stored records a verified file and moves the item to it. The record is written outside the
// queue's lock, so that the other lanes go on meanwhile; recordMu orders it with the removal of
// deleted items, so that a deleted item is never recorded again. Files verified while a record
// is being written wait for it and are then recorded together, in one transaction, by whichever
// of their commits comes first (a group commit): a prefetch of small files finishes several at
// a time. When stored returns, t is recorded (or requeued).
func (f *Fetcher) stored(ctx context.Context, t *task) {
	f.pendMu.Lock()
	f.pending = append(f.pending, t)
	f.pendMu.Unlock()
	f.recordMu.Lock()
	defer f.recordMu.Unlock()
	f.pendMu.Lock()
	batch := f.pending
	f.pending = nil
	f.pendMu.Unlock()
	if len(batch) == 0 {
		return // an earlier commit recorded t with its own
	}
	// A file taken over from another item's record may have been evicted since (evict removes
	// files under recordMu): such a task fetches it again instead of recording a missing file.
	// A file this server has just put in place is in no record yet, so no eviction takes it. (A
	// lost task deleted meanwhile is forgotten by requeueLocked.)
	var lost []*task
	kept := batch[:0:0]
	for _, t := range batch {
		if t.adopted && !f.inPlace(t) {
			lost = append(lost, t)
		} else {
			kept = append(kept, t)
		}
	}
	if len(lost) > 0 {
		f.mu.Lock()
		for _, t := range lost {
			f.log.Info("media: a file taken over from another item was given up meanwhile; fetching it", slog.String(keyID, t.id))
			f.requeueLocked(t, time.Time{}, "")
		}
		f.mu.Unlock()
	}
	batch = kept
	var recs []storage.MediaRecord
	var ids []string
	var gone []*task // deleted while their file was put in place
	f.mu.Lock()
	for _, t := range batch {
		if t.deleted {
			gone = append(gone, t)
		} else {
			recs = append(recs, storage.MediaRecord{ID: t.id, MD5: t.md5hex(), ContentType: t.ctype, Size: t.size})
			ids = append(ids, t.id)
		}
	}
	f.mu.Unlock()
	var unused []string
	var err error
	if len(recs) > 0 {
		unused, err = f.o.DB.StoreMediaFiles(ctx, recs, f.now())
		f.invalidate(ids...)
	}
	var orphans []*task // of gone, those whose file no item is served from
	for _, t := range gone {
		// On an error the file stays: the next start's sweep decides.
		if used, uerr := f.o.DB.MediaFileRecorded(ctx, t.md5hex()); uerr == nil && !used {
			orphans = append(orphans, t)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.removeFiles(unused)
	}
	for _, t := range orphans {
		// Under the lock, so that an item of the same content queued now fetches it again.
		if !f.sharedLocked(t) {
			f.removeFiles([]string{t.md5hex()})
			f.log.Info("media: removed the file of an item deleted while it was put in place", slog.String(keyID, t.id))
		}
	}
	for _, t := range batch {
		f.recordedLocked(t, err)
	}
}

// recordedLocked ends a task whose file was recorded, or could not be (err).
func (f *Fetcher) recordedLocked(t *task, err error) {
	if err != nil {
		f.log.Error("media: cannot record a fetched file", slog.String(keyID, t.id), slog.String(keyErr, err.Error()))
		// In memory only (the database is what fails): a device asking meanwhile is told why.
		now := f.now()
		f.failures[t.id] = storage.MediaFailure{ID: t.id, MD5: t.md5b64(), Kind: storage.MediaFailed,
			Reason: "its file was fetched, but the database could not record it: " + err.Error(), Attempts: t.attempts, NextTry: now.Add(time.Minute), At: now}
		f.requeueLocked(t, now.Add(time.Minute), storage.MediaFailed)
		f.notifyLocked(t.id, err)
		return
	}
	f.prog.files++
	if !t.deleted {
		f.recorded += t.size
		if f.usedHint >= 0 {
			f.usedHint += t.size
		}
		delete(f.failures, t.id)
		f.recordGen++
		if f.reads > 0 {
			if f.recent == nil {
				f.recent = map[string]recentRecord{}
			}
			f.recent[t.id] = recentRecord{md5hex: t.md5hex(), gen: f.recordGen}
		}
		f.log.Debug("media: stored", slog.String(keyID, t.id), slog.Int64(keyBytes, t.size))
	}
	f.notifyLocked(t.id, nil)
	f.doneLocked(t)
}

// doneLocked ends a task, or starts it again for the newer version seen meanwhile.
func (f *Fetcher) doneLocked(t *task) {
	t.running = false
	f.q.forget(t)
	if t.next != nil && !t.deleted {
		if md5hex, ok := t.next.HexMD5(); ok {
			f.enqueueLocked(t.id, *t.next, md5hex, classOf(t.next.ContentType))
		}
	}
	f.changedLocked()
}

// requeueLocked puts a task back, to run at at (zero: now).
func (f *Fetcher) requeueLocked(t *task, at time.Time, why string) {
	if t.deleted {
		t.running = false
		f.q.forget(t)
		return
	}
	if t.next != nil {
		if md5hex, ok := t.next.HexMD5(); ok {
			old := t.md5
			f.q.setVersion(t, *t.next, md5hex)
			if old != t.md5 {
				f.dropPartialLocked(t, old)
				f.rewantedLocked(t)
			}
			t.next, t.attempts = nil, 0
			at, why = time.Time{}, ""
		}
	}
	f.q.requeue(t, at, why)
	f.changedLocked()
}

// refused handles a SAS or key that Blob storage refused: read the container URL again and go
// on; when that cannot help, wait like for an unreachable store.
func (f *Fetcher) refused(ctx context.Context, t *task, err error) {
	rerr := f.o.Source.Refresh(ctx)
	if rerr == nil {
		f.log.Info("media: Blob storage refused the SAS; read the container URL again", slog.String(keyErr, err.Error()))
		f.mu.Lock()
		f.requeueLocked(t, time.Time{}, "")
		// A refusal right after a refresh means the new one is refused too: the state says
		// so, and downloads slow down. Until then the new SAS may well be taken.
		if f.blobBack.Attempts() > 0 {
			f.blob.state, f.blob.lastError = StateUnauthorized, err.Error()
			f.pauseLocked(nil)
		}
		f.blobBack.Next(0)
		f.mu.Unlock()
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blob.state, f.blob.lastError = StateUnauthorized, err.Error()
	if !errors.Is(rerr, ErrNoRefresh) {
		f.blob.lastError += "; reading the container URL again failed: " + rerr.Error()
	}
	f.requeueLocked(t, time.Time{}, "")
	f.pauseLocked(rerr)
	f.notifyLocked(t.id, &UnavailableError{Reason: notCachedBecause(StateUnauthorized, err.Error()), RetryAfter: f.pausedTo.Sub(f.now())})
}

// unreachable pauses every download while Blob storage cannot be reached, or no usable container
// is known.
func (f *Fetcher) unreachable(t *task, res result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	state := StateUnreachable
	if res.kind == StateNotConfigured {
		state = StateNotConfigured
	}
	if f.blob.state != state || f.blob.lastError != res.err.Error() {
		f.log.Warn("media: "+blobProblem(state)+"; downloads wait", slog.String(keyErr, res.err.Error()))
	}
	f.blob.state, f.blob.lastError = state, res.err.Error()
	f.requeueLocked(t, time.Time{}, "")
	f.pauseLocked(res.err)
	f.notifyLocked(t.id, &UnavailableError{Reason: notCachedBecause(state, res.err.Error()), RetryAfter: f.pausedTo.Sub(f.now())})
}

// blobProblem says what a paused state of Blob storage means.
func blobProblem(state string) string {
	switch state {
	case StateNotConfigured:
		return "no usable media container is known"
	case StateUnauthorized:
		return "Blob storage refused access"
	}
	return "Blob storage cannot be reached"
}

// notCachedBecause is why an item not cached cannot come now: Blob storage is in a paused state.
func notCachedBecause(state, lastError string) string {
	return "it is not cached yet, and " + blobProblem(state) + ": " + lastError
}

// failureReason is why an item whose last download failed cannot come now.
func failureReason(kind, reason string) string {
	switch kind {
	case storage.MediaQuarantined:
		return "its blob does not match its manifest and is quarantined until the next try: " + reason
	case storage.MediaNoSpace:
		return "the cache has no room for it: " + reason
	}
	return "its download failed and is tried again later: " + reason
}

// pauseLocked stops new downloads for the next backoff delay, and at least for the Retry-After
// of the cloud's answer in err (when reading the container URL was refused for a while), up to
// an hour (cloud-api.md).
func (f *Fetcher) pauseLocked(err error) {
	wait := f.blobBack.Next(cloudRetryAfter(err))
	f.pausedTo = f.now().Add(wait)
	f.changedLocked()
}

// failed records the failure of one item and schedules its next attempt.
func (f *Fetcher) failed(ctx context.Context, t *task, res result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.deleted {
		f.notifyLocked(t.id, ErrUnknown)
		f.doneLocked(t)
		return
	}
	if t.next != nil {
		// A newer version of the item is next: this one's failure tells nobody anything (those
		// waiting wait for the new one, which is tried now).
		f.log.LogAttrs(ctx, slog.LevelInfo, "media: download of a replaced version failed; fetching the new one", slog.String(keyID, t.id),
			slog.String(keyBlob, t.blob), slog.String(keyKind, res.kind), slog.String(keyErr, res.err.Error()))
		f.requeueLocked(t, time.Time{}, "")
		return
	}
	t.attempts++
	wait := retryDelay(t.attempts, f.o.RetryMax)
	if res.kind == storage.MediaNoSpace {
		wait = max(wait, time.Minute)
	}
	now := f.now()
	fl := storage.MediaFailure{ID: t.id, MD5: t.md5b64(), Kind: res.kind, Reason: res.err.Error(), Attempts: t.attempts, NextTry: now.Add(wait), At: now}
	if err := f.o.DB.RecordMediaFailure(ctx, fl); err != nil {
		f.log.Error("media: cannot record a failure", slog.String(keyID, t.id), slog.String(keyErr, err.Error()))
	}
	f.failures[t.id] = fl
	level := slog.LevelWarn
	if res.kind == storage.MediaNoSpace {
		level = slog.LevelInfo
	}
	f.log.LogAttrs(ctx, level, "media: download failed; will retry", slog.String(keyID, t.id), slog.String(keyBlob, t.blob),
		slog.String(keyKind, res.kind), slog.String(keyErr, res.err.Error()), slog.Int(keyAttempts, t.attempts), slog.Duration(keyRetryIn, wait))
	f.notifyLocked(t.id, &UnavailableError{Reason: failureReason(res.kind, res.err.Error()), RetryAfter: wait})
	f.requeueLocked(t, fl.NextTry, res.kind)
}

// retryDelay is the wait after the n-th failed attempt at an item: from 5 s, capped at maxWait
// even below it (media.retry_max may be 1 s).
func retryDelay(n int, maxWait time.Duration) time.Duration {
	b := backoff.New(min(5*time.Second, maxWait), maxWait)
	var d time.Duration
	for range n {
		d = b.Next(0)
	}
	return d
}

// reserve makes room in the cache for t's file, giving up files as the quota's order says. A
// prefetch never gives up a file a product refers to; a device's request may.
func (f *Fetcher) reserve(ctx context.Context, t *task) error {
	f.spaceMu.Lock()
	defer f.spaceMu.Unlock()
	if f.o.MaxBytes <= 0 {
		return nil
	}
	// Usage only grows by the files recorded here, so the last exact reading plus those is an
	// upper bound; the index is read again only when that bound says the cache may be full.
	f.mu.Lock()
	used := f.usedHint
	ok := used >= 0 && used+f.reserved+t.size <= f.o.MaxBytes
	if ok {
		f.reserved += t.size
		t.reserved = true
	}
	f.mu.Unlock()
	if ok {
		return nil
	}
	used, err := f.exactUsage(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	need := used + f.reserved + t.size - f.o.MaxBytes
	// Room can be made only when the downloads under way leave it: else no file is given up.
	possible := f.reserved+t.size <= f.o.MaxBytes
	f.mu.Unlock()
	for need > 0 && possible {
		// Give up a little more than needed, so that the next files do not each start an
		// eviction of their own.
		more, err := f.evict(ctx, need, need+f.o.MaxBytes/20, t.class == classOnDemand)
		if err != nil {
			return err
		}
		if used, err = f.exactUsage(ctx); err != nil {
			return err
		}
		f.mu.Lock()
		need = used + f.reserved + t.size - f.o.MaxBytes
		f.mu.Unlock()
		if !more {
			break
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if used+f.reserved+t.size > f.o.MaxBytes {
		if f.reserved > 0 {
			return fmt.Errorf("the cache is full (media.cache_max_bytes %s) of files that products refer to and of downloads under way (%s)",
				fmtBytes(f.o.MaxBytes), fmtBytes(f.reserved))
		}
		return fmt.Errorf("the cache is full (media.cache_max_bytes %s) of files that products refer to", fmtBytes(f.o.MaxBytes))
	}
	f.reserved += t.size
	t.reserved = true
	return nil
}

// exactUsage reads the cache's bytes from the index and makes it the new bound of usedHint. A
// file recorded while it reads may or may not be in the reading: it is counted once more, so the
// bound stays a bound.
func (f *Fetcher) exactUsage(ctx context.Context) (int64, error) {
	f.mu.Lock()
	before := f.recorded
	f.mu.Unlock()
	_, used, err := f.o.DB.MediaUsageExact(ctx)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	used += f.recorded - before
	f.usedHint = used
	f.mu.Unlock()
	return used, nil
}

func (f *Fetcher) unreserve(t *task) {
	f.mu.Lock()
	if t.reserved {
		f.reserved -= t.size
		t.reserved = false
	}
	f.mu.Unlock()
}

// evictBatch is how many files one eviction reads the order of, and gives up at most.
var evictBatch = 10000

// evict gives up at least want bytes of files, in the quota's order, if it can; none when all
// those it may give up cannot free need (the room would not be made, the files lost for
// nothing). Past evictBatch files it gives up what it read and says there may be more to give
// up (more): the caller reads the usage and goes on.
func (f *Fetcher) evict(ctx context.Context, need, want int64, referencedToo bool) (more bool, err error) {
	f.flushServed(ctx) // the order needs the latest serving times
	cands, err := f.o.DB.MediaEvictionOrder(ctx, evictBatch)
	if err != nil {
		return false, err
	}
	var victims []string
	var freed int64
	more = len(cands) == evictBatch // files beyond those read may be given up too
	for _, c := range cands {
		if freed >= want {
			break
		}
		if c.Referenced && !referencedToo {
			more = false
			break
		}
		victims = append(victims, c.MD5)
		freed += c.Size
	}
	if len(victims) == 0 || freed < need && !more {
		return false, nil
	}
	// Under recordMu, so that a file another item takes over meanwhile is either recorded before
	// it is given up (and given up with it) or found gone by stored.
	f.recordMu.Lock()
	err = f.o.DB.EvictMediaFiles(ctx, victims)
	f.invalidate()
	if err == nil {
		f.removeFiles(victims)
	}
	f.recordMu.Unlock()
	if err != nil {
		return false, err
	}
	f.log.Info("media: cache full; files given up", slog.Int(keyFiles, len(victims)), slog.Int64(keyBytes, freed))
	return more, nil
}
