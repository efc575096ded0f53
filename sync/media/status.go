package media

import (
	"context"
	"log/slog"
	"time"

	"github.com/storeedge/storeedge/storage"
)

// progress follows one prefetch run: from when there is work until the queue is empty. Its
// files and bytes count from the last second the fetcher was idle.
type progress struct {
	active       bool
	since        time.Time
	files        int64 // files stored since start
	filesAtStart int64
	bytesAtStart int64
	lastLog      time.Time
	told         bool                  // a progress line was logged during this run
	samples      [rateWindow + 1]int64 // bytes received, one a second, newest last
	nsamples     int
}

// rateWindow is the number of seconds the fetch rate is averaged over.
const rateWindow = 10

// sample records the bytes received so far, once a second.
func (p *progress) sample(received int64) {
	if p.nsamples < len(p.samples) {
		p.nsamples++
	}
	copy(p.samples[:], p.samples[1:])
	p.samples[len(p.samples)-1] = received
}

// rate is the bytes per second over the last rateWindow seconds.
func (p *progress) rate() float64 {
	if p.nsamples < 2 {
		return 0
	}
	n := p.nsamples - 1
	last := p.samples[len(p.samples)-1]
	first := p.samples[len(p.samples)-1-n]
	return float64(last-first) / float64(n)
}

// counted adds downloaded bytes.
func (f *Fetcher) counted(n int64) { f.received.Add(n) }

// housekeep samples the rate, logs the progress of a prefetch and records when files were
// served, until ctx ends.
func (f *Fetcher) housekeep(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	flush := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		f.tick(ctx)
		if time.Since(flush) >= servedFlush {
			f.flushServed(ctx)
			flush = time.Now()
		}
	}
}

// servedFlush is how often the times files were served are written to the index.
const servedFlush = 5 * time.Second

// tick is one second of housekeeping.
func (f *Fetcher) tick(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	p := &f.prog
	received := f.received.Load()
	p.sample(received)
	pending, left, waiting := f.countsLocked()
	// Items waiting to be tried again after a failure (a quarantined blob, a quota too small)
	// keep no prefetch running: it is done when only they are left.
	fetching := pending - waiting[storage.MediaFailed] - waiting[storage.MediaQuarantined] - waiting[storage.MediaNoSpace]
	switch {
	case !f.started:
		return
	case !p.active && fetching > 0:
		// Counted from the last idle second (or the end of the run before): a file stored
		// before this tick is the run's.
		p.active, p.since, p.lastLog, p.told = true, now, now, false
	case !p.active:
		p.filesAtStart, p.bytesAtStart = p.files, received
	case p.active && fetching <= 0:
		// A run that stored nothing and logged no progress (a failed item tried again, failing
		// again) is not worth a line: its failure has its own.
		if !p.since.IsZero() && (p.files > p.filesAtStart || p.told) {
			f.log.LogAttrs(ctx, slog.LevelInfo, "media: prefetch done", slog.Int64(keyFiles, p.files-p.filesAtStart),
				slog.Int64(keyBytes, received-p.bytesAtStart), slog.Duration("took", now.Sub(p.since).Round(time.Second)))
		}
		p.active, p.filesAtStart, p.bytesAtStart = false, p.files, received
	case p.active && p.since.IsZero():
		p.since, p.bytesAtStart, p.lastLog = now, received, now
	case p.active && now.Sub(p.lastLog) >= f.o.ProgressInterval:
		p.lastLog, p.told = now, true
		done := p.files - p.filesAtStart
		attrs := []slog.Attr{slog.Int64(keyFiles, done), slog.Int64(keyOf, done+int64(pending)),
			slog.Int64(keyBytes, received-p.bytesAtStart), slog.Int64(keyTotal, received-p.bytesAtStart+left),
			slog.Int64(keyRate, int64(p.rate()))}
		if eta := eta(left, p.rate()); eta > 0 {
			attrs = append(attrs, slog.Duration(keyETA, eta))
		}
		f.log.LogAttrs(ctx, slog.LevelInfo, "media: prefetch progress", attrs...)
	}
}

func eta(left int64, rate float64) time.Duration {
	if rate <= 0 || left <= 0 {
		return 0
	}
	return (time.Duration(float64(left)/rate) * time.Second).Round(time.Second)
}

// Status is the media section of the status page.
type Status struct {
	// State of Blob storage: ok, unreachable, unauthorized, not_configured, starting, disabled.
	State       string     `json:"state"`
	Source      string     `json:"source"` // where the container comes from
	LastContact *time.Time `json:"last_contact"`
	LastError   string     `json:"last_error"`

	Files      int64 `json:"files"`       // cached and verified
	Bytes      int64 `json:"bytes"`       // their size
	QuotaBytes int64 `json:"quota_bytes"` // media.cache_max_bytes

	Pending        int   `json:"pending"`        // items still to fetch
	PendingBytes   int64 `json:"pending_bytes"`  // bytes still to fetch
	WaitingWindow  int   `json:"waiting_window"` // large files waiting for media.large_file_window
	WaitingSpace   int64 `json:"waiting_space"`  // items waiting for room in the cache
	Failed         int64 `json:"failed"`         // items whose blob could not be read, retried
	Quarantined    int64 `json:"quarantined"`    // items whose blob does not match its manifest
	RateBytes      int64 `json:"rate_bytes_per_second"`
	ReceivedBytes  int64 `json:"received_bytes"` // downloaded since start, all attempts
	BandwidthCap   int64 `json:"bandwidth_cap"`  // bytes per second, 0: none
	ETASeconds     int64 `json:"eta_seconds"`    // time left at the current rate, 0 when unknown
	PrefetchActive bool  `json:"prefetch_active"`

	// Problems lists the items that failed or are quarantined, newest first, with the reasons.
	Problems []storage.MediaFailure `json:"problems"`
}

// statusProblems is how many failed items the status lists.
const statusProblems = 20

// Status reports the cache and the fetching.
func (f *Fetcher) Status(ctx context.Context) (Status, error) {
	files, bytes, err := f.o.DB.MediaUsage(ctx)
	if err != nil {
		return Status{}, err
	}
	counts, problems, err := f.o.DB.MediaFailureSummary(ctx, statusProblems)
	if err != nil {
		return Status{}, err
	}
	if problems == nil {
		problems = []storage.MediaFailure{}
	}
	st := Status{Source: f.o.Describe, Files: files, Bytes: bytes, QuotaBytes: f.o.MaxBytes, BandwidthCap: f.o.Bandwidth,
		Failed: counts[storage.MediaFailed], Quarantined: counts[storage.MediaQuarantined], WaitingSpace: counts[storage.MediaNoSpace],
		Problems: problems}
	f.mu.Lock()
	defer f.mu.Unlock()
	st.State, st.LastError = f.blob.state, f.blob.lastError
	if !f.blob.lastContact.IsZero() {
		t := f.blob.lastContact.UTC()
		st.LastContact = &t
	}
	var waiting map[string]int
	st.Pending, st.PendingBytes, waiting = f.countsLocked()
	st.WaitingWindow = waiting[whyWindow]
	st.RateBytes = int64(f.prog.rate())
	st.ReceivedBytes = f.received.Load()
	st.ETASeconds = int64(eta(st.PendingBytes, f.prog.rate()) / time.Second)
	st.PrefetchActive = f.prog.active
	return st, nil
}
