// Package feed keeps the local catalog in step with the cloud's change feed: a snapshot on the
// first sync, then deltas after the stored cursor, for every collection of docs/cloud-api.md.
//
// Each page is applied together with its cursor in one local transaction, only once its end line
// has arrived and its count matches, so a crash or a cut stream never skips a page, and applying a
// page twice is harmless (by revision). Reading the next page overlaps with applying the current
// one. Malformed lines are quarantined by storage and never stop the feed.
//
// When the cloud no longer knows a cursor (410), the collection is read again from a snapshot that
// replaces it: storage deletes what the snapshot lacked in the page that catches up.
package feed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// WAN states reported by the syncer.
const (
	StateNever        = "never"        // no attempt finished yet
	StateOK           = "ok"           // the last pass reached the cloud and caught up
	StateUnreachable  = "unreachable"  // the cloud could not be reached (DNS, TCP, TLS, timeout)
	StateProxyError   = "proxy_error"  // the proxy refused or failed the connection
	StateUnauthorized = "unauthorized" // the cloud refused the store key
	StateCloudError   = "cloud_error"  // the cloud answered with an error or a broken stream
)

// WANState is what the syncer knows of the path to the cloud.
type WANState struct {
	State       string
	LastContact time.Time // the last time the cloud answered anything
	LastError   string
}

// Options configure a Syncer.
type Options struct {
	DB           *storage.DB
	Client       *cloud.Client
	PageSize     int           // changes per page asked for; 0: config.DefaultCloudPageSize
	PollInterval time.Duration // pause between passes once caught up; 0: config.DefaultCloudPollInterval
	MinBackoff   time.Duration // first retry delay after a failure; default 1s
	MaxBackoff   time.Duration // longest retry delay; default 5m
	Logger       *slog.Logger
	// AfterPass, when set, is called after every pass with its result (tests wait on it).
	AfterPass func(error)
	// Classify maps a transport error to a WAN state; nil uses network errors only. The daemon
	// passes one that recognises proxy failures of the WAN dialer.
	Classify func(error) string
}

// Syncer runs the feed sync.
type Syncer struct {
	db       *storage.DB
	client   *cloud.Client
	pageSize int
	poll     time.Duration
	minB     time.Duration
	maxB     time.Duration
	log      *slog.Logger
	classify func(error) string
	after    func(error)
	sleep    func(context.Context, time.Duration, <-chan struct{}) error // waits between passes; tests replace it
	poke     chan struct{}
	pages    atomic.Int64 // pages that changed something since start, to tell a flaky WAN from a dead one
	synced   atomic.Int64 // collections of the last pass that synced
	// failedAfterPages: the first collection of the last pass to fail (whose error the pass
	// returns) had applied pages before it failed (a stream cut mid-way, a circle found late),
	// as opposed to failing at once while others applied theirs.
	failedAfterPages atomic.Bool
	// busy holds, per collection, a token while the collection is being synced, so that a
	// re-snapshot asked for (Resnapshot) never starts in the middle of a stream.
	busy map[string]chan struct{}

	mu        sync.Mutex // protects the fields below
	wan       WANState
	wanFailed bool // this pass met a failure of the WAN or the cloud
	lastLog   string
	lastLogAt time.Time
}

// New returns a Syncer; it does nothing until Run or SyncOnce.
func New(o Options) *Syncer {
	s := &Syncer{db: o.DB, client: o.Client, pageSize: o.PageSize, poll: o.PollInterval, minB: o.MinBackoff, maxB: o.MaxBackoff,
		log: o.Logger, classify: o.Classify, after: o.AfterPass, sleep: wait, poke: make(chan struct{}, 1), wan: WANState{State: StateNever},
		busy: make(map[string]chan struct{}, len(cloudapi.Collections))}
	for _, c := range cloudapi.Collections {
		s.busy[c] = make(chan struct{}, 1)
	}
	if s.pageSize <= 0 || s.pageSize > cloudapi.MaxPageSize {
		s.pageSize = config.DefaultCloudPageSize
	}
	if s.poll <= 0 {
		s.poll = config.DefaultCloudPollInterval
	}
	if s.minB <= 0 {
		s.minB = time.Second
	}
	if s.maxB <= 0 {
		s.maxB = 5 * time.Minute
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// WAN returns the current state of the path to the cloud.
func (s *Syncer) WAN() WANState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wan
}

// Poke asks for a pass now instead of at the next poll.
func (s *Syncer) Poke() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Run syncs until ctx ends: a pass over every collection, then a pause of PollInterval, or a
// backoff after a failure (at least what the cloud asked for with Retry-After).
func (s *Syncer) Run(ctx context.Context) error {
	// b is the backoff while nothing gets through; partial, while one collection fails and
	// others sync, grows apart so that it does not lengthen the other's waits.
	b, partial := backoff.New(s.minB, s.maxB), backoff.New(s.minB, s.maxB)
	for {
		before := s.pages.Load()
		err := s.SyncOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Progress is the failing collection's own when one failed: pages the others applied
		// say nothing of it.
		progressed := s.pages.Load() != before && (err == nil || s.failedAfterPages.Load())
		if progressed && !errors.Is(err, errPage) {
			// A flaky WAN that still brings changes is retried promptly; the delay only grows
			// while nothing gets through, or while the cloud breaks the feed's contract.
			b.Reset()
			partial.Reset()
		}
		if s.after != nil {
			s.after(err)
		}
		wait := s.poll
		poke := s.poke
		if err != nil {
			retryAfter := cloud.RetryAfter(err)
			if errors.Is(err, cloud.ErrUnauthorized) {
				retryAfter = s.maxB
			}
			if retryAfter > 0 {
				// The cloud asked for this wait (Retry-After), or refuses the store key (5
				// minutes): a pass asked for meanwhile (a support resync) waits for its end.
				poke = nil
			}
			attempt := 0
			if s.synced.Load() > 0 && !progressed {
				// Other collections synced: the failing one's delay grows up to their poll,
				// not beyond, so that they stay fresh; a Retry-After is waited out as given,
				// not lengthened by that growth. Not when the failing pass read pages before
				// it failed (a second 410, a circle found late): each retry would read them
				// again, so that backs off to its end.
				wait = max(min(partial.Next(0), s.poll), retryAfter)
				attempt = partial.Attempts()
			} else {
				wait = b.Next(retryAfter)
				attempt = b.Attempts()
			}
			s.logRepeated(slog.LevelWarn, "feed: sync failed, will retry", err, slog.Duration("retry_in", wait), slog.Int("attempt", attempt))
		} else {
			b.Reset()
			partial.Reset()
		}
		if err := s.sleep(ctx, wait, poke); err != nil {
			return err
		}
	}
}

// wait pauses for d, until poke, or until ctx ends (then it returns ctx.Err()).
func wait(ctx context.Context, d time.Duration, poke <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-poke:
	case <-t.C:
	}
	return nil
}

// SyncOnce runs one pass: every collection until it is caught up. A collection that fails does
// not hold up the others; the pass returns the first failure, which is also recorded in the
// collection's state.
func (s *Syncer) SyncOnce(ctx context.Context) error {
	var first error
	s.synced.Store(0)
	s.failedAfterPages.Store(false)
	s.mu.Lock()
	s.wanFailed = false
	s.mu.Unlock()
	for _, c := range cloudapi.Collections {
		before := s.pages.Load()
		err := s.syncCollection(ctx, c)
		if err == nil {
			s.synced.Add(1)
			s.mu.Lock()
			s.wan.LastContact = time.Now() // the cloud answered, whatever the rest of the pass does
			s.mu.Unlock()
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.fail(c, err)
		if first == nil {
			first = err // the pass's error: its collection's pages are the ones that count
			s.failedAfterPages.Store(s.pages.Load() != before)
		}
		if errors.Is(err, cloud.ErrUnauthorized) || s.WAN().State == StateUnreachable || s.WAN().State == StateProxyError {
			// Nothing else will get through either.
			return err
		}
		if cloud.RetryAfter(err) > 0 {
			// The cloud asked the shop to wait (cloud-api.md): the rest of the pass waits too.
			return err
		}
	}
	if first != nil {
		return first
	}
	s.mu.Lock()
	s.wan = WANState{State: StateOK, LastContact: time.Now()}
	s.lastLog = ""
	s.mu.Unlock()
	return nil
}

func (s *Syncer) fail(collection string, err error) {
	state := StateCloudError
	var ce *cloud.Error
	var le *localError
	switch {
	case errors.As(err, &le):
		// The cloud answered; the shop's own side failed (its database, its disk). The WAN is
		// as good as that answer, unless a collection before it in this pass met a failure of
		// the WAN or of the cloud, which stays; the collection's error says what failed.
		s.mu.Lock()
		wanFailed := s.wanFailed
		s.mu.Unlock()
		if wanFailed {
			s.recordError(collection, err)
			return
		}
		state = StateOK
	case errors.Is(err, cloud.ErrUnauthorized):
		state = StateUnauthorized
	case errors.As(err, &ce), errors.Is(err, cloudapi.ErrTruncated), errors.Is(err, errPage), errors.Is(err, cloud.ErrStalled):
	case s.classify != nil:
		state = s.classify(err)
	default:
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &ne) || errors.As(err, &oe) {
			state = StateUnreachable
		}
	}
	s.mu.Lock()
	s.wan.State = state
	s.wan.LastError = err.Error()
	if state == StateOK {
		s.wan.LastError = ""
	} else {
		s.wanFailed = true
	}
	// A stream that stopped was last heard from when it stopped, a request timeout ago, maybe on
	// a WAN that dropped since: not a contact now.
	if (state == StateCloudError && !errors.Is(err, cloud.ErrStalled)) || state == StateUnauthorized || state == StateOK {
		s.wan.LastContact = time.Now()
	}
	s.mu.Unlock()
	s.recordError(collection, err)
}

// recordError keeps the collection's error for its status. The context of the pass may be gone;
// the record is still worth keeping.
func (s *Syncer) recordError(collection string, err error) {
	if rerr := s.db.RecordFeedError(context.Background(), collection, err.Error(), time.Now()); rerr != nil {
		s.log.Error("feed: cannot record sync error", slog.String(keyCollection, collection), slog.Any(keyError, rerr))
	}
}

// localError is a failure of the shop's own side during a pass (its database, its disk), after
// the cloud answered: no failure of the WAN.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// logRepeated logs at most once a minute for the same message, so a WAN outage of a day leaves a
// readable log.
func (s *Syncer) logRepeated(level slog.Level, msg string, err error, attrs ...slog.Attr) {
	s.mu.Lock()
	text := err.Error()
	if text == s.lastLog && time.Since(s.lastLogAt) < time.Minute {
		s.mu.Unlock()
		return
	}
	s.lastLog, s.lastLogAt = text, time.Now()
	s.mu.Unlock()
	s.log.LogAttrs(context.Background(), level, msg, append(attrs, slog.String(keyError, text))...)
}

// Log attribute keys.
const (
	keyCollection = "collection"
	keyError      = "error"
)

// errPage marks a page that broke the framing rules of the feed (count mismatch, too long).
var errPage = errors.New("feed: broken page")

// ErrUnknownCollection: Resnapshot was asked for a collection that is not one of
// cloudapi.Collections.
var ErrUnknownCollection = errors.New("feed: unknown collection")

// Resnapshot has collection read again from a snapshot that replaces it, as when the cloud no
// longer knows its cursor: items the cloud no longer has are deleted, changed ones replaced.
// The cursor is forgotten now, in the database (waiting, until ctx ends, for a sync of the
// collection in progress to finish), and a pass starts at once if Run is running; the snapshot
// is read by that pass, or by the first after a restart.
func (s *Syncer) Resnapshot(ctx context.Context, collection string) error {
	release, err := s.hold(ctx, collection)
	if err != nil {
		return err
	}
	defer release()
	if err := s.db.ResetCursor(ctx, collection); err != nil {
		return err
	}
	s.log.Info("feed: collection to be read again from a snapshot, as asked", slog.String(keyCollection, collection))
	s.Poke()
	return nil
}

// hold takes the collection's token, waiting until ctx ends.
func (s *Syncer) hold(ctx context.Context, collection string) (release func(), err error) {
	busy, ok := s.busy[collection]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownCollection, collection)
	}
	select {
	case busy <- struct{}{}:
		return func() { <-busy }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("feed: %s is being synced: %w", collection, ctx.Err())
	}
}

// syncCollection streams a collection's feed from its stored cursor until the cloud says it is
// caught up.
func (s *Syncer) syncCollection(ctx context.Context, collection string) error {
	release, err := s.hold(ctx, collection)
	if err != nil {
		return err
	}
	defer release()
	// The cursors this pass has started from or been given, to tell a feed that leads back to
	// one: it would be read round and round, at once, for ever, and the collections after this
	// one never synced.
	var seen *passCursors
	resnapshots := 0
	for {
		st, _ := s.db.FeedState(collection)
		if seen == nil {
			seen = &passCursors{seen: map[string]bool{st.Cursor: true}}
		}
		body, err := s.client.Feed(ctx, collection, st.Cursor, s.pageSize, true)
		if errors.Is(err, cloud.ErrCursorExpired) {
			if st.Cursor == "" {
				// The start of the feed has no cursor to forget: starting again would ask the
				// same, at once, for ever. Tried again after the backoff.
				return fmt.Errorf("%w: the cloud answered 410 to the start of the feed, which has no cursor", errPage)
			}
			if resnapshots++; resnapshots > 1 {
				// A second 410 in one pass, to a cursor of the snapshot it sent: each round
				// would read the whole collection again.
				return fmt.Errorf("%w: the cloud answered 410 again, to cursor %q of the snapshot it sent in this pass", errPage, clip.String(st.Cursor, 64))
			}
			s.log.Warn("feed: cursor expired, replacing the collection with a new snapshot", slog.String(keyCollection, collection))
			if err := s.db.ResetCursor(ctx, collection); err != nil {
				return &localError{err}
			}
			seen = nil // a new snapshot, from the empty cursor
			continue
		}
		if err != nil {
			return err
		}
		more, err := s.consume(ctx, collection, st.Cursor, seen, body)
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// passCursors is what a pass over a collection has read: the cursors it started from or was given
// (a feed that leads back to one would be read round and round), and the pages in a row that
// said more without a change.
type passCursors struct {
	seen map[string]bool
	idle int
}

// maxIdlePages is the most pages in a row a pass takes that say more and hold no change.
const maxIdlePages = 100

// consume reads pages from one feed response and applies them in order; reading the next page
// overlaps with applying the previous one. It reports whether the cloud has more to send.
func (s *Syncer) consume(ctx context.Context, collection, cursor string, seen *passCursors, body io.ReadCloser) (more bool, err error) {
	g, gctx := errgroup.WithContext(ctx)
	// A failed apply must also stop a read blocked on the network.
	stop := context.AfterFunc(gctx, func() { body.Close() })
	defer stop()
	defer body.Close()

	pages := make(chan storage.Page, 1)
	g.Go(func() error {
		defer close(pages)
		return readPages(gctx, body, collection, pages)
	})
	var applied, quarantined, npages int
	g.Go(func() error {
		for p := range pages {
			if p.End.More && p.End.Cursor == cursor {
				// "More" that does not move the cursor would be asked for again at once, for
				// ever; it is not applied, so it counts as no progress and the backoff grows.
				return fmt.Errorf("%w: the cloud said more but its feed did not move past cursor %q", errPage, cursor)
			}
			if p.End.More && seen.seen[p.End.Cursor] {
				return fmt.Errorf("%w: the cloud's cursors led back to %q, already read in this pass", errPage, clip.String(p.End.Cursor, 64))
			}
			if p.End.More && len(p.Changes) == 0 && len(p.Malformed) == 0 {
				if seen.idle++; seen.idle > maxIdlePages {
					// New cursors with nothing in their pages, for ever: the pass would never
					// end, holding the collection, and the collections after it never synced.
					return fmt.Errorf("%w: %d pages in a row said more without a change", errPage, seen.idle)
				}
			} else {
				seen.idle = 0
			}
			seen.seen[p.End.Cursor] = true
			res, err := s.db.ApplyPage(gctx, p)
			if err != nil {
				if gctx.Err() != nil {
					return err // the read failed first, or the pass ends: that is the error
				}
				return &localError{err}
			}
			cursor = p.End.Cursor
			more = p.End.More
			if res.Applied > 0 || res.Quarantined > 0 || res.Removed > 0 {
				s.pages.Add(1)
			}
			applied += res.Applied
			quarantined += res.Quarantined
			npages++
			if !p.End.More && res.Removed > 0 {
				s.log.Info("feed: re-snapshot complete, items the cloud no longer has deleted", slog.String(keyCollection, collection),
					slog.Int("deleted", res.Removed))
			}
			if res.KeptUnseen {
				s.log.Warn("feed: re-snapshot complete, but a malformed line of it named no item: the items it did not mention are kept, none deleted; once the cloud mends the line, a re-read (support's resync) deletes those it no longer has",
					slog.String(keyCollection, collection))
			}
			if res.Quarantined > 0 {
				s.log.Warn("feed: malformed lines quarantined", slog.String(keyCollection, collection),
					slog.Int("count", res.Quarantined), slog.String("first_reason", p.Malformed[0].Error()))
			}
		}
		return nil
	})
	err = g.Wait()
	if applied > 0 || quarantined > 0 {
		s.log.Info("feed: pages applied", slog.String(keyCollection, collection), slog.Int("pages", npages),
			slog.Int("applied", applied), slog.Int("quarantined", quarantined), slog.Bool("caught_up", !more && err == nil))
	}
	if err != nil {
		return false, fmt.Errorf("feed: %s: %w", collection, err)
	}
	return more, nil
}

// drainEnd reads the end of a caught-up answer, so that the client can give its connection to
// the next request: at most 4 KiB and a second, then the body is closed (the connection with
// it) rather than read further.
func drainEnd(body io.ReadCloser) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	}()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		body.Close()
		<-done
	}
}

// readPages decodes pages from a feed response and sends each complete page. It returns nil at a
// clean end of the response after an end line; a response without one, empty included, is
// truncated.
func readPages(ctx context.Context, r io.ReadCloser, collection string, out chan<- storage.Page) error {
	dec := cloudapi.NewDecoder(r, collection)
	p := storage.Page{Collection: collection}
	lines, sent, size := 0, 0, 0
	for {
		l, err := dec.Next()
		if errors.Is(err, io.EOF) {
			if lines > 0 || sent == 0 {
				return cloudapi.ErrTruncated
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case l.End != nil:
			if l.End.Count != lines {
				return fmt.Errorf("%w: end line counts %d changes, %d arrived", errPage, l.End.Count, lines)
			}
			p.End = *l.End
			p.FetchedAt = time.Now()
			select {
			case out <- p:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !l.End.More {
				// Caught up: the answer ends here. What a cloud would send after it (end lines
				// for ever, say) is not read, or the pass would never end; its end is, briefly,
				// so that the connection serves the next request.
				drainEnd(r)
				return nil
			}
			p = storage.Page{Collection: collection}
			lines, size = 0, 0
			sent++
			continue
		case l.Change != nil:
			if size += len(l.Change.Doc); size > cloudapi.MaxPageBytes {
				return fmt.Errorf("%w: more than %d MiB of documents before the end line", errPage, cloudapi.MaxPageBytes>>20)
			}
			p.Changes = append(p.Changes, *l.Change)
		case l.Malformed.End:
			return fmt.Errorf("%w: %v", errPage, l.Malformed)
		default:
			p.Malformed = append(p.Malformed, l.Malformed)
		}
		lines++
		if lines%64 == 0 {
			// Decoding a first sync's feed keeps the other processor busy: like the
			// writer's chunks, a request that became runnable gets it every 64 lines.
			runtime.Gosched()
		}
		if lines > cloudapi.MaxPageSize {
			return fmt.Errorf("%w: more than %d changes before the end line", errPage, cloudapi.MaxPageSize)
		}
	}
}
