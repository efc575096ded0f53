package support

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// Link states reported in status, as for the order link.
const (
	LinkConnecting   = servicebus.LinkConnecting
	LinkConnected    = servicebus.LinkConnected
	LinkDisconnected = servicebus.LinkDisconnected
)

// Results of a request in status, besides the refusal reasons.
const (
	ResultOK        = "ok"        // answered with its result
	ResultError     = "error"     // answered with the error that stopped it
	ResultAbandoned = "abandoned" // not answered: it comes again
)

// DefaultRunTimeout bounds the work of one request (a diagnostics runs every doctor check).
const DefaultRunTimeout = 2 * time.Minute

// statusRecent is how many requests status shows, newest first.
const statusRecent = 20

// Log attribute keys.
const (
	keyMessageID = "message_id"
	keyRequestID = "request_id"
	keyKind      = "kind"
	keyResult    = "result"
	keyReason    = "reason"
	keyError     = "error"
)

// Options configure a Worker.
type Options struct {
	// Connection reaches the support namespace (support.servicebus.connection_string), as
	// every Service Bus link does.
	Connection servicebus.Connection
	Queue      string // the requests arrive here
	ReplyQueue string // the answers go here
	Verifier   Verifier
	// Allowed holds the kinds the shop allows (support.servicebus.allow).
	Allowed map[string]bool
	// DB remembers request ids; the database check and retry-outbox act on it.
	DB      *storage.DB
	Sources Sources
	// Secrets are removed from every answer (config.Config.SecretValues).
	Secrets []string
	// LockRenewInterval is how often a request's lock is renewed while it runs; 0:
	// config.DefaultServiceBusLockRenewInterval.
	LockRenewInterval time.Duration
	// RunTimeout bounds one request's work; 0: DefaultRunTimeout.
	RunTimeout time.Duration
	// MinBackoff and MaxBackoff bound the waits before connecting again after the link failed,
	// and before taking the next request after one was given back unanswered.
	MinBackoff time.Duration // default 1s
	MaxBackoff time.Duration // default 2m
	Logger     *slog.Logger
	Now        func() time.Time // nil: time.Now
}

// Status is what status shows of the support channel.
type Status struct {
	State      string    `json:"state"`
	Queue      string    `json:"queue"`
	ReplyQueue string    `json:"reply_queue"`
	Allowed    []string  `json:"allowed"`
	LastError  string    `json:"last_error,omitempty"`
	Answered   int64     `json:"answered"`
	Refused    int64     `json:"refused"`
	Recent     []Handled `json:"recent"` // newest first
}

// Handled is one request as status shows it.
type Handled struct {
	At        time.Time `json:"at"`
	MessageID string    `json:"message_id"`
	// ID and Kind are the request's, once its signature is verified; a request refused before
	// that shows neither, as nothing it says can be trusted.
	ID     string `json:"id,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Result string `json:"result"` // ok, error, abandoned, or the reason it was refused
	Detail string `json:"detail,omitempty"`
}

// Worker answers support requests.
type Worker struct {
	o   Options
	log *slog.Logger
	red *logship.Redactor

	mu sync.Mutex // protects the field below
	st Status
}

// New returns a Worker; it does nothing until Run.
func New(o Options) *Worker {
	if o.LockRenewInterval <= 0 {
		o.LockRenewInterval = config.DefaultServiceBusLockRenewInterval
	}
	if o.RunTimeout <= 0 {
		o.RunTimeout = DefaultRunTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	allowed := []string{}
	for _, k := range Kinds {
		if o.Allowed[k] {
			allowed = append(allowed, k)
		}
	}
	return &Worker{o: o, log: o.Logger, red: logship.NewRedactor(o.Secrets),
		st: Status{State: LinkConnecting, Queue: o.Queue, ReplyQueue: o.ReplyQueue, Allowed: allowed, Recent: []Handled{}}}
}

func (w *Worker) now() time.Time { return w.o.Now() }

// Status returns the link state, the counters and the recent requests.
func (w *Worker) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.st
	st.Recent = append([]Handled(nil), w.st.Recent...)
	return st
}

func (w *Worker) update(f func(*Status)) {
	w.mu.Lock()
	f(&w.st)
	w.mu.Unlock()
}

// record adds a handled request to status.
func (w *Worker) record(h Handled) {
	w.update(func(s *Status) {
		switch h.Result {
		case ResultOK, ResultError:
			s.Answered++
		case ResultAbandoned:
		default:
			s.Refused++
		}
		s.Recent = append([]Handled{h}, s.Recent[:min(len(s.Recent), statusRecent-1)]...)
	})
}

// Run answers requests until ctx ends, reconnecting with backoff after any failure of the link.
func (w *Worker) Run(ctx context.Context) error {
	return servicebus.Reconnect(ctx, w.o.MinBackoff, w.o.MaxBackoff, w.session, func(err error, wait time.Duration) {
		w.update(func(s *Status) { s.State, s.LastError = LinkDisconnected, err.Error() })
		w.log.Warn("support: link lost, reconnecting", slog.Any(keyError, err), slog.Duration("retry_in", wait))
	}, func() { w.update(func(s *Status) { s.State = LinkConnecting }) })
}

// link is one session's receiver and sender.
type link struct {
	rcv   *azservicebus.Receiver
	snd   *azservicebus.Sender
	limit int // the largest answer body
}

// session connects, then answers requests one at a time until the link fails. It reports
// whether any request was handled.
func (w *Worker) session(ctx context.Context) (progressed bool, err error) {
	client, err := servicebus.NewClient(w.o.Connection)
	if err != nil {
		return false, err
	}
	defer client.Close(context.WithoutCancel(ctx))
	l, err := w.attach(ctx, client)
	if err != nil {
		return false, err
	}
	defer l.rcv.Close(context.WithoutCancel(ctx))
	defer l.snd.Close(context.WithoutCancel(ctx))
	w.update(func(s *Status) { s.State, s.LastError = LinkConnected, "" })
	w.log.Info("support: waiting for requests", slog.String("queue", w.o.Queue), slog.String("reply_queue", w.o.ReplyQueue))
	// A request given back unanswered (the database or the reply queue failing) comes again at
	// once and would likely fail the same way: Service Bus would dead-letter it within
	// milliseconds, its deliveries used up. The next receive waits, longer each time, until a
	// request is answered.
	giveBack := backoff.New(w.o.MinBackoff, w.o.MaxBackoff)
	for {
		// Once stopped, ask for nothing more: a request redelivered after the one just given
		// back may already wait in the link, and asking would take it only to give it back again
		// (one more delivery counted against it). Closing the link releases it untouched.
		if err := ctx.Err(); err != nil {
			return progressed, fmt.Errorf("support: receive: %w", err)
		}
		msgs, err := l.rcv.ReceiveMessages(ctx, 1, nil)
		if err != nil {
			return progressed, fmt.Errorf("support: receive: %w", err)
		}
		for _, m := range msgs {
			if w.handle(ctx, l, m) {
				giveBack.Reset()
				continue
			}
			select {
			case <-ctx.Done():
			case <-time.After(giveBack.Next(0)):
			}
		}
		progressed = progressed || len(msgs) > 0
	}
}

// attach opens both links now, so that status tells the truth on a quiet queue and a reply queue
// that cannot be sent to shows at once: a peek attaches the receive link, a batch the send link.
func (w *Worker) attach(ctx context.Context, client *azservicebus.Client) (link, error) {
	rcv, err := client.NewReceiverForQueue(w.o.Queue, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock})
	if err != nil {
		return link{}, fmt.Errorf("support: open receiver for %q: %w", w.o.Queue, err)
	}
	if err := servicebus.Attach(ctx, rcv, w.o.Queue, 0); err != nil {
		rcv.Close(context.WithoutCancel(ctx))
		return link{}, fmt.Errorf("support: %w", err)
	}
	snd, err := client.NewSender(w.o.ReplyQueue, nil)
	if err == nil {
		// Within the same bound as the receive link's (servicebus.AttachTimeout).
		bctx, cancel := context.WithTimeout(ctx, servicebus.AttachTimeout)
		_, err = snd.NewMessageBatch(bctx, nil)
		cancel()
		if err == nil {
			return link{rcv: rcv, snd: snd, limit: MaxAnswerBytes}, nil
		}
		snd.Close(context.WithoutCancel(ctx))
	}
	rcv.Close(context.WithoutCancel(ctx))
	return link{}, fmt.Errorf("support: attach to reply queue %q: %w", w.o.ReplyQueue, err)
}

// handle takes one request: refused (dead-lettered), answered and completed, or abandoned
// when it could not be answered (then it reports false).
func (w *Worker) handle(ctx context.Context, l link, m *azservicebus.ReceivedMessage) bool {
	h := Handled{At: w.now().UTC(), MessageID: m.MessageID}
	r, err := w.accept(ctx, m)
	var ref *RefusedError
	if errors.As(err, &ref) {
		h.ID, h.Kind = r.ID, r.Kind // empty unless the signature verified
		w.refuse(ctx, l, m, h, ref)
		return true
	}
	if err != nil {
		w.abandon(ctx, l, m, h, err)
		return false
	}
	h.ID, h.Kind = r.ID, r.Kind
	ans := w.answer(ctx, l, m, r)
	if ctx.Err() != nil {
		// Stopped while it ran: its answer would be the stop, not the result. It comes again.
		w.abandon(ctx, l, m, h, context.Cause(ctx))
		return false
	}
	body, err := encodeAnswer(ans, w.red, l.limit)
	if err == nil {
		err = w.send(ctx, l, r, body)
	}
	if err != nil {
		w.abandon(ctx, l, m, h, err)
		return false
	}
	sctx, cancel := settleContext(ctx)
	defer cancel()
	if err := l.rcv.CompleteMessage(sctx, m, nil); err != nil {
		// Answered already: the redelivery is recognised by its sequence number and answered again.
		w.log.Warn("support: request answered but its message not completed; it will be answered again", slog.String(keyRequestID, r.ID), slog.Any(keyError, err))
	}
	h.Result = ResultOK
	if !ans.OK {
		h.Result, h.Detail = ResultError, ans.Error
	}
	w.record(h)
	w.log.Info("support: request answered", slog.String(keyRequestID, r.ID), slog.String(keyKind, r.Kind),
		slog.String(keyResult, h.Result), slog.String(keyMessageID, m.MessageID), slog.Int("bytes", len(body)))
	return true
}

// accept verifies a request, checks that the shop allows its kind, and remembers its id; the
// Request is returned once its signature verified, even when it is then refused.
func (w *Worker) accept(ctx context.Context, m *azservicebus.ReceivedMessage) (Request, error) {
	now := w.now()
	r, err := w.o.Verifier.Decode(m.Body, now)
	if err != nil {
		return r, err
	}
	if !w.o.Allowed[r.Kind] {
		return r, refused(ReasonNotAllowed, "this shop does not allow %s requests (support.servicebus.allow)", r.Kind)
	}
	seq := int64(-1) // without a sequence number, any repeat counts as a replay
	if m.SequenceNumber != nil {
		seq = *m.SequenceNumber
	}
	// Issued, by this server's clock, as early as the clocks' allowed skew makes it: a request
	// from just before a restore is not taken for one from after it.
	state, err := w.o.DB.RememberSupportRequest(ctx, r.ID, r.Kind, seq, r.IssuedAt.Add(-MaxClockSkew), now, r.Remember())
	switch {
	case err != nil:
		return r, err
	case state == storage.SupportRequestReplayed:
		return r, refused(ReasonReplayed, "request %s was taken before, in another message", shown(r.ID))
	case state == storage.SupportRequestBeforeRestore:
		return r, refused(ReasonReplayed, "request %s was issued before this server's database was restored from a backup, or within the 5 minutes of clock skew after it: it may have been taken since the backup; send a new request", shown(r.ID))
	}
	return r, nil
}

// answer runs the request, its message's lock renewed meanwhile, and returns its answer.
func (w *Worker) answer(ctx context.Context, l link, m *azservicebus.ReceivedMessage, r Request) Answer {
	defer servicebus.KeepLock(ctx, l.rcv, m, w.o.LockRenewInterval, w.log)()
	rctx, cancel := context.WithTimeout(ctx, w.o.RunTimeout)
	defer cancel()
	w.log.Info("support: request received", slog.String(keyRequestID, r.ID), slog.String(keyKind, r.Kind), slog.String(keyMessageID, m.MessageID))
	res, err := w.run(rctx, r)
	a := Answer{RequestID: r.ID, Kind: r.Kind, Shop: r.Shop, Server: r.Server, AnsweredAt: w.now().UTC(), OK: err == nil, Result: res}
	if err != nil {
		a.Error = err.Error()
	}
	return a
}

// send puts an answer on the reply queue. Its MessageId is the request's id, so that a
// namespace with duplicate detection keeps one answer per request; CorrelationId says which
// request it answers, as Service Bus's request-reply pattern has it.
func (w *Worker) send(ctx context.Context, l link, r Request, body []byte) error {
	sctx, cancel := settleContext(ctx)
	defer cancel()
	id, kind, ct := r.ID, r.Kind, "application/json"
	err := l.snd.SendMessage(sctx, &azservicebus.Message{MessageID: &id, CorrelationID: &id, Subject: &kind, ContentType: &ct, Body: body,
		ApplicationProperties: map[string]any{"shop": r.Shop, "server": r.Server}}, nil)
	if err != nil {
		return fmt.Errorf("support: send the answer to %q: %w", w.o.ReplyQueue, err)
	}
	return nil
}

// refuse dead-letters a request with its reason.
func (w *Worker) refuse(ctx context.Context, l link, m *azservicebus.ReceivedMessage, h Handled, ref *RefusedError) {
	sctx, cancel := settleContext(ctx)
	defer cancel()
	reason, desc := ref.Reason, ref.Description
	if err := l.rcv.DeadLetterMessage(sctx, m, &azservicebus.DeadLetterOptions{Reason: &reason, ErrorDescription: &desc}); err != nil {
		w.log.Warn("support: cannot dead-letter a refused request; it will come again", slog.String(keyMessageID, m.MessageID),
			slog.String(keyReason, reason), slog.Any(keyError, err))
		return
	}
	h.Result, h.Detail = reason, desc
	w.record(h)
	w.log.Warn("support: request refused and dead-lettered", slog.String(keyMessageID, m.MessageID), slog.String(keyReason, reason),
		slog.String("description", desc), slog.String(keyRequestID, h.ID), slog.String(keyKind, h.Kind))
}

// abandon gives a request back to the queue, to be answered when it comes again.
func (w *Worker) abandon(ctx context.Context, l link, m *azservicebus.ReceivedMessage, h Handled, cause error) {
	sctx, cancel := settleContext(ctx)
	defer cancel()
	if err := l.rcv.AbandonMessage(sctx, m, nil); err != nil {
		w.log.Warn("support: cannot abandon a request; its lock will expire", slog.String(keyMessageID, m.MessageID), slog.Any(keyError, err))
	}
	h.Result, h.Detail = ResultAbandoned, cause.Error()
	w.record(h)
	w.log.Error("support: request not answered; it will come again", slog.String(keyMessageID, m.MessageID),
		slog.String(keyRequestID, h.ID), slog.Any(keyError, cause))
}

// settleTimeout bounds settling a message and sending an answer, which outlive a stop of the
// worker: an answer being sent is worth finishing.
const settleTimeout = 10 * time.Second

func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}
