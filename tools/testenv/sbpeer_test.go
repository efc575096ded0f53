package testenv_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"
	"github.com/coder/websocket"

	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/tools/testenv"
)

// These tests drive tools/sbpeer with the real azservicebus SDK, to show that
// the peer answers what the SDK sends the way Service Bus does. Other
// packages' tests use the peer the same way.

// SBPEER_SDK_LOG=1 prints the SDK's own log (connections, links, retries) to
// stderr: the quickest way to see what the SDK makes of the peer.
func init() {
	if os.Getenv("SBPEER_SDK_LOG") != "" {
		azlog.SetListener(func(e azlog.Event, msg string) {
			fmt.Fprintf(os.Stderr, "%s azservicebus [%s] %s\n", time.Now().Format("15:04:05.000"), e, msg)
		})
	}
}

const sbQueue = "orders"

// fastRetry keeps the SDK's reconnects quick: its default first retry delay
// is four seconds.
var fastRetry = azservicebus.RetryOptions{MaxRetries: 5, RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond}

func sbClient(t *testing.T, connStr string, opts *azservicebus.ClientOptions) *azservicebus.Client {
	t.Helper()
	if opts == nil {
		opts = &azservicebus.ClientOptions{}
	}
	if opts.RetryOptions == (azservicebus.RetryOptions{}) {
		opts.RetryOptions = fastRetry
	}
	c, err := azservicebus.NewClientFromConnectionString(connStr, opts)
	if err != nil {
		t.Fatalf("NewClientFromConnectionString: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func sbReceiver(t *testing.T, c *azservicebus.Client, opts *azservicebus.ReceiverOptions) *azservicebus.Receiver {
	t.Helper()
	r, err := c.NewReceiverForQueue(sbQueue, opts)
	if err != nil {
		t.Fatalf("NewReceiverForQueue: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Close(ctx)
	})
	return r
}

func sbCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// receiveN receives until it has n messages: ReceiveMessages may return
// fewer than asked for (it waits only 20 ms after the first).
func receiveN(t *testing.T, r *azservicebus.Receiver, n int, timeout time.Duration) []*azservicebus.ReceivedMessage {
	t.Helper()
	ctx := sbCtx(t, timeout)
	var got []*azservicebus.ReceivedMessage
	for len(got) < n {
		msgs, err := r.ReceiveMessages(ctx, n-len(got), nil)
		if err != nil {
			t.Fatalf("ReceiveMessages after %d of %d messages: %v", len(got), n, err)
		}
		got = append(got, msgs...)
	}
	return got
}

func TestSBPeerReceiveComplete(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	type sent struct {
		id, body string
		seq      int64
	}
	var want []sent
	for i, body := range []string{`{"order":1}`, `{"order":2}`, "plain text"} {
		id := fmt.Sprintf("order-%d", i+1)
		seq := p.Send(t, sbQueue, testenv.SBMessage{
			MessageID:   id,
			Body:        []byte(body),
			ContentType: "application/json",
			ApplicationProperties: map[string]any{
				"shop":  "s-042",
				"lines": i + 1,
				"test":  i == 2,
			},
		})
		want = append(want, sent{id, body, seq})
	}

	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)
	msgs := receiveN(t, r, 3, 10*time.Second)
	for i, m := range msgs {
		w := want[i]
		if m.MessageID != w.id || string(m.Body) != w.body {
			t.Errorf("message %d: id %q body %q, want %q %q", i, m.MessageID, m.Body, w.id, w.body)
		}
		if m.SequenceNumber == nil || *m.SequenceNumber != w.seq {
			t.Errorf("message %d: sequence number %v, want %d", i, m.SequenceNumber, w.seq)
		}
		if m.DeliveryCount != 1 {
			t.Errorf("message %d: DeliveryCount %d, want 1", i, m.DeliveryCount)
		}
		if m.ContentType == nil || *m.ContentType != "application/json" {
			t.Errorf("message %d: ContentType %v", i, m.ContentType)
		}
		if got := m.ApplicationProperties; got["shop"] != "s-042" || got["lines"] != int64(i+1) || got["test"] != (i == 2) {
			t.Errorf("message %d: application properties %#v", i, got)
		}
		if m.LockedUntil == nil || !m.LockedUntil.After(time.Now().Add(20*time.Second)) {
			t.Errorf("message %d: LockedUntil %v, want about 30 s ahead", i, m.LockedUntil)
		}
		if m.EnqueuedTime == nil || time.Since(*m.EnqueuedTime) > time.Minute {
			t.Errorf("message %d: EnqueuedTime %v", i, m.EnqueuedTime)
		}
		if m.LockToken == ([16]byte{}) {
			t.Errorf("message %d: no lock token", i)
		}
	}
	if s := p.Stats(t, sbQueue); s.Locked != 3 || s.Active != 0 {
		t.Errorf("while locked: %+v", s)
	}
	for _, m := range msgs {
		if err := r.CompleteMessage(sbCtx(t, 10*time.Second), m, nil); err != nil {
			t.Fatalf("CompleteMessage %s: %v", m.MessageID, err)
		}
	}
	if got := p.Completed(t, sbQueue); strings.Join(got, ",") != "order-1,order-2,order-3" {
		t.Errorf("completed %v", got)
	}
	if s := p.Stats(t, sbQueue); s.Active != 0 || s.Locked != 0 || s.Completed != 3 || s.Deliveries != 3 {
		t.Errorf("after complete: %+v", s)
	}
}

func TestSBPeerAbandonRedelivers(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "a-1", Body: []byte("x")})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)

	first := receiveN(t, r, 1, 10*time.Second)[0]
	if err := r.AbandonMessage(sbCtx(t, 10*time.Second), first, nil); err != nil {
		t.Fatalf("AbandonMessage: %v", err)
	}
	again := receiveN(t, r, 1, 10*time.Second)[0]
	if again.MessageID != "a-1" || again.DeliveryCount != 2 {
		t.Fatalf("redelivered %q with DeliveryCount %d, want a-1 with 2", again.MessageID, again.DeliveryCount)
	}
	if again.LockToken == first.LockToken {
		t.Errorf("redelivery kept the lock token")
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), again, nil); err != nil {
		t.Fatalf("CompleteMessage: %v", err)
	}
	if s := p.Stats(t, sbQueue); s.Abandoned != 1 || s.Completed != 1 || s.Deliveries != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestSBPeerDeadLetter(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "bad-1", Body: []byte("{not json")})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)

	m := receiveN(t, r, 1, 10*time.Second)[0]
	reason, desc := "InvalidPayload", "order JSON: unexpected end of input"
	if err := r.DeadLetterMessage(sbCtx(t, 10*time.Second), m, &azservicebus.DeadLetterOptions{
		Reason: &reason, ErrorDescription: &desc,
	}); err != nil {
		t.Fatalf("DeadLetterMessage: %v", err)
	}
	dl := p.DeadLetters(t, sbQueue)
	if len(dl) != 1 || dl[0].MessageID != "bad-1" || dl[0].Reason != reason || dl[0].Description != desc || string(dl[0].Body) != "{not json" {
		t.Fatalf("dead letters %+v", dl)
	}
	if s := p.Stats(t, sbQueue); s.Active != 0 || s.Locked != 0 || s.DeadLettered != 1 {
		t.Errorf("stats %+v", s)
	}

	// The SDK reads it back from the dead-letter sub-queue, reason included.
	dlr := sbReceiver(t, c, &azservicebus.ReceiverOptions{SubQueue: azservicebus.SubQueueDeadLetter})
	back := receiveN(t, dlr, 1, 10*time.Second)[0]
	if back.MessageID != "bad-1" || back.DeadLetterReason == nil || *back.DeadLetterReason != reason ||
		back.DeadLetterErrorDescription == nil || *back.DeadLetterErrorDescription != desc {
		t.Errorf("from the dead-letter queue: id %q reason %v description %v", back.MessageID, back.DeadLetterReason, back.DeadLetterErrorDescription)
	}
	if back.DeadLetterSource == nil || *back.DeadLetterSource != sbQueue {
		t.Errorf("DeadLetterSource %v", back.DeadLetterSource)
	}
	if err := dlr.CompleteMessage(sbCtx(t, 10*time.Second), back, nil); err != nil {
		t.Fatalf("complete from the dead-letter queue: %v", err)
	}
	if dl := p.DeadLetters(t, sbQueue); len(dl) != 0 {
		t.Errorf("dead-letter queue after complete: %+v", dl)
	}
}

func TestSBPeerMaxDeliveryCount(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{MaxDeliveryCount: 2})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "poison", Body: []byte("x")})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)
	for want := uint32(1); want <= 2; want++ {
		m := receiveN(t, r, 1, 10*time.Second)[0]
		if m.DeliveryCount != want {
			t.Fatalf("DeliveryCount %d, want %d", m.DeliveryCount, want)
		}
		if err := r.AbandonMessage(sbCtx(t, 10*time.Second), m, nil); err != nil {
			t.Fatalf("AbandonMessage: %v", err)
		}
	}
	dl := p.DeadLetters(t, sbQueue)
	if len(dl) != 1 || dl[0].MessageID != "poison" || dl[0].Reason != "MaxDeliveryCountExceeded" {
		t.Fatalf("dead letters %+v", dl)
	}
}

func TestSBPeerLockExpiry(t *testing.T) {
	const lock = 2 * time.Second
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{LockDuration: lock})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "slow-1", Body: []byte("x")})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)

	first := receiveN(t, r, 1, 10*time.Second)[0]
	if d := time.Until(*first.LockedUntil); d <= 0 || d > lock+time.Second {
		t.Errorf("LockedUntil %v ahead, want about %v", d, lock)
	}
	// Not settled: once the lock expires the peer makes it available again
	// and delivers it to the next receive.
	p.WaitStats(t, sbQueue, lock+10*time.Second, func(s testenv.SBQueueStats) bool { return s.LockExpirations == 1 })
	again := receiveN(t, r, 1, 10*time.Second)[0]
	if again.MessageID != "slow-1" || again.DeliveryCount != 2 || *again.SequenceNumber != *first.SequenceNumber {
		t.Fatalf("redelivered %q DeliveryCount %d seq %d", again.MessageID, again.DeliveryCount, *again.SequenceNumber)
	}
	if !time.Now().After(*first.LockedUntil) {
		t.Errorf("redelivered before the first lock expired (%v)", first.LockedUntil)
	}
	if s := p.Stats(t, sbQueue); s.LockExpirations != 1 || s.Deliveries != 2 {
		t.Errorf("stats %+v", s)
	}

	// Renewing or settling with the expired lock fails as on Service Bus
	// (a 410 from $management; a rejected disposition on the link).
	err := r.RenewMessageLock(sbCtx(t, 10*time.Second), first, nil)
	var sbErr *azservicebus.Error
	if !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeLockLost {
		t.Fatalf("RenewMessageLock with an expired lock: %v, want code %s", err, azservicebus.CodeLockLost)
	}
	err = r.CompleteMessage(sbCtx(t, 10*time.Second), first, nil)
	if !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeLockLost {
		t.Fatalf("CompleteMessage with an expired lock: %v, want code %s", err, azservicebus.CodeLockLost)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), again, nil); err != nil {
		t.Fatalf("CompleteMessage with the new lock: %v", err)
	}
	if got := p.Completed(t, sbQueue); len(got) != 1 || got[0] != "slow-1" {
		t.Errorf("completed %v", got)
	}
}

func TestSBPeerRenewLock(t *testing.T) {
	const lock = 2 * time.Second
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{LockDuration: lock})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "renewed-1", Body: []byte("x")})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)

	m := receiveN(t, r, 1, 10*time.Second)[0]
	original := *m.LockedUntil
	// Renew at a quarter of the lock duration until well past the original
	// expiry: the passing of time is what is under test here.
	renewals := 0
	for time.Now().Before(original.Add(lock / 2)) {
		time.Sleep(lock / 4)
		before := *m.LockedUntil
		if err := r.RenewMessageLock(sbCtx(t, 10*time.Second), m, nil); err != nil {
			t.Fatalf("RenewMessageLock %d: %v", renewals+1, err)
		}
		renewals++
		if !m.LockedUntil.After(before) {
			t.Fatalf("renewal %d: LockedUntil %v not after %v", renewals, m.LockedUntil, before)
		}
	}
	s := p.Stats(t, sbQueue)
	if s.LockExpirations != 0 || s.Deliveries != 1 || s.Locked != 1 || s.LockRenewals != renewals {
		t.Fatalf("after %d renewals past the original expiry: %+v", renewals, s)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), m, nil); err != nil {
		t.Fatalf("CompleteMessage after renewals: %v", err)
	}
	if got := p.Completed(t, sbQueue); len(got) != 1 || got[0] != "renewed-1" {
		t.Errorf("completed %v", got)
	}
}

// TestSBPeerSDKSender covers the parts of the SDK the order path does not
// use but tests might: sending, peeking and scheduling.
func TestSBPeerSDKSender(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	c := sbClient(t, p.ConnectionString(), nil)
	s, err := c.NewSender(sbQueue, nil)
	if err != nil {
		t.Fatalf("NewSender: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	id, corr, subject, ct := "sent-1", "req-9", "ping", "application/json"
	if err := s.SendMessage(sbCtx(t, 10*time.Second), &azservicebus.Message{
		MessageID:             &id,
		CorrelationID:         &corr,
		Subject:               &subject,
		ContentType:           &ct,
		Body:                  []byte("from the SDK"),
		ApplicationProperties: map[string]any{"n": int64(7), "i32": int32(-3), "f": 2.5},
	}, nil); err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	future := time.Now().Add(time.Hour)
	seqs, err := s.ScheduleMessages(sbCtx(t, 10*time.Second), []*azservicebus.Message{{Body: []byte("later")}}, future, nil)
	if err != nil || len(seqs) != 1 {
		t.Fatalf("ScheduleMessages: %v %v", seqs, err)
	}
	if st := p.Stats(t, sbQueue); st.Active != 1 || st.Scheduled != 1 {
		t.Errorf("stats after send and schedule: %+v", st)
	}
	// What the client sent, as a test reads it from the peer.
	if q := p.Messages(t, sbQueue); len(q) != 2 || q[0].MessageID != id || q[0].CorrelationID != corr || q[0].Subject != subject ||
		q[0].ContentType != ct || string(q[0].Body) != "from the SDK" || q[0].ApplicationProperties["n"] != 7.0 {
		t.Errorf("messages in the queue: %+v", q)
	}

	r := sbReceiver(t, c, nil)
	peeked, err := r.PeekMessages(sbCtx(t, 10*time.Second), 10, nil)
	if err != nil || len(peeked) != 2 || peeked[0].MessageID != id {
		t.Fatalf("PeekMessages: %d messages, %v", len(peeked), err)
	}
	m := receiveN(t, r, 1, 10*time.Second)[0]
	// Types survive the round trip through the peer.
	if m.MessageID != id || string(m.Body) != "from the SDK" || m.ApplicationProperties["n"] != int64(7) ||
		m.ApplicationProperties["i32"] != int32(-3) || m.ApplicationProperties["f"] != 2.5 {
		t.Errorf("received %q %q %#v", m.MessageID, m.Body, m.ApplicationProperties)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), m, nil); err != nil {
		t.Fatalf("CompleteMessage: %v", err)
	}
	if err := s.CancelScheduledMessages(sbCtx(t, 10*time.Second), seqs, nil); err != nil {
		t.Fatalf("CancelScheduledMessages: %v", err)
	}
	if st := p.Stats(t, sbQueue); st.Active != 0 || st.Scheduled != 0 || st.Completed != 1 {
		t.Errorf("stats at the end: %+v", st)
	}
}

func TestSBPeerReceiveAndDelete(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "rd-1", Body: []byte("x")})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete})
	m := receiveN(t, r, 1, 10*time.Second)[0]
	if m.MessageID != "rd-1" {
		t.Fatalf("received %q", m.MessageID)
	}
	if s := p.Stats(t, sbQueue); s.Active != 0 || s.Locked != 0 || s.Completed != 1 {
		t.Errorf("stats %+v: want the message gone on delivery", s)
	}
}

// TestSBPeerSubscription: a queue named "<topic>/Subscriptions/<name>"
// stands in for a topic subscription.
func TestSBPeerSubscription(t *testing.T) {
	const entity = "shop-orders/Subscriptions/shop-042"
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{Queues: []string{entity}})
	p.Send(t, entity, testenv.SBMessage{MessageID: "sub-1", Body: []byte("x")})
	c := sbClient(t, p.ConnectionString(), nil)
	r, err := c.NewReceiverForSubscription("shop-orders", "shop-042", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	m := receiveN(t, r, 1, 10*time.Second)[0]
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), m, nil); err != nil {
		t.Fatalf("CompleteMessage: %v", err)
	}
	if got := p.Completed(t, entity); len(got) != 1 || got[0] != "sub-1" {
		t.Errorf("completed %v", got)
	}
}

func TestSBPeerUnknownQueue(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	c := sbClient(t, p.ConnectionString(), nil)
	r, err := c.NewReceiverForQueue("no-such-queue", nil)
	if err != nil {
		t.Fatalf("NewReceiverForQueue: %v", err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	// The peer refuses the link as Service Bus does (attach without source,
	// detach with amqp:not-found). The SDK hands that AMQP error back as is:
	// its CodeNotFound is only for management (RPC) answers of 404.
	_, err = r.ReceiveMessages(sbCtx(t, 10*time.Second), 1, nil)
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Condition != amqp.ErrCondNotFound {
		t.Fatalf("receive from a missing queue: %v, want %s", err, amqp.ErrCondNotFound)
	}
}

// wsConn returns a ClientOptions.NewWebSocketConn that dials target (or, if
// empty, the URL the SDK asks for) with coder/websocket over hc (nil: the
// default client), and records the URL the SDK asked for.
func wsConn(target string, hc *http.Client, asked *sync.Map) func(context.Context, azservicebus.NewWebSocketConnArgs) (net.Conn, error) {
	return func(ctx context.Context, args azservicebus.NewWebSocketConnArgs) (net.Conn, error) {
		if asked != nil {
			asked.Store(args.Host, true)
		}
		u := target
		if u == "" {
			u = args.Host
		}
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
			Subprotocols: []string{"amqp"},
			HTTPClient:   hc,
		})
		if err != nil {
			return nil, err
		}
		if c.Subprotocol() != "amqp" {
			c.Close(websocket.StatusProtocolError, "subprotocol amqp expected")
			return nil, fmt.Errorf("server chose subprotocol %q, want amqp", c.Subprotocol())
		}
		// One AMQP frame per WebSocket message, at most the client's max
		// frame size (64 KiB in go-amqp); the library's default limit is
		// 32 KiB.
		c.SetReadLimit(1 << 20)
		return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
	}
}

// receiveAndComplete enqueues one message, receives it with c and completes it.
func receiveAndComplete(t *testing.T, p *testenv.SBPeer, c *azservicebus.Client, id string) {
	t.Helper()
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: id, Body: []byte("over " + id)})
	r := sbReceiver(t, c, nil)
	m := receiveN(t, r, 1, 15*time.Second)[0]
	if m.MessageID != id || string(m.Body) != "over "+id || m.DeliveryCount != 1 {
		t.Fatalf("received %q %q DeliveryCount %d", m.MessageID, m.Body, m.DeliveryCount)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), m, nil); err != nil {
		t.Fatalf("CompleteMessage: %v", err)
	}
	if got := p.Completed(t, sbQueue); len(got) == 0 || got[len(got)-1] != id {
		t.Fatalf("completed %v, want %s last", got, id)
	}
}

func TestSBPeerWebSocket(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	var asked sync.Map
	c := sbClient(t, p.ConnectionString(), &azservicebus.ClientOptions{
		NewWebSocketConn: wsConn(p.WebSocketURL(), nil, &asked),
	})
	receiveAndComplete(t, p, c, "ws-1")
	conns := p.Connections(t)
	if conns.Accepted["ws"] == 0 || conns.Accepted["tcp"] != 0 {
		t.Errorf("connections %+v: want WebSocket only", conns)
	}
	// What production dials: wss://<namespace>/$servicebus/websocket.
	n := 0
	asked.Range(func(k, _ any) bool {
		n++
		if !strings.HasPrefix(k.(string), "wss://") || !strings.HasSuffix(k.(string), "/$servicebus/websocket") {
			t.Errorf("SDK asked for %q", k)
		}
		return true
	})
	if n == 0 {
		t.Errorf("NewWebSocketConn was never called")
	}
}

// TestSBPeerTLS covers the production shapes: AMQP over wss (directly and
// through an HTTP CONNECT proxy, as the shop's WAN dialer does it) and AMQPS.
func TestSBPeerTLS(t *testing.T) {
	certFile, keyFile, roots := testenv.TestCert(t)
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{TLSCert: certFile, TLSKey: keyFile})
	if !strings.HasPrefix(p.WebSocketURL(), "wss://") {
		t.Fatalf("WebSocketURL %s, want wss", p.WebSocketURL())
	}
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	t.Run("wss", func(t *testing.T) {
		// The SDK's own URL (wss://127.0.0.1:WSPORT/$servicebus/websocket,
		// from the connection string) is dialled as is, like production.
		// ClientOptions.TLSConfig plays no part on this path: the SDK hands
		// it to go-amqp, which only uses it when it dials TCP itself.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
		t.Cleanup(hc.CloseIdleConnections)
		c := sbClient(t, p.WebSocketConnectionString(), &azservicebus.ClientOptions{
			NewWebSocketConn: wsConn("", hc, nil),
		})
		receiveAndComplete(t, p, c, "wss-1")
		if n := p.Connections(t).Accepted["wss"]; n == 0 {
			t.Errorf("no wss connection accepted")
		}
	})

	t.Run("wss through proxy", func(t *testing.T) {
		proxyLog := filepath.Join(t.TempDir(), "tinyproxy.log")
		proxy := testenv.StartTinyproxy(t, testenv.TinyproxyOptions{LogFile: proxyLog})
		d, err := wan.New(wan.Options{ProxyURL: "http://" + proxy})
		if err != nil {
			t.Fatal(err)
		}
		// The WebSocket handshake goes over an http.Transport whose every
		// connection is a CONNECT tunnel opened by the WAN dialer. No
		// HTTP/2: a WebSocket upgrade needs HTTP/1.1.
		hc := &http.Client{Transport: &http.Transport{
			Proxy:           nil,
			DialContext:     d.DialContext,
			TLSClientConfig: tlsConf,
		}}
		t.Cleanup(hc.CloseIdleConnections)
		before := p.Connections(t).Accepted["wss"]
		c := sbClient(t, p.WebSocketConnectionString(), &azservicebus.ClientOptions{
			NewWebSocketConn: wsConn("", hc, nil),
		})
		receiveAndComplete(t, p, c, "proxied-1")
		if n := p.Connections(t).Accepted["wss"]; n <= before {
			t.Errorf("no new wss connection accepted")
		}
		u, _ := url.Parse(p.WebSocketURL())
		log, err := os.ReadFile(proxyLog)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "CONNECT "+u.Host) {
			t.Errorf("tinyproxy log has no CONNECT %s:\n%s", u.Host, log)
		}
	})

	t.Run("amqps", func(t *testing.T) {
		// A namespace-shaped connection string, the TCP connection sent to
		// the peer with CustomEndpoint, TLS verified against the test CA
		// for the namespace's name.
		c := sbClient(t, "Endpoint=sb://sbpeer.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=dGVzdA==",
			&azservicebus.ClientOptions{CustomEndpoint: p.AMQPSAddr(), TLSConfig: tlsConf})
		receiveAndComplete(t, p, c, "amqps-1")
		if n := p.Connections(t).Accepted["amqps"]; n == 0 {
			t.Errorf("no amqps connection accepted")
		}
	})
}

// TestSBPeerDropConnections shows what the SDK does when the namespace
// vanishes under an open receiver (connections cut, no AMQP close):
//   - the next ReceiveMessages returns no messages and no error (the SDK
//     finds the connection dead and closes it); the one after that
//     reconnects by itself and receives;
//   - a message received before the drop cannot be settled any more: the
//     SDK gets the old connection's EOF, which it treats as retryable (it
//     does not fall back to the $management link, which it only does for a
//     link error), and retries with its default backoff (4 s and up,
//     ignoring ClientOptions.RetryOptions), reconnecting each time, until
//     the caller's context ends. The message comes back when its lock
//     expires, with the delivery count up: consumers must deduplicate.
func TestSBPeerDropConnections(t *testing.T) {
	const lock = 2 * time.Second
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{LockDuration: lock})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "before-drop", Body: []byte("1")})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)
	held := receiveN(t, r, 1, 10*time.Second)[0]

	if n := p.DropConnections(t); n == 0 {
		t.Fatalf("no connection to drop")
	}
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "after-drop", Body: []byte("2")})

	var calls []string
	var got *azservicebus.ReceivedMessage
	for got == nil {
		if len(calls) == 2 {
			t.Fatalf("no message after %d receive calls: %q", len(calls), calls)
		}
		msgs, err := r.ReceiveMessages(sbCtx(t, 10*time.Second), 1, nil)
		calls = append(calls, fmt.Sprintf("%d messages, err %v", len(msgs), err))
		if err != nil {
			t.Fatalf("ReceiveMessages after the drop: %v (calls %q)", err, calls)
		}
		if len(msgs) > 0 {
			got = msgs[0]
		}
	}
	t.Logf("receive calls after the drop: %q", calls)
	if got.MessageID != "after-drop" {
		t.Fatalf("received %q after the drop", got.MessageID)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), got, nil); err != nil {
		t.Fatalf("CompleteMessage after-drop: %v", err)
	}

	err := r.CompleteMessage(sbCtx(t, time.Second), held, nil)
	if err == nil {
		t.Fatalf("CompleteMessage of a message received before the drop succeeded")
	}
	t.Logf("CompleteMessage of the message received before the drop: %v", err)

	again := receiveN(t, r, 1, lock+10*time.Second)[0]
	if again.MessageID != "before-drop" || again.DeliveryCount != 2 {
		t.Fatalf("after the lock expired: %q DeliveryCount %d", again.MessageID, again.DeliveryCount)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), again, nil); err != nil {
		t.Fatalf("CompleteMessage before-drop: %v", err)
	}
	if got := p.Completed(t, sbQueue); strings.Join(got, ",") != "after-drop,before-drop" {
		t.Errorf("completed %v", got)
	}
}

// TestSBPeerSettleAfterDetach: when the service detaches the receive link
// but the connection stays up, the SDK settles a message received on the
// old link by lock token on the $management link (update-disposition), and
// the next receive attaches a new link.
func TestSBPeerSettleAfterDetach(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "m-1", Body: []byte("1")})
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "m-2", Body: []byte("2")})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)
	first := receiveN(t, r, 1, 10*time.Second)[0]

	if n := p.DetachReceivers(t); n != 1 {
		t.Fatalf("detached %d receive links, want 1", n)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), first, nil); err != nil {
		t.Fatalf("CompleteMessage after the link was detached: %v", err)
	}
	if s := p.Stats(t, sbQueue); s.ManagementSettlements != 1 || s.Completed != 1 {
		t.Fatalf("stats %+v: want m-1 completed through $management", s)
	}
	second := receiveN(t, r, 1, 10*time.Second)[0]
	if second.MessageID != "m-2" || second.DeliveryCount != 1 {
		t.Fatalf("next message %q DeliveryCount %d", second.MessageID, second.DeliveryCount)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), second, nil); err != nil {
		t.Fatalf("CompleteMessage m-2: %v", err)
	}
	if got := p.Completed(t, sbQueue); strings.Join(got, ",") != "m-1,m-2" {
		t.Errorf("completed %v", got)
	}
}

// TestSBPeerRefuseThenRecover takes the namespace away (connections dropped
// and refused) and brings it back: a receive loop that retries on error
// gets the next message once connections are accepted again.
func TestSBPeerRefuseThenRecover(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	c := sbClient(t, p.ConnectionString(), nil)
	r := sbReceiver(t, c, nil)
	receiveAndCompleteOn(t, p, r, "up-1")

	p.Refuse(t, true)
	p.DropConnections(t)
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: "up-2", Body: []byte("2")})

	type result struct {
		msg    *azservicebus.ReceivedMessage
		errors []string
	}
	done := make(chan result, 1)
	ctx := sbCtx(t, 30*time.Second)
	go func() {
		var res result
		for ctx.Err() == nil {
			msgs, err := r.ReceiveMessages(ctx, 1, nil)
			if err != nil {
				res.errors = append(res.errors, err.Error())
				continue
			}
			if len(msgs) > 0 {
				res.msg = msgs[0]
				break
			}
		}
		done <- res
	}()

	// Wait until the SDK has tried, and been refused, a few times.
	deadline := time.Now().Add(15 * time.Second)
	for p.Faults(t).Refused < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the SDK did not try to reconnect: %+v", p.Faults(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Refuse(t, false)
	res := <-done
	if res.msg == nil {
		t.Fatalf("no message after the namespace came back; errors: %q", res.errors)
	}
	t.Logf("refused %d connections; receive errors while refused: %q", p.Faults(t).Refused, res.errors)
	if res.msg.MessageID != "up-2" {
		t.Fatalf("received %q", res.msg.MessageID)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), res.msg, nil); err != nil {
		t.Fatalf("CompleteMessage: %v", err)
	}
}

func receiveAndCompleteOn(t *testing.T, p *testenv.SBPeer, r *azservicebus.Receiver, id string) {
	t.Helper()
	p.Send(t, sbQueue, testenv.SBMessage{MessageID: id, Body: []byte(id)})
	m := receiveN(t, r, 1, 10*time.Second)[0]
	if m.MessageID != id {
		t.Fatalf("received %q, want %q", m.MessageID, id)
	}
	if err := r.CompleteMessage(sbCtx(t, 10*time.Second), m, nil); err != nil {
		t.Fatalf("CompleteMessage: %v", err)
	}
}

// TestSBPeerSurvivesGarbage: odd clients get their connection closed and
// the peer carries on serving.
func TestSBPeerSurvivesGarbage(t *testing.T) {
	p := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		// SASL header, then a frame whose body is not AMQP.
		append([]byte("AMQP\x03\x01\x00\x00"), 0, 0, 0, 12, 2, 1, 0, 0, 0xff, 0xff, 0xff, 0xff),
		// AMQP header without SASL, then a frame claiming 4 GiB.
		append([]byte("AMQP\x00\x01\x00\x00"), 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0),
	} {
		c, err := net.DialTimeout("tcp", p.AMQPAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(junk)
		c.Read(make([]byte, 512)) // whatever comes back, or EOF
		c.Close()
	}
	ctx := sbCtx(t, 10*time.Second)
	// A WebSocket without the amqp subprotocol is refused at the handshake.
	if c, _, err := websocket.Dial(ctx, p.WebSocketURL(), nil); err == nil {
		c.CloseNow()
		t.Errorf("WebSocket without subprotocol amqp accepted")
	}
	// Text instead of binary, and nonsense, on an amqp WebSocket.
	if c, _, err := websocket.Dial(ctx, p.WebSocketURL(), &websocket.DialOptions{Subprotocols: []string{"amqp"}}); err != nil {
		t.Errorf("WebSocket with subprotocol amqp: %v", err)
	} else {
		c.Write(ctx, websocket.MessageText, []byte("hello"))
		c.Write(ctx, websocket.MessageBinary, []byte("AMQP\x09\x09\x09\x09junk"))
		c.Read(ctx) // the peer closes it
		c.CloseNow()
	}

	c := sbClient(t, p.ConnectionString(), nil)
	receiveAndComplete(t, p, c, "after-garbage")
	if log := p.Log(); strings.Contains(log, "uncaught") {
		t.Errorf("peer log has an uncaught exception:\n%s", log)
	}
}
