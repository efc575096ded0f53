// Package outbox uploads what the cloud has to hear (orders and their changes) from the
// persistent outbox, oldest first, in batches with idempotency keys, until the cloud acknowledges
// each entry. While the WAN is down entries wait in the database; nothing is lost and, since the
// cloud stores each key once, nothing is doubled by a retry.
//
// An entry the cloud refuses for good is set aside with the reason (storage.OutboxRejected),
// where an admin can see it and queue it again, so it never blocks the entries behind it.
package outbox

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Uploader is the part of the cloud client the outbox needs.
type Uploader interface {
	// Upload sends a batch and returns what the cloud did with each event. An error means the
	// batch as a whole was not taken: a *cloud.Error (Retryable tells whether sending it again
	// may work), cloud.ErrUnauthorized, or a transport error (retryable).
	Upload(ctx context.Context, events []cloudapi.Event) (cloudapi.UploadResponse, error)
}

var _ Uploader = (*cloud.Client)(nil)

// Options configure a Worker.
type Options struct {
	DB         *storage.DB
	Cloud      Uploader
	Batch      int           // events per upload, 1..500; 0: config.DefaultOrdersOutboxBatch
	MinBackoff time.Duration // default 1s
	MaxBackoff time.Duration // default 5m
	// KeepSent is how long an entry the cloud acknowledged stays in the outbox (default
	// KeepSent); entries older are deleted every PruneEvery (default an hour) while Run runs.
	KeepSent   time.Duration
	PruneEvery time.Duration
	Logger     *slog.Logger
}

// KeepSent is how long an entry the cloud acknowledged stays in the outbox by default: a week, as
// the finished push commands (docs/operations.md).
const KeepSent = 7 * 24 * time.Hour

// Worker drains the outbox.
type Worker struct {
	o         Options
	log       *slog.Logger
	attempted func(error)        // tests observe each drain
	pruned    func(int64, error) // and each prune
	// fits is the batch size the cloud's answers fit in during a Drain, once one was too large
	// (0: Options.Batch); split says a batch is being halved for it, until an answer comes.
	// Only Drain's goroutine uses them.
	fits  int
	split bool
	// failedAlone holds the keys of the entries the cloud failed on alone (a 5xx), until one is
	// settled: failing again, such an entry says nothing of the cloud being down (oneByOne).
	// Each key's value is when it was last sent alone (a count of the sends alone, sentAlone),
	// so that those sent longest ago go first. Only Drain's goroutine uses them.
	failedAlone map[string]int64
	sentAlone   int64
	// answerGood says the platform's last answer to an upload was good (read, and 2xx): false
	// until one is, since start, and after any failure (a 5xx, a 4xx, no answer, one too large,
	// a malformed one). malformedAlone counts how many times each entry sent alone was answered
	// malformed (cloud.ErrMalformedAnswer), until it is settled: an entry answered so while the
	// platform's answer before was good is set aside (the answer is about it), and so is one
	// answered so malformedTries times. Right after a start nothing says the platform answers
	// well: a malformed answer then may be its fault for every event. uploadedWell says the last
	// call of upload had such an answer (false when it sent nothing: an event set aside unsent):
	// an event sent alone so "goes through" (oneByOne).
	answerGood, uploadedWell bool
	malformedAlone           map[string]int

	mu        sync.Mutex // protects the fields below
	lastError string
	lastOK    time.Time
}

// New returns a Worker; it does nothing until Run.
func New(o Options) *Worker {
	if o.Batch <= 0 || o.Batch > 500 {
		o.Batch = config.DefaultOrdersOutboxBatch
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.KeepSent <= 0 {
		o.KeepSent = KeepSent
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{o: o, log: o.Logger}
}

// State is what status shows of the upload: why it fails while it does, and when a batch last
// got through.
type State struct {
	LastError   string     `json:"last_error,omitempty"`
	LastSuccess *time.Time `json:"last_success"` // null: nothing uploaded since start
}

// State returns the last upload's outcome.
func (w *Worker) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := State{LastError: w.lastError}
	if !w.lastOK.IsZero() {
		t := w.lastOK.UTC()
		st.LastSuccess = &t
	}
	return st
}

// Run uploads until ctx ends, sleeping while the outbox is empty and backing off while the cloud
// cannot take the entries. It deletes the entries acknowledged more than KeepSent ago at start and
// every PruneEvery.
func (w *Worker) Run(ctx context.Context) error {
	var pruning sync.WaitGroup
	defer pruning.Wait() // Run ends with ctx, and so does the pruning
	pruning.Go(func() { w.pruneEvery(ctx) })
	b := backoff.New(w.o.MinBackoff, w.o.MaxBackoff)
	for {
		changed := w.o.DB.OutboxChanged() // before reading, so no wake-up is missed
		n, err := w.Drain(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n > 0 || err == nil {
			// Entries got through: a flaky cloud is retried promptly; the delay only grows while
			// nothing does. A cloud that sheds load says how long to wait (Retry-After, a floor).
			b.Reset()
		}
		var wait time.Duration
		if err != nil {
			wait = b.Next(cloud.RetryAfter(err))
			w.fail(err, wait)
		}
		if w.attempted != nil {
			w.attempted(err) // once the state says what the drain did
		}
		if err != nil {
			if err := backoff.Sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// pruneEvery deletes the acknowledged entries older than KeepSent, now and every PruneEvery, until
// ctx ends: the outbox holds what the cloud still has to hear, and a shop that imports stock files
// daily would otherwise keep millions of rows it never reads again.
func (w *Worker) pruneEvery(ctx context.Context) {
	t := time.NewTicker(w.o.PruneEvery)
	defer t.Stop()
	for {
		n, err := w.o.DB.PruneOutbox(ctx, time.Now().Add(-w.o.KeepSent))
		switch {
		case err != nil && ctx.Err() == nil:
			w.log.Warn("outbox: cannot delete the entries acknowledged long ago; will retry", slog.Any("error", err))
		case n > 0:
			w.log.Debug("outbox: entries acknowledged long ago deleted", slog.Int64("count", n))
		}
		if w.pruned != nil && ctx.Err() == nil {
			w.pruned(n, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// failed records a failed attempt at sending the entries of keys; they stay pending.
func (w *Worker) failed(ctx context.Context, keys []string, err error) {
	if ferr := w.o.DB.FailOutbox(ctx, keys, err.Error()); ferr != nil && ctx.Err() == nil {
		w.log.Error("outbox: cannot record the failed attempt", slog.Any("error", ferr))
	}
}

// serverFault reports whether err is the cloud's answer that it failed on the batch (a 5xx but
// 503, which says it is unavailable or overloaded): perhaps on one of its events only.
func serverFault(err error) bool {
	var ce *cloud.Error
	return errors.As(err, &ce) && ce.Status >= 500 && ce.Status <= 599 && ce.Status != http.StatusServiceUnavailable ||
		errors.Is(err, cloud.ErrMalformedAnswer) // the platform failing on it, unless the others go (oneByOne)
}

// oneByOne sends the entries of a batch the cloud refused or failed on again one at a time, in
// order, and returns how many it settled. An order's events go in the order they happened: once
// one of them is not delivered (refused, and its later ones held back beside it; failed on, or
// left out of the answer, and still queued), its later events in this batch wait too, whatever
// becomes of them meanwhile (an admin's retry puts a refused one back in the queue before them).
// An entry the cloud fails on alone (5xx) stays queued, and the others go on; a second one in a
// row, or any other failure, ends the attempt: the cloud is down, not failing on one event. An
// entry it failed on alone before does not count in the row (two such entries side by side, at
// the head of the queue once the others went, would otherwise end every attempt). Until an entry
// goes through in the attempt, only retriedAlone of those are sent alone again, the ones sent
// alone longest ago (so that each gets its turn, over the attempts); the others wait, as failed
// on. A cloud down for long, its list of such entries grown one an attempt, so gets a bounded
// number of requests; once one entry went through, the cloud is up, and those after it go. An
// entry answered malformed alone is set aside once another goes through (the answer is about
// it), and stays queued as the platform failing otherwise. The error
// then is the last failure, as it is when the batch ends with entries failed on.
func (w *Worker) oneByOne(ctx context.Context, entries []storage.OutboxEntry) (int, error) {
	n := 0
	blocked := map[string]bool{}
	var failedOn error // the last failure of an entry alone
	inARow, through := 0, false
	var malformed []malformedAnswer // entries answered malformed alone, until one goes through
	retryNow := w.retryTurns(entries)
	for i := range entries {
		e := entries[i]
		if e.OrderID != "" {
			state, err := w.o.DB.OutboxState(ctx, e.Key)
			if err != nil {
				return n, fmt.Errorf("outbox: %w", err)
			}
			if state != storage.OutboxPending { // held back beside a refused event
				n++
				continue
			}
			if blocked[e.OrderID] { // still queued, behind one of its order
				continue
			}
		}
		_, known := w.failedAlone[e.Key]
		if known && !through && !retryNow[e.Key] {
			if e.OrderID != "" {
				blocked[e.OrderID] = true // still queued: its order's later events wait
			}
			continue
		}
		m, err := w.upload(ctx, entries[i:i+1])
		n += m
		w.sentAlone++
		answeredWell := true
		if errors.Is(err, errSetAsideMalformed) {
			// Settled, but not counted: the platform did not answer well, and Run backs off as
			// while nothing goes through (a platform answering everything malformed would
			// otherwise have the queue set aside at the pace of the shortest wait).
			err, answeredWell, n = nil, false, n-m
		}
		if errors.Is(err, cloud.ErrMalformedAnswer) {
			// About this event (a refusal whose reason is of another type, say) if the platform
			// answers the others, as it may have done already or may do later in the attempt;
			// about every answer (a bug of the platform) if not, and then the attempt ends.
			malformed = append(malformed, malformedAnswer{e.Key, err})
			if through {
				if err := w.setAsideMalformed(ctx, &malformed); err != nil {
					return n, err
				}
				n++
				err = nil
			}
		}
		switch {
		case err != nil && serverFault(err) && known:
			w.failedAlone[e.Key] = w.sentAlone
			failedOn = fault(failedOn, err)
		case err != nil && serverFault(err) && inARow == 0:
			if w.failedAlone == nil {
				w.failedAlone = map[string]int64{}
			}
			w.failedAlone[e.Key] = w.sentAlone
			failedOn, inARow = fault(failedOn, err), 1
		case err != nil:
			return n, err
		case !answeredWell || !w.uploadedWell:
			// Settled, but the platform's answer was not good (set aside on a 4xx or an answer
			// too large, or unsent): nothing gone through.
			inARow = 0
		default:
			inARow, through = 0, true
			k := len(malformed)
			if err := w.setAsideMalformed(ctx, &malformed); err != nil {
				return n, err
			}
			n += k
		}
		if e.OrderID != "" {
			state, err := w.o.DB.OutboxState(ctx, e.Key)
			if err != nil {
				return n, fmt.Errorf("outbox: %w", err)
			}
			if state != storage.OutboxSent {
				blocked[e.OrderID] = true
			}
		}
	}
	if failedOn == nil && len(malformed) > 0 {
		failedOn = malformed[len(malformed)-1].err
	}
	return n, failedOn
}

// fault is the failure an attempt reports: err, but a malformed answer's (kept apart, and
// reported only when nothing else failed and it was not set aside).
func fault(last, err error) error {
	if errors.Is(err, cloud.ErrMalformedAnswer) {
		return last
	}
	return err
}

// malformedAnswer is an entry whose answer, sent alone, was not an upload answer.
type malformedAnswer struct {
	key string
	err error
}

// setAsideMalformed sets aside the entries of *ms, answered malformed alone while the platform
// answered another of the attempt: the answers are about those events. Kept queued, each would
// be sent alone at every attempt, its order held; set aside, the admin may send it again (its
// duplicate then settles it).
func (w *Worker) setAsideMalformed(ctx context.Context, ms *[]malformedAnswer) error {
	for _, m := range *ms {
		if err := w.setAside(ctx, m.key, "the cloud's answer about it could not be read ("+m.err.Error()+"); it may have stored it"); err != nil {
			return err
		}
	}
	*ms = nil
	return nil
}

// retriedAlone is how many entries the cloud failed on alone before an attempt sends alone
// again until one goes through: it bounds the requests an attempt makes to a cloud that is down.
const retriedAlone = 2

// retryTurns picks, among entries, the retriedAlone that the cloud failed on alone and that were
// sent alone longest ago.
func (w *Worker) retryTurns(entries []storage.OutboxEntry) map[string]bool {
	var known []string
	for _, e := range entries {
		if _, ok := w.failedAlone[e.Key]; ok {
			known = append(known, e.Key)
		}
	}
	slices.SortStableFunc(known, func(a, b string) int { return cmp.Compare(w.failedAlone[a], w.failedAlone[b]) })
	turns := map[string]bool{}
	for _, k := range known[:min(len(known), retriedAlone)] {
		turns[k] = true
	}
	return turns
}

// uploadsWork records an answer of the cloud that settled entries (delivered or refused): no
// error left, and the time of the last success.
func (w *Worker) uploadsWork() {
	w.mu.Lock()
	w.lastError, w.lastOK = "", time.Now()
	w.mu.Unlock()
}

func (w *Worker) fail(err error, wait time.Duration) {
	w.mu.Lock()
	repeated := w.lastError == err.Error()
	w.lastError = err.Error()
	w.mu.Unlock()
	if !repeated {
		w.log.Warn("outbox: upload failed, entries stay queued", slog.Any("error", err), slog.Duration("retry_in", wait))
	}
}

// Drain uploads pending entries until none is left or an upload fails, and returns how many
// entries it settled (delivered or rejected).
func (w *Worker) Drain(ctx context.Context) (int, error) {
	settled := 0
	w.fits, w.split = 0, false // each drain tries whole batches first
	for {
		limit := w.o.Batch
		if w.fits > 0 {
			limit = w.fits
		}
		entries, err := w.o.DB.PendingOutbox(ctx, limit)
		if err != nil || len(entries) == 0 {
			return settled, err
		}
		n, err := w.upload(ctx, entries[:fitBytes(entries, MaxBatchBytes)])
		if errors.Is(err, errSetAsideMalformed) {
			n, err = n-1, nil // not counted, as in oneByOne
		}
		settled += n
		if err != nil {
			return settled, err
		}
	}
}

// MaxBatchBytes is the most an upload batch may weigh (docs/cloud-api.md): the entries that
// would take a batch over it wait for the next one.
const MaxBatchBytes = 4 << 20

// maxReasonBytes bounds the reason kept (and logged) for an entry the cloud refused: the answer
// is outside input.
const maxReasonBytes = 1000

// fitBytes returns how many of entries, from the first, fit in a batch of at most limit bytes as
// the client encodes it; at least one.
func fitBytes(entries []storage.OutboxEntry, limit int) int {
	total := len(`{"events":[]}`)
	for i, e := range entries {
		b, err := json.Marshal(event(e))
		if err != nil {
			return max(i, 1) // the client will say what is wrong with it
		}
		total += len(b) + 1 // and a comma
		if total > limit && i > 0 {
			return i
		}
	}
	return len(entries)
}

// event is the upload form of an outbox entry.
func event(e storage.OutboxEntry) cloudapi.Event {
	return cloudapi.Event{Key: e.Key, Type: e.Type, At: e.At.UTC().Format(time.RFC3339Nano), Data: e.Data}
}

// unsendableReason is the reason kept for an entry whose stored event is not JSON.
const unsendableReason = "storeedge: the stored event is not valid JSON (a damaged database); it cannot be sent"

// setAsideUnsendable sets aside, as rejected, the entries whose stored event cannot be encoded:
// retried, such an entry would hold back every upload for good. It reports done when it set
// any aside; the caller reads the queue again then, since the later events of those entries'
// orders are set aside with them.
func (w *Worker) setAsideUnsendable(ctx context.Context, entries []storage.OutboxEntry) (int, bool, error) {
	res := storage.OutboxResult{Rejected: map[string]string{}}
	for _, e := range entries {
		if !json.Valid(e.Data) {
			res.Rejected[e.Key] = unsendableReason
			w.log.Error("outbox: a stored event is damaged; set aside as rejected", slog.String("key", e.Key), slog.Int64("seq", e.Seq))
		}
	}
	if len(res.Rejected) == 0 {
		return 0, false, nil
	}
	return len(res.Rejected), true, w.o.DB.CompleteOutbox(ctx, res)
}

// answered notes that a batch of n entries got an answer: while a batch is halved for an answer
// too large, that is the size the rest of the drain uses.
func (w *Worker) answered(n int) {
	if w.split {
		w.fits, w.split = n, false
	}
}

// errSetAsideMalformed says upload set its one entry aside for an answer it could not read: the
// entry is settled, but the answer says nothing of the platform answering well, and it is not
// counted among those settled (Drain, oneByOne), so that Run backs off.
var errSetAsideMalformed = errors.New("set aside: its answer could not be read")

// malformedTries is how many malformed answers to an entry sent alone set it aside, the
// platform's answers to the others malformed too.
const malformedTries = 3

// setAside records one entry as refused for good, with its reason (clipped) in the log.
func (w *Worker) setAside(ctx context.Context, key, reason string) error {
	delete(w.failedAlone, key)
	delete(w.malformedAlone, key)
	reason = clip.String(reason, maxReasonBytes)
	w.log.Warn("outbox: the cloud refused an entry; set aside", slog.String("key", key), slog.String("reason", reason))
	return w.o.DB.CompleteOutbox(ctx, storage.OutboxResult{Rejected: map[string]string{key: reason}})
}

// upload sends one batch and records the answer. A batch the cloud refuses as a whole for good
// (4xx), or fails on (a 5xx but 503), is sent again one entry at a time, so that only the entry
// at fault is set aside (4xx) or left queued (5xx), and the others go.
func (w *Worker) upload(ctx context.Context, entries []storage.OutboxEntry) (int, error) {
	w.uploadedWell = false
	if n, done, err := w.setAsideUnsendable(ctx, entries); done {
		return n, err
	}
	events := make([]cloudapi.Event, len(entries))
	keys := make([]string, len(entries))
	for i, e := range entries {
		events[i] = event(e)
		keys[i] = e.Key
	}
	resp, err := w.o.Cloud.Upload(ctx, events)
	wasGood := w.answerGood
	w.answerGood, w.uploadedWell = err == nil, err == nil
	if err != nil {
		var ce *cloud.Error
		if errors.As(err, &ce) && !ce.Retryable() {
			w.answered(len(entries)) // refusing it: this size gets an answer
			if len(entries) == 1 {
				if err := w.setAside(ctx, keys[0], ce.Error()); err != nil {
					return 1, err
				}
				w.uploadsWork() // the cloud answered, refusing one event: upload_refused tells
				return 1, nil
			}
			return w.oneByOne(ctx, entries)
		}
		if len(entries) > 1 && serverFault(err) {
			w.answered(len(entries)) // the fault is not the size: a split goes on at this one
			w.failed(ctx, keys, err)
			return w.oneByOne(ctx, entries)
		}
		if errors.Is(err, cloud.ErrMalformedAnswer) { // one entry: a batch went one by one above
			w.answered(len(entries))
			if slices.Contains(resp.Accepted, keys[0]) || slices.Contains(resp.Duplicate, keys[0]) {
				// What could be read of it says the platform has it.
				delete(w.failedAlone, keys[0])
				delete(w.malformedAlone, keys[0])
				return 1, w.o.DB.CompleteOutbox(ctx, storage.OutboxResult{Delivered: keys})
			}
			// About this event if the platform's answer before was good, or if it keeps
			// answering so about it: set aside, where the admin may send it again (its duplicate
			// then settles it); kept queued, it would hold its order, or the queue (sent alone
			// from its head). Otherwise perhaps a bug of the platform about every answer: kept
			// queued, oneByOne sets it aside once another event of the attempt goes through.
			if w.malformedAlone == nil {
				w.malformedAlone = map[string]int{}
			}
			if w.malformedAlone[keys[0]]++; wasGood || w.malformedAlone[keys[0]] >= malformedTries {
				if err := w.setAside(ctx, keys[0], "the cloud's answer about it could not be read ("+err.Error()+"); it may have stored it"); err != nil {
					return 1, err
				}
				return 1, errSetAsideMalformed
			}
			w.failed(ctx, keys, err)
			return 0, fmt.Errorf("outbox: upload 1 entry: %w", err)
		}

		if errors.Is(err, cloud.ErrAnswerTooLarge) {
			if len(entries) > 1 {
				// The cloud may have stored them; a smaller batch gets an answer that fits, and
				// the events it already has come back as duplicates. Only the first half goes:
				// what its answer settles may hold back later events of the second (Drain reads
				// the queue again, in batches of the size that gets an answer for the rest of the
				// drain).
				w.split = true
				return w.upload(ctx, entries[:len(entries)/2])
			}
			w.fits, w.split = 0, false // one event: no size was learnt, the next batch goes whole
			// One event whose answer alone is too large: the cloud's fault, and retried it
			// would hold back every upload after it.
			reason := "the cloud's answer about it is larger than the limit (" + err.Error() + "); it may have stored it"
			w.mu.Lock()
			w.lastError = "outbox: an event set aside: " + reason
			w.mu.Unlock()
			return 1, w.setAside(ctx, keys[0], reason)
		}
		w.failed(ctx, keys, err)
		return 0, fmt.Errorf("outbox: upload %d entries: %w", len(entries), err)
	}
	w.answered(len(entries))
	res, rejected, stray := settle(keys, resp)
	for _, k := range rejected {
		w.log.Warn("outbox: the cloud refused an entry; set aside", slog.String("key", k), slog.String("reason", res.Rejected[k]))
	}
	if stray > 0 {
		w.log.Warn("outbox: the cloud's answer named keys that were not in the batch; ignored", slog.Int("keys", stray))
	}
	if err := w.o.DB.CompleteOutbox(ctx, res); err != nil {
		return 0, err
	}
	for _, k := range res.Delivered {
		delete(w.failedAlone, k)
		delete(w.malformedAlone, k)
	}
	for k := range res.Rejected {
		delete(w.failedAlone, k)
		delete(w.malformedAlone, k)
	}
	answered := len(res.Delivered) + len(res.Rejected)
	if answered > 0 {
		w.uploadsWork() // the cloud settled entries, whatever it said about each one
	}
	if answered < len(entries) {
		// The cloud did not mention some keys: they stay pending and go again with the next batch.
		w.log.Warn("outbox: the cloud's answer left entries out; they will be sent again", slog.Int("missing", len(entries)-answered))
	}
	if answered == 0 {
		return 0, fmt.Errorf("outbox: the cloud answered about none of %d entries", len(entries))
	}
	return answered, nil
}

// settle reads the cloud's answer about the batch of keys: each key of the batch is settled at
// most once, by the first place the answer names it (accepted or duplicate: delivered; rejected:
// set aside with its reason, clipped). A key the answer names that was not sent (an entry still
// queued, or one the cloud confused with another) stays as it is and counts in stray. rejected
// are the keys set aside, in the answer's order.
func settle(keys []string, resp cloudapi.UploadResponse) (res storage.OutboxResult, rejected []string, stray int) {
	sent := make(map[string]bool, len(keys))
	for _, k := range keys {
		sent[k] = true
	}
	take := func(k string) bool { // once each
		if !sent[k] {
			stray++
			return false
		}
		delete(sent, k)
		return true
	}
	res.Rejected = map[string]string{}
	for _, list := range [][]string{resp.Accepted, resp.Duplicate} {
		for _, k := range list {
			if take(k) {
				res.Delivered = append(res.Delivered, k)
			}
		}
	}
	for _, r := range resp.Rejected {
		if take(r.Key) {
			res.Rejected[r.Key] = clip.String(r.Reason, maxReasonBytes)
			rejected = append(rejected, r.Key)
		}
	}
	return res, rejected, stray
}
