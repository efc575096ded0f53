package logship

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
)

// Defaults of the Options that are not configuration keys.
const (
	DefaultQueueSize      = 4096 // records between the Handler and the writer
	DefaultRequestTimeout = 30 * time.Second
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	maxBatchBytes         = 4 << 20 // uncompressed JSON per request
)

// Options configure a Shipper. Dir, URL, APIKey, BufferBytes, BatchSize, BatchInterval and
// Client are required.
type Options struct {
	Dir           string     // the disk buffer's folder (data_dir/logship)
	URL           string     // logs.ship.url
	APIKey        string     // logs.ship.api_key
	Level         slog.Level // least severe level shipped
	BufferBytes   int64      // logs.ship.buffer_mb, in bytes
	BatchSize     int
	BatchInterval time.Duration
	// Client reaches the intake: the WAN dialer's, so through wan.proxy.
	Client *http.Client
	// Route says how the intake is reached ("http-connect via proxy.lan:3128"), for status.
	Route string
	// Secrets are removed from every record (config.Config.SecretValues, APIKey included).
	Secrets []string
	Meta    Meta
	// UserAgent is sent with every request.
	UserAgent string
	// Logger takes the shipper's own messages; they are not shipped. nil: discarded.
	Logger *slog.Logger

	// QueueSize, RequestTimeout, MinBackoff and MaxBackoff default to the Default* constants.
	QueueSize      int
	RequestTimeout time.Duration
	MinBackoff     time.Duration
	MaxBackoff     time.Duration
}

// The values of Status.State.
const (
	StateStarting = "starting" // nothing sent since the start
	StateOK       = "ok"       // the last batch was accepted
	StateRetrying = "retrying" // the intake cannot be reached or is busy; records wait on disk
	StateRefused  = "refused"  // the intake refuses the key or the address; records wait on disk
)

// Status is what GET /api/v1/status shows under logs_shipping (docs/openapi.yaml).
type Status struct {
	State       string     `json:"state"`
	Intake      string     `json:"intake"` // host:port
	Route       string     `json:"route"`
	Shipped     uint64     `json:"shipped"`  // records the intake accepted since the start
	Buffered    uint64     `json:"buffered"` // records on disk waiting to be sent
	BufferBytes int64      `json:"buffer_bytes"`
	Dropped     uint64     `json:"dropped"`  // since the start: buffer or queue full, or damaged on disk
	Rejected    uint64     `json:"rejected"` // since the start: refused for good by the intake (400, 422)
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error,omitempty"`
}

// Shipper ships log records. Open starts its writer goroutine (queue → disk); Run is the
// sender (disk → intake); Close stops the writer after it has written what is queued.
type Shipper struct {
	o      Options
	spool  *spool
	client *client
	redact *Redactor
	queue  chan entry
	wake   chan struct{} // a batch is ready
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool

	// queueDropped counts the records the queue had no room for, the disk refused, or the disk
	// damaged (lines read back unreadable): each is said in a notice record, as the full
	// buffer's are.
	queueDropped atomic.Uint64
	noticed      atomic.Uint64 // queueDropped as last reported in a record
	shipped      atomic.Uint64
	rejected     atomic.Uint64
	batchLimit   atomic.Int64 // BatchSize, halved by each 413

	mu          sync.Mutex // protects the fields below
	state       string
	lastSuccess time.Time
	lastError   string
}

// Open opens the disk buffer (records a previous run left are sent too) and starts the writer.
func Open(o Options) (*Shipper, error) {
	switch {
	case o.Dir == "", o.URL == "", o.APIKey == "", o.Client == nil:
		return nil, errors.New("logship: Dir, URL, APIKey and Client are required")
	case o.BufferBytes <= 0, o.BatchSize <= 0, o.BatchInterval <= 0:
		return nil, errors.New("logship: BufferBytes, BatchSize and BatchInterval must be positive")
	}
	setDefault(&o.QueueSize, DefaultQueueSize)
	setDefault(&o.RequestTimeout, DefaultRequestTimeout)
	setDefault(&o.MinBackoff, DefaultMinBackoff)
	setDefault(&o.MaxBackoff, DefaultMaxBackoff)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	sp, err := openSpool(o.Dir, o.BufferBytes)
	if err != nil {
		return nil, err
	}
	r := NewRedactor(append([]string{o.APIKey}, o.Secrets...))
	s := &Shipper{
		o: o, spool: sp, redact: r,
		client: &client{http: noRedirects(o.Client), url: o.URL, key: o.APIKey, userAgent: o.UserAgent, timeout: o.RequestTimeout, redact: r},
		queue:  make(chan entry, o.QueueSize),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		state:  StateStarting,
	}
	sp.notice = func(dropped uint64) []byte {
		return encodeLine(nil, dropNotice(dropped, "the disk buffer was full (logs.ship.buffer_mb)"), o.Meta, r)
	}
	if err := sp.noticeOpenDrops(); err != nil {
		// The drops are counted in the status all the same; the next drop's notice says more.
		o.Logger.Warn("logship: cannot write the notice of the records dropped at start", slog.Any("error", err))
	}
	s.batchLimit.Store(int64(o.BatchSize))
	go s.write()
	return s, nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Close stops the writer once it has written every queued record to disk, and closes the
// buffer. Records logged after Close are not shipped.
func (s *Shipper) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	return s.spool.close()
}

// enqueue offers e to the writer without waiting: when the queue is full, e is dropped and
// counted.
func (s *Shipper) enqueue(e entry) {
	if s.closed.Load() {
		return
	}
	select {
	case s.queue <- e:
	default:
		s.queueDropped.Add(1)
	}
}

// writerBatch bounds the records the writer takes from the queue for one write to disk.
const writerBatch = 256

// write is the writer goroutine: it redacts and encodes queued records and appends them to the
// disk buffer, many per write.
func (s *Shipper) write() {
	defer close(s.done)
	batch := make([]entry, 0, writerBatch)
	var buf []byte
	for {
		select {
		case e := <-s.queue:
			batch = append(batch[:0], e)
		case <-s.stop:
			for {
				batch = s.drain(batch[:0])
				if len(batch) == 0 {
					return
				}
				buf = s.store(buf[:0], batch)
			}
		}
		batch = s.drain(batch)
		buf = s.store(buf[:0], batch)
	}
}

// drain adds what is queued to batch, up to writerBatch records.
func (s *Shipper) drain(batch []entry) []entry {
	for len(batch) < writerBatch {
		select {
		case e := <-s.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// store writes batch to the disk buffer, with a record about records dropped since the last
// one, and wakes the sender when a full batch waits.
func (s *Shipper) store(buf []byte, batch []entry) []byte {
	n := uint64(len(batch))
	for _, e := range batch {
		buf = encodeLine(buf, e, s.o.Meta, s.redact)
	}
	var noticed uint64 // the records the notice below counts, when there is one
	prev := s.noticed.Load()
	if q := s.queueDropped.Load(); q > prev {
		noticed = q - prev
		buf = encodeLine(buf, dropNotice(noticed, "the queue to the disk buffer was full, or the disk failed or damaged them"), s.o.Meta, s.redact)
		s.noticed.Store(q)
		n++
	}
	dropped, lost, err := s.spool.appendLines(buf, n, noticed)
	if err != nil {
		if noticed > 0 && lost > 0 { // the notice, last, is among the lines not written: it is no record, and says nothing
			lost--
			s.noticed.Store(prev)
		}
		s.queueDropped.Add(lost) // not on disk: lost, and said so in the next record that is
		if lost > 0 {
			s.o.Logger.Warn("logship: cannot write to the disk buffer; records dropped", slog.Any("error", err), slog.Uint64("records", lost))
		} else { // every record is on disk; the notice of those the full buffer dropped waits for the next
			s.o.Logger.Warn("logship: cannot write the notice of records dropped; the next one will count them", slog.Any("error", err))
		}
	}
	if dropped > 0 {
		s.o.Logger.Warn("logship: the disk buffer is full; the oldest records were dropped", slog.Uint64("records", dropped))
	}
	if st := s.spool.stats(); st.Records >= uint64(s.batchLimit.Load()) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return buf
}

// dropNotice is the record shipped in place of records that were dropped.
func dropNotice(n uint64, why string) entry {
	return entry{time: time.Now(), level: slog.LevelWarn, msg: "logship: records dropped: " + why,
		attrs: []field{{key: "dropped", val: n}}}
}

// Run sends the buffered records until ctx ends, then returns ctx.Err(). Records that wait are
// sent every BatchInterval, or as soon as a full batch waits; after a failure it waits as
// backoff (and the intake's Retry-After) says.
func (s *Shipper) Run(ctx context.Context) error {
	defer s.client.http.CloseIdleConnections() // the connections' goroutines end with Run
	b := backoff.New(s.o.MinBackoff, s.o.MaxBackoff)
	wait, failing := s.o.BatchInterval, false
	timer := time.NewTimer(0) // send what a previous run left at once
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-s.wake:
			if failing {
				continue // the backoff decides when to try again
			}
			timer.Stop()
		}
		wait, failing = s.flush(ctx, b)
		timer.Reset(wait)
	}
}

// flush sends every record waiting, batch after batch. It returns the wait before the next
// flush and whether that wait is a backoff after a failure.
func (s *Shipper) flush(ctx context.Context, b *backoff.Backoff) (time.Duration, bool) {
	for ctx.Err() == nil {
		recs, end, bad, err := s.spool.read(int(s.batchLimit.Load()), maxBatchBytes)
		// Damaged lines count when the read is committed past them: a read released to be sent
		// again reads them again.
		commit := func() error {
			s.queueDropped.Add(bad)
			return s.spool.commit(end)
		}
		if err != nil {
			s.fail(StateRetrying, err.Error())
			return b.Next(0), true
		}
		if len(recs) == 0 {
			if bad > 0 {
				commit()
				continue
			}
			if s.Status().State != StateOK {
				return s.probe(ctx, b)
			}
			return s.o.BatchInterval, false
		}
		a := s.send(ctx, recs)
		if ctx.Err() != nil {
			s.spool.release()
			break
		}
		switch a.outcome {
		case accepted, rejected:
			if err := commit(); err != nil {
				s.o.Logger.Warn("logship: cannot save the position in the disk buffer; records may be sent twice", slog.Any("error", err))
			}
			s.succeed(a, uint64(len(recs)))
			b.Reset()
		case tooLarge:
			if len(recs) == 1 {
				commit()
				s.succeed(answer{outcome: rejected, detail: a.detail}, 1)
				continue
			}
			s.spool.release()
			s.batchLimit.Store(int64(len(recs) / 2))
		default:
			s.spool.release()
			state := StateRetrying
			if a.outcome == refused {
				state = StateRefused
			}
			s.fail(state, a.detail)
			return b.Next(a.retryAfter), true
		}
	}
	return 0, false
}

// probe posts an empty batch, which the intake takes without storing anything, when no record
// waits and the intake has not answered yet or failed last: a quiet server shipping warnings
// only would otherwise say the intake cannot be reached (storeedge_logship_up 0) for as long as
// it logs nothing at that level. It returns what flush does.
func (s *Shipper) probe(ctx context.Context, b *backoff.Backoff) (time.Duration, bool) {
	body, err := encodeBatch(nil)
	if err != nil {
		s.fail(StateRetrying, err.Error())
		return b.Next(0), true
	}
	a := s.client.post(ctx, body, "")
	switch {
	case ctx.Err() != nil:
		return 0, false
	case a.outcome == accepted:
		s.succeed(a, 0)
		b.Reset()
		return s.o.BatchInterval, false
	case a.outcome == rejected || a.outcome == tooLarge:
		// The intake answered and took the key, and refused the empty batch (against its
		// contract): ok, as for a batch refused for good, its answer the last error.
		s.succeed(answer{outcome: rejected, detail: a.detail}, 0)
		b.Reset()
		return s.o.BatchInterval, false
	case a.outcome == refused:
		s.fail(StateRefused, a.detail)
	default:
		s.fail(StateRetrying, a.detail)
	}
	return b.Next(a.retryAfter), true
}

// send posts recs as one batch.
func (s *Shipper) send(ctx context.Context, recs []spooled) answer {
	body, err := encodeBatch(recs)
	if err != nil {
		return answer{outcome: retry, detail: err.Error()}
	}
	id := s.o.Meta.ServerID + ":" + strconv.FormatUint(recs[0].seq, 10) + "-" + strconv.FormatUint(recs[len(recs)-1].seq, 10)
	return s.client.post(ctx, body, id)
}

// succeed records a batch of n records accepted, or refused for good (rejected): either way the
// intake answered and took the key. An empty batch (probe) has n 0.
func (s *Shipper) succeed(a answer, n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != StateOK && s.state != StateStarting {
		s.o.Logger.Info("logship: the intake takes records again")
	}
	if a.outcome == rejected {
		// Refused as malformed: counted, and its answer kept until a batch gets through.
		s.rejected.Add(n)
		s.state, s.lastError = StateOK, a.detail
		if n > 0 {
			s.o.Logger.Warn("logship: the intake refused records for good; they are dropped", slog.Uint64("records", n), slog.String("answer", a.detail))
		}
		return
	}
	s.shipped.Add(n)
	s.state, s.lastError, s.lastSuccess = StateOK, "", time.Now()
}

// fail records a batch that must be sent again, and logs (locally) when the state changes.
func (s *Shipper) fail(state, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != state {
		s.o.Logger.Warn("logship: cannot ship the log; records wait on disk", slog.String("state", state), slog.String("error", detail))
	}
	s.state, s.lastError = state, detail
}

// Status is the state of shipping now; quick and safe for concurrent use.
func (s *Shipper) Status() Status {
	st := s.spool.stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Status{
		State:       s.state,
		Intake:      IntakeAddr(s.o.URL),
		Route:       s.o.Route,
		Shipped:     s.shipped.Load(),
		Buffered:    st.Records,
		BufferBytes: st.Bytes,
		Dropped:     st.Dropped + s.queueDropped.Load(),
		Rejected:    s.rejected.Load(),
		LastError:   s.lastError,
	}
	if !s.lastSuccess.IsZero() {
		t := s.lastSuccess.UTC()
		out.LastSuccess = &t
	}
	return out
}

// IntakeAddr is the host and port of the intake's URL, the port filled in from the scheme
// (what the WAN dialer connects to, and what firewalls and proxies must let through).
func IntakeAddr(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	port := "443"
	if u.Scheme == "http" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}
