package servicebus

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"
	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

// Link states reported in status.
const (
	LinkConnecting   = "connecting"
	LinkConnected    = "connected"
	LinkDisconnected = "disconnected"
)

// Dead-letter reasons (DeadLetterReason) of the messages the shop cannot take.
const (
	// deadLetterReason: the message breaks the contract (docs/cloud-api.md).
	deadLetterReason = "InvalidOrder"
	// deadLetterMessageIDReused: the MessageId already brought another order.
	deadLetterMessageIDReused = "MessageIdReused"
	// deadLetterOrderConflict: the cloud order id was already stored with other contents.
	deadLetterOrderConflict = "OrderConflict"
)

// Options configure a Receiver.
type Options struct {
	DB               *storage.DB
	ConnectionString string // the namespace's; secret
	Queue            string
	// WebSockets carries AMQP over WebSockets on 443 (what shops use); the connection is opened by
	// DialContext, the one WAN dialer, with TLS from TLSConfig. Without it the SDK opens plain
	// AMQP itself (local testing only: no proxy).
	WebSockets  bool
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	TLSConfig   func() *tls.Config
	// LockRenewInterval is how often a message's lock is renewed while it is being stored;
	// 0: config.DefaultServiceBusLockRenewInterval.
	LockRenewInterval time.Duration
	MaxConcurrent     int  // messages handled at once; 0: config.DefaultServiceBusMaxConcurrent
	TestMode          bool // every order stored is a test order
	MinBackoff        time.Duration
	MaxBackoff        time.Duration
	// LocalFailureBackoff is the first pause in receiving after an order could not be stored
	// (database busy, disk full); the pauses double up to a minute while it goes on, so that
	// the abandoned message is not redelivered at once and dead-lettered by Service Bus after
	// its maximum delivery count. 0: one second.
	LocalFailureBackoff time.Duration
	Logger              *slog.Logger
	// Stored, when set, is called after a new order is stored and its message completed (to
	// push it to devices).
	Stored func(orders.Order)
	// AttachTimeout bounds connecting to the namespace and attaching the receive link, each
	// session; 0: AttachTimeout.
	AttachTimeout time.Duration
	// EndWhenMissing makes Run return ErrQueueMissing when the namespace says the queue does not
	// exist, instead of trying it again: the cloud named it, and may name another now.
	EndWhenMissing bool
}

// ErrQueueMissing: the namespace has no queue of that name (Options.EndWhenMissing).
var ErrQueueMissing = errors.New("servicebus: the queue does not exist in the namespace")

// queueMissing tells whether err says the queue does not exist: amqp:not-found on the receive
// link, or a 404 on the management link.
func queueMissing(err error) bool {
	var ae *amqp.Error
	var se *azservicebus.Error
	return errors.As(err, &ae) && ae.Condition == amqp.ErrCondNotFound || errors.As(err, &se) && se.Code == azservicebus.CodeNotFound
}

// Status is what status shows of the Service Bus link.
type Status struct {
	State         string     `json:"state"`
	Queue         string     `json:"queue"`
	LastError     string     `json:"last_error,omitempty"`
	LastMessageAt *time.Time `json:"last_message_at"`
	Received      int64      `json:"received"`
	Stored        int64      `json:"stored"`
	Duplicates    int64      `json:"duplicates"`
	DeadLettered  int64      `json:"dead_lettered"`
	Abandoned     int64      `json:"abandoned"`
	Reconnects    int64      `json:"reconnects"`
}

// Receiver takes orders off the shop's queue in peek-lock mode: each order is stored together
// with its message id in one transaction before the message is completed, so an order is never
// lost (a crash before completing means redelivery) nor doubled (the id is remembered).
type Receiver struct {
	o   Options
	log *slog.Logger

	mu sync.Mutex // protects the fields below
	st Status
	// redialedAt: when the client library last made a connection again (counted); a failure
	// of the session within sameLoss after it is the same loss, not counted again.
	redialedAt time.Time
}

// NewReceiver returns a Receiver; it does nothing until Run.
func NewReceiver(o Options) *Receiver {
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = config.DefaultServiceBusMaxConcurrent
	}
	if o.LockRenewInterval <= 0 {
		o.LockRenewInterval = config.DefaultServiceBusLockRenewInterval
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Minute
	}
	if o.LocalFailureBackoff <= 0 {
		o.LocalFailureBackoff = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Receiver{o: o, log: o.Logger, st: Status{State: LinkConnecting, Queue: o.Queue}}
}

// Status returns the link state and counters.
func (r *Receiver) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// SetQueue makes the next Run receive from queue, the counters going on; not while Run runs.
func (r *Receiver) SetQueue(queue string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.o.Queue, r.st.Queue, r.st.State, r.st.LastError = queue, queue, LinkConnecting, ""
}

// Waiting shows, between Runs, why the receiver is not receiving: its caller is still learning
// which queue to receive from.
func (r *Receiver) Waiting(why string) {
	r.update(func(s *Status) { s.State, s.LastError = LinkConnecting, why })
}

func (r *Receiver) update(f func(*Status)) {
	r.mu.Lock()
	f(&r.st)
	r.mu.Unlock()
}

// Run receives until ctx ends, reconnecting with backoff after any failure of the link (with
// Options.EndWhenMissing, but for a queue that does not exist: ErrQueueMissing).
func (r *Receiver) Run(ctx context.Context) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	session := r.session
	if r.o.EndWhenMissing {
		session = func(ctx context.Context) (bool, error) {
			progressed, err := r.session(ctx)
			if queueMissing(err) {
				r.update(func(s *Status) { s.State, s.LastError = LinkDisconnected, r.errorText(err) })
				stop(fmt.Errorf("%w: %q: %w", ErrQueueMissing, r.o.Queue, err))
			}
			return progressed, err
		}
	}
	err := Reconnect(ctx, r.o.MinBackoff, r.o.MaxBackoff, session, func(err error, wait time.Duration) {
		r.update(func(s *Status) {
			if s.State == LinkConnected && time.Since(r.redialedAt) >= sameLoss {
				s.Reconnects++ // a link that was up and went down; failed attempts are not
			}
			s.State = LinkDisconnected
			s.LastError = r.errorText(err)
		})
		r.log.Warn("servicebus: link lost, reconnecting", slog.Any("error", err), slog.Duration("retry_in", wait))
	}, func() { r.update(func(s *Status) { s.State = LinkConnecting }) })
	if cause := context.Cause(ctx); errors.Is(cause, ErrQueueMissing) {
		return cause
	}
	return err
}

// dialed counts a connection the client library made again by itself while the link was up:
// it recovers a lost connection within a receive, without an error reaching the session, so
// that the loss would otherwise go unseen (operations.md: a steady rate of reconnections says
// the network or a proxy cuts long connections).
func (r *Receiver) dialed() {
	again := false
	r.update(func(s *Status) {
		if s.State == LinkConnected {
			s.Reconnects++
			again, r.redialedAt = true, time.Now()
		}
	})
	if again {
		r.log.Warn("servicebus: connection lost, made again by the client library")
	}
}

// errorText is err's text for the status, the connection string's key or signature replaced
// should the client library or a proxy echo it (configuration.md: secrets are never shown).
func (r *Receiver) errorText(err error) string {
	s := err.Error()
	// Each value of a part written twice too, as the log's filter hides them (config.SecretValues).
	for _, f := range config.SecretForms(config.ConnectionStringSecrets(r.o.ConnectionString)) { // escaped forms too, longest first
		s = strings.ReplaceAll(s, f, config.Redaction)
	}
	return s
}

// AttachTimeout is how long connecting to a namespace and attaching a receive link may take by
// default: a connection that a proxy or a firewall accepts and then leaves silent would
// otherwise hold the link "connecting" for ever, with no error and no retry.
const AttachTimeout = time.Minute

// Attach connects and attaches rcv's link within timeout (0: AttachTimeout). The SDK attaches
// the receive link with the first call that needs it, which for ReceiveMessages returns only
// with a message; a peek (it locks nothing) attaches it now, with the management link, so that
// status tells the truth on a quiet queue. The connection made stays once Attach returns. Its
// errors name the queue, not the caller (who says which link it is).
func Attach(ctx context.Context, rcv *azservicebus.Receiver, queue string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = AttachTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := rcv.PeekMessages(actx, 1, nil); err != nil {
		if ctx.Err() == nil && actx.Err() != nil {
			return fmt.Errorf("attach to %q: no answer within %s: the namespace, or a proxy or firewall on the way, accepted the connection and went silent", queue, timeout)
		}
		return fmt.Errorf("attach to %q: %w", queue, err)
	}
	return nil
}

// Reconnect runs session until ctx ends, and again after each failure once a backoff has
// passed: it grows while sessions fail without progress, and starts again from minWait after
// one that made some. lost is told each failure and the wait before the next session, retrying
// that the next session starts. It returns ctx.Err().
func Reconnect(ctx context.Context, minWait, maxWait time.Duration, session func(context.Context) (progressed bool, err error),
	lost func(err error, wait time.Duration), retrying func()) error {
	b := backoff.New(minWait, maxWait)
	for {
		progressed, err := session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if progressed {
			b.Reset()
		}
		wait := b.Next(0)
		lost(err, wait)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
		retrying()
	}
}

// sameLoss is how long after a connection the client library made again a failure of the
// session is taken as the same loss (the library's own retries failing in turn).
var sameLoss = healthyLink

// healthyLink is how long a link must have stayed up for its loss to count as a blip, after which
// the reconnection waits start again from the shortest, as after handling messages.
const healthyLink = time.Minute

// session connects, then receives and handles messages until the link fails. It reports
// whether it made progress: any message handled, or a link that stayed up for healthyLink (on a
// quiet queue a network blip then does not wait the longest backoff).
func (r *Receiver) session(ctx context.Context) (progressed bool, err error) {
	client, err := r.newClient()
	if err != nil {
		return false, err
	}
	defer client.Close(context.WithoutCancel(ctx))
	rcv, err := client.NewReceiverForQueue(r.o.Queue, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock})
	if err != nil {
		return false, fmt.Errorf("servicebus: open receiver for %q: %w", r.o.Queue, err)
	}
	defer rcv.Close(context.WithoutCancel(ctx))
	if err := Attach(ctx, rcv, r.o.Queue, r.o.AttachTimeout); err != nil {
		return false, fmt.Errorf("servicebus: %w", err)
	}
	r.update(func(s *Status) { s.State, s.LastError = LinkConnected, "" })
	r.log.Info("servicebus: receiving orders", slog.String("queue", r.o.Queue))
	attached := time.Now()
	pause := backoff.New(r.o.LocalFailureBackoff, max(r.o.LocalFailureBackoff, time.Minute))
	for {
		if err := r.o.DB.FlushFailed(); err != nil {
			// Nothing could be stored for good (storage.DB.FlushFailed, for the rest of the
			// process): each delivery refused would count towards the queue's dead-lettering,
			// so the orders wait in the queue instead.
			r.log.Error("servicebus: not receiving orders: the disk failed a write of the database; they wait in the queue until storeedge restarts",
				slog.Any("error", err))
			r.update(func(s *Status) { s.LastError = "not receiving orders until storeedge restarts: " + err.Error() })
			<-ctx.Done()
			return progressed, ctx.Err()
		}
		msgs, err := rcv.ReceiveMessages(ctx, r.o.MaxConcurrent, nil)
		if err != nil {
			return progressed || time.Since(attached) >= healthyLink, fmt.Errorf("servicebus: receive: %w", err)
		}
		var g errgroup.Group
		var failed atomic.Bool
		for _, m := range msgs {
			g.Go(func() error {
				if !r.handle(ctx, rcv, m) {
					failed.Store(true)
				}
				return nil
			})
		}
		g.Wait()
		progressed = progressed || len(msgs) > 0
		if !failed.Load() {
			pause.Reset()
			continue
		}
		// Each delivery of an abandoned message counts towards Service Bus's maximum: wait
		// before asking again, longer while the failure lasts.
		wait := pause.Next(0)
		r.log.Warn("servicebus: orders could not be stored; receiving again after a pause", slog.Duration("retry_in", wait))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return progressed, err
		}
	}
}

// newClient makes the SDK's client for the receiver's namespace.
func (r *Receiver) newClient() (*azservicebus.Client, error) {
	return NewClient(Connection{ConnectionString: r.o.ConnectionString, WebSockets: r.o.WebSockets, DialContext: r.o.DialContext, TLSConfig: r.o.TLSConfig,
		Dialed: r.dialed})
}

// Connection is how to reach a namespace: its connection string (secret) and, for AMQP over
// WebSockets on 443 (what shops use), the one WAN dialer and its TLS configuration. Without
// WebSockets the SDK opens plain AMQP itself (local testing only: no proxy).
type Connection struct {
	ConnectionString string
	WebSockets       bool
	DialContext      func(ctx context.Context, network, addr string) (net.Conn, error)
	TLSConfig        func() *tls.Config
	// Dialed, when set, is called after each WebSocket opened: the first of a client, and each
	// the client library opens by itself after losing one.
	Dialed func()
}

// NewClient makes the SDK's client for a namespace: over WebSockets through the WAN dialer when
// so configured. Every Service Bus connection of storeedge is made here.
func NewClient(c Connection) (*azservicebus.Client, error) {
	opts := &azservicebus.ClientOptions{
		// The SDK's own retries are kept short: reconnecting is the caller's job, so status can
		// tell the truth while the link is down.
		RetryOptions: azservicebus.RetryOptions{MaxRetries: 2, RetryDelay: 500 * time.Millisecond, MaxRetryDelay: 2 * time.Second},
	}
	if c.WebSockets {
		opts.NewWebSocketConn = c.dialWebSocket
	}
	client, err := azservicebus.NewClientFromConnectionString(c.ConnectionString, opts)
	if err != nil {
		// The SDK's message may quote the connection string; say only what is wrong.
		return nil, errors.New("servicebus: connection string refused by the client library")
	}
	return client, nil
}

// webSocketHandshakeTimeout bounds opening a WebSocket, from the TCP connection to the upgrade.
const webSocketHandshakeTimeout = 30 * time.Second

// dialWebSocket opens AMQP over WebSockets through the WAN dialer.
func (c Connection) dialWebSocket(ctx context.Context, args azservicebus.NewWebSocketConnArgs) (net.Conn, error) {
	tr := &http.Transport{DialContext: c.DialContext, ForceAttemptHTTP2: false}
	if c.TLSConfig != nil {
		tr.TLSClientConfig = c.TLSConfig()
	}
	// No redirect: it would take the namespace's token elsewhere. The timeout bounds the
	// handshakes (TLS, the WebSocket upgrade), also when the client library reconnects by
	// itself, without a deadline of its own; the connection made outlives it.
	hc := &http.Client{Transport: tr, CheckRedirect: wan.NoRedirect, Timeout: webSocketHandshakeTimeout}
	ws, _, err := websocket.Dial(ctx, args.Host, &websocket.DialOptions{Subprotocols: []string{"amqp"}, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("servicebus: websocket %s: %w", args.Host, err)
	}
	if ws.Subprotocol() != "amqp" {
		ws.Close(websocket.StatusProtocolError, "subprotocol amqp expected")
		return nil, fmt.Errorf("servicebus: websocket %s: the server chose subprotocol %q, not amqp", args.Host, ws.Subprotocol())
	}
	if c.Dialed != nil {
		c.Dialed()
	}
	// One AMQP frame per WebSocket message; frames are at most 64 KiB, the library's default
	// read limit is 32 KiB.
	ws.SetReadLimit(1 << 20)
	return websocket.NetConn(context.WithoutCancel(ctx), ws, websocket.MessageBinary), nil
}

// KeepLock renews the lock of m every interval until the returned stop is called (stop waits
// for the renewing goroutine), so that a message whose work takes long is not delivered again
// meanwhile. A failed renewal is logged and tried again at the next tick.
func KeepLock(ctx context.Context, rcv *azservicebus.Receiver, m *azservicebus.ReceivedMessage, interval time.Duration, log *slog.Logger) (stop func()) {
	renewCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
				if err := rcv.RenewMessageLock(renewCtx, m, nil); err != nil && renewCtx.Err() == nil {
					log.Warn("servicebus: cannot renew the lock", slog.Any("error", err))
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// storeGrace is how long a store under way may go on once the receiver is stopping.
const storeGrace = 10 * time.Second

// settleTimeout bounds a settlement. After a dropped connection the SDK retries settling a
// message received on the old one until its context ends, reconnecting each time; the message
// comes back after its lock expires anyway, and is recognised by its id.
const settleTimeout = 10 * time.Second

// settleContext outlives a stop of the receiver (a stored order's message should still be
// completed) but not settleTimeout.
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// handle stores one message's order, then settles the message: complete when stored (or stored
// before), dead-letter when invalid or in conflict with an order stored before, abandon when the
// shop could not store it. It reports whether the message was settled: false when abandoned.
func (r *Receiver) handle(ctx context.Context, rcv *azservicebus.Receiver, m *azservicebus.ReceivedMessage) (settled bool) {
	r.update(func(s *Status) { s.Received++ })
	id := messageID(m)
	log := r.log.With(slog.String("message_id", clip.String(id, maxMessageIDBytes)), slog.Int("delivery", int(m.DeliveryCount)))
	p, err := decodeBody(m)
	switch {
	case err != nil:
	case id == "":
		err = &InvalidError{Reason: "the message has no MessageId, so a redelivery could not be recognised"}
	case len(id) > maxMessageIDBytes:
		err = &InvalidError{Reason: fmt.Sprintf("MessageId of %d bytes, at most %d", len(id), maxMessageIDBytes)}
	}
	var inv *InvalidError
	if errors.As(err, &inv) {
		r.deadLetter(ctx, rcv, m, deadLetterReason, inv.Reason, func(desc string) {
			log.Warn("servicebus: invalid order dead-lettered", slog.String("reason", desc))
		})
		return true
	}
	o, created, err := r.store(ctx, rcv, m, id, p, log)
	var conflict *storage.ServiceBusConflict
	if errors.As(err, &conflict) {
		reason, desc := conflictReason(id, p.OrderID, conflict)
		r.deadLetter(ctx, rcv, m, reason, desc, func(desc string) {
			log.Error("servicebus: order in conflict with one stored before dead-lettered; see the queue's dead-letter queue",
				slog.String("reason", reason), slog.String("description", desc), slog.String("external_id", p.OrderID))
		})
		return true
	}
	sctx, cancel := settleContext(ctx)
	defer cancel()
	if err != nil {
		if aerr := rcv.AbandonMessage(sctx, m, nil); aerr != nil {
			log.Warn("servicebus: cannot abandon the message; its lock will expire", slog.Any("error", aerr))
		}
		r.update(func(s *Status) { s.Abandoned++ })
		log.Error("servicebus: order not stored; message abandoned for redelivery", slog.Any("error", err))
		return false
	}
	if err := rcv.CompleteMessage(sctx, m, nil); err != nil {
		// Stored already: the redelivery will be recognised by its message id and completed then.
		log.Warn("servicebus: order stored but message not completed; the redelivery will be skipped", slog.Any("error", err))
	}
	now := time.Now().UTC()
	r.update(func(s *Status) {
		s.LastMessageAt = &now
		if created {
			s.Stored++
		} else {
			s.Duplicates++
		}
	})
	if !created {
		log.Info("servicebus: order stored before; message completed", slog.String("order_id", o.ID), slog.String("external_id", o.ExternalID))
		return true
	}
	log.Info("servicebus: order stored", slog.String("order_id", o.ID), slog.String("external_id", o.ExternalID))
	if r.o.Stored != nil {
		r.o.Stored(o)
	}
	return true
}

// store stores the order of a message, renewing the message's lock while that takes long (a busy
// disk, a page of a big sync in the way).
func (r *Receiver) store(ctx context.Context, rcv *azservicebus.Receiver, m *azservicebus.ReceivedMessage, id string, p Payload, log *slog.Logger) (orders.Order, bool, error) {
	defer KeepLock(ctx, rcv, m, r.o.LockRenewInterval, log)()
	// A stop of the receiver lets a store under way finish, within storeGrace, so that the
	// message is completed rather than abandoned and delivered again after the restart.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(storeGrace, cancel) })()
	return r.o.DB.CreateOrder(sctx, storage.NewOrder{Order: p.Order(r.o.TestMode), MessageID: id,
		Fingerprint: p.Fingerprint(), FingerprintsBefore: p.FingerprintsBefore(),
		ReceivedDetail: fmt.Sprintf("message %s, delivery %d", id, m.DeliveryCount)})
}

// deadLetter moves a message the shop will not take to the queue's dead-letter queue with its
// reason, then counts it and has logged say so.
func (r *Receiver) deadLetter(ctx context.Context, rcv *azservicebus.Receiver, m *azservicebus.ReceivedMessage, reason, desc string, logged func(desc string)) {
	sctx, cancel := settleContext(ctx)
	defer cancel()
	desc = clip.String(desc, MaxReasonBytes)
	if err := rcv.DeadLetterMessage(sctx, m, &azservicebus.DeadLetterOptions{Reason: &reason, ErrorDescription: &desc}); err != nil {
		r.log.Warn("servicebus: cannot dead-letter a message; it will come again", slog.String("message_id", messageID(m)),
			slog.String("reason", reason), slog.Any("error", err))
		return
	}
	now := time.Now().UTC()
	r.update(func(s *Status) { s.DeadLettered++; s.LastMessageAt = &now })
	logged(desc)
}

// conflictReason is the dead-letter reason and description of a message that clashes with an
// order stored before.
func conflictReason(messageID, orderID string, c *storage.ServiceBusConflict) (reason, desc string) {
	stored := fmt.Sprintf("order %d (cloud order %s)", c.Order.Number, c.Order.ExternalID)
	if errors.Is(c, storage.ErrMessageIDReused) {
		return deadLetterMessageIDReused, fmt.Sprintf("MessageId %s already brought %s; this message carries a different order, cloud order %s: a new order needs a new MessageId",
			messageID, stored, orderID)
	}
	return deadLetterOrderConflict, fmt.Sprintf("cloud order %s is stored already as %s with other contents; the shop does not change a stored order from Service Bus",
		orderID, stored)
}

// maxMessageIDBytes bounds a MessageId as text (Service Bus takes 128 characters).
const maxMessageIDBytes = 300

// maxBinaryIDBytes is the longest binary message-id written out whole; a longer one is named by
// its SHA-256.
const maxBinaryIDBytes = 128

// messageID is the message's AMQP message-id as text: a string as it is; an id of another type
// (the SDK gives only a string one) named by its type, so that it cannot be taken for a string
// id: "ulong:42", "uuid:" and its usual form, "binary:" and its bytes in hexadecimal. A string
// that begins as such a name is marked "string:". "" when the message has none (an empty
// binary id is none).
func messageID(m *azservicebus.ReceivedMessage) string {
	id := m.MessageID
	if id == "" && m.RawAMQPMessage != nil && m.RawAMQPMessage.Properties != nil {
		switch v := m.RawAMQPMessage.Properties.MessageID.(type) {
		case string:
			id = v
		case uint64:
			return "ulong:" + strconv.FormatUint(v, 10)
		case []byte:
			switch {
			case len(v) == 0:
				return ""
			case len(v) > maxBinaryIDBytes:
				sum := sha256.Sum256(v)
				return "binary-sha256:" + hex.EncodeToString(sum[:])
			default:
				return "binary:" + hex.EncodeToString(v)
			}
		case fmt.Stringer: // go-amqp's UUID
			return "uuid:" + v.String()
		}
	}
	for _, p := range typedIDPrefixes {
		if strings.HasPrefix(id, p) {
			return "string:" + id
		}
	}
	return id
}

// typedIDPrefixes begin the text of a MessageId that is not a string, and of a string marked as
// one.
var typedIDPrefixes = []string{"ulong:", "uuid:", "binary:", "binary-sha256:", "string:"}

// decodeBody reads the order of a message whose body is one AMQP data section, as Service Bus
// clients send bytes; a body the sender encoded as an AMQP value or sequence is refused by name,
// also beside a data section (the SDK then hands over the data section as the body alone).
func decodeBody(m *azservicebus.ReceivedMessage) (Payload, error) {
	if raw := m.RawAMQPMessage; raw != nil {
		switch b := raw.Body; {
		case b.Value != nil:
			return Payload{}, &InvalidError{Reason: fmt.Sprintf("body: an AMQP value (%T), not the order document as bytes in one data section", b.Value)}
		case len(b.Sequence) > 0:
			return Payload{}, &InvalidError{Reason: "body: an AMQP sequence, not the order document as bytes in one data section"}
		case len(b.Data) > 1:
			return Payload{}, &InvalidError{Reason: fmt.Sprintf("body: %d AMQP data sections, not the order document in one", len(b.Data))}
		}
	}
	if len(m.Body) == 0 {
		return Payload{}, &InvalidError{Reason: "body: empty, not an order document"}
	}
	return Decode(m.Body)
}
