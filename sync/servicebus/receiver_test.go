package servicebus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

const queue = "orders"

func order(id string, total int64) []byte {
	return []byte(fmt.Sprintf(`{"order_id":%q,"created_at":"2026-11-23T10:00:00Z","currency":"EUR","lines":[{"product_id":"P1","name":"Tea","quantity":2,"unit_price":250}],"total":%d}`, id, total))
}

type rig struct {
	peer *testenv.SBPeer
	db   *storage.DB
	r    *Receiver
	stop func()
}

func newRig(t *testing.T, peerOpts testenv.SBPeerOptions, opts Options) *rig {
	t.Helper()
	peer := testenv.StartServiceBusPeer(t, peerOpts)
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	opts.DB = db
	opts.Queue = queue
	if opts.ConnectionString == "" {
		opts.ConnectionString = peer.ConnectionString()
	}
	opts.MinBackoff, opts.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
	r := NewReceiver(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	rg := &rig{peer: peer, db: db, r: r}
	rg.stop = func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			rg.stop()
		}
	})
	return rg
}

func (rg *rig) orders(t *testing.T) []orders.Order {
	t.Helper()
	o, err := rg.db.ListOrders(context.Background(), storage.OrderFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestReceiverStoresOnceAndDeadLettersInvalid(t *testing.T) {
	rg := newRig(t, testenv.SBPeerOptions{}, Options{TestMode: true})
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "m-1", Body: order("web-1", 500), ContentType: "application/json"})
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "m-2", Body: order("web-2", 999), ContentType: "application/json"})
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "m-3", Body: []byte("not json"), ContentType: "application/json"})
	// The same message again, as Service Bus does after a lost lock.
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "m-1", Body: order("web-1", 500), ContentType: "application/json"})
	rg.peer.WaitStats(t, queue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Completed == 2 && s.DeadLettered == 2 })
	got := rg.orders(t)
	if len(got) != 1 || got[0].ExternalID != "web-1" || got[0].Source != orders.SourceServiceBus || !got[0].Test || got[0].Total != 500 {
		t.Fatalf("orders %+v", got)
	}
	dl := rg.peer.DeadLetters(t, queue)
	reasons := map[string]string{}
	for _, d := range dl {
		if d.Reason != deadLetterReason {
			t.Errorf("%s dead-lettered with reason %q", d.MessageID, d.Reason)
		}
		reasons[d.MessageID] = d.Description
	}
	if !strings.Contains(reasons["m-2"], "total: 999 differs") || !strings.Contains(reasons["m-3"], "not an order document") {
		t.Fatalf("dead-letter descriptions %v", reasons)
	}
	st := rg.r.Status()
	if st.State != LinkConnected || st.Stored != 1 || st.Duplicates != 1 || st.DeadLettered != 2 || st.LastMessageAt == nil {
		t.Fatalf("status %+v", st)
	}
	ledger, _ := rg.db.OrderLedger(context.Background(), got[0].ID)
	if ledger[0].Stage != orders.StageReceived || !strings.Contains(ledger[0].Detail, "servicebus") {
		t.Fatalf("ledger %+v", ledger)
	}
}

// A message whose bad value is the size of the message is dead-lettered with a short reason that
// says which field: the reason goes back in the settlement's one AMQP frame.
func TestHugeBadValueIsDeadLetteredWithAShortReason(t *testing.T) {
	rg := newRig(t, testenv.SBPeerOptions{}, Options{})
	body := strings.Replace(string(order("web-1", 500)), "2026-11-23T10:00:00Z", strings.Repeat("9", 200<<10), 1)
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "m-huge", Body: []byte(body), ContentType: "application/json"})
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "m-good", Body: order("web-2", 500), ContentType: "application/json"})
	rg.peer.WaitStats(t, queue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Completed == 1 && s.DeadLettered == 1 })
	dl := rg.peer.DeadLetters(t, queue)
	if len(dl) != 1 || dl[0].MessageID != "m-huge" || dl[0].Reason != deadLetterReason || dl[0].DeliveryCount != 0 ||
		!strings.HasPrefix(dl[0].Description, `created_at: "99999`) || len(dl[0].Description) > MaxReasonBytes+len("…") {
		t.Fatalf("dead letters: %d: %.300v", len(dl), dl)
	}
	if st := rg.r.Status(); st.DeadLettered != 1 || st.Reconnects != 0 {
		t.Fatalf("status %+v", st)
	}
}

// A stop of the receiver while an order is being stored (the database busy a moment) lets the
// store finish and completes the message, instead of abandoning it to come again after the
// restart with an ERROR in the log.
func TestStopWhileStoringCompletesTheMessage(t *testing.T) {
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{})
	path := filepath.Join(t.TempDir(), "shop.db")
	db, err := storage.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Another connection holds the database's write lock: the store waits for it.
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	r := NewReceiver(Options{DB: db, Queue: queue, ConnectionString: peer.ConnectionString(),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	peer.Send(t, queue, testenv.SBMessage{MessageID: "m-1", Body: order("web-1", 500), ContentType: "application/json"})
	peer.WaitStats(t, queue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Locked == 1 })
	// Locked at the peer is delivered to the client library, not yet handed to the receiver:
	// the stop must come once the receiver has it (then the store waits for the lock).
	for deadline := time.Now().Add(30 * time.Second); r.Status().Received == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the receiver was not handed the message within 30 s")
		}
	}
	cancel()
	if _, err := conn.ExecContext(context.Background(), "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	st := peer.Stats(t, queue)
	if st.Completed != 1 || st.Abandoned != 0 {
		t.Fatalf("queue %+v, want the message completed; log:\n%s", st, logs)
	}
	if o, err := db.ListOrders(context.Background(), storage.OrderFilter{Limit: 10}); err != nil || len(o) != 1 {
		t.Fatalf("orders %+v (%v)", o, err)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("log:\n%s", logs)
	}
}

// A publisher that rebuilds a message on retry sends the same cloud order under a new MessageId:
// it is stored once. A MessageId or a cloud order id that comes back with a different order is
// not dropped in silence: the message is dead-lettered with the reason and logged.
func TestReceiverDeduplicatesOnTheCloudOrderID(t *testing.T) {
	logs := &testenv.Buffer{}
	rg := newRig(t, testenv.SBPeerOptions{}, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	step := func(msg testenv.SBMessage, cond func(testenv.SBQueueStats) bool) {
		t.Helper()
		rg.peer.Send(t, queue, msg)
		rg.peer.WaitStats(t, queue, 30*time.Second, cond)
	}
	step(testenv.SBMessage{MessageID: "m-1", Body: order("web-1", 500)},
		func(s testenv.SBQueueStats) bool { return s.Completed == 1 })
	// The same order rebuilt: a new MessageId, the same fields written in another order, its
	// created_at the same instant in another zone.
	rebuilt := []byte(`{"total":500,"order_id":"web-1","lines":[{"unit_price":250,"quantity":2,"name":"Tea","product_id":"P1"}],"currency":"EUR","created_at":"2026-11-23T11:00:00+01:00"}`)
	step(testenv.SBMessage{MessageID: "m-2", Body: rebuilt},
		func(s testenv.SBQueueStats) bool { return s.Completed == 2 })
	// A MessageId used again for another order.
	step(testenv.SBMessage{MessageID: "m-1", Body: order("web-2", 500)},
		func(s testenv.SBQueueStats) bool { return s.DeadLettered == 1 })
	// The cloud order id again, with other contents.
	changed := []byte(`{"order_id":"web-1","created_at":"2026-11-23T10:00:00Z","currency":"EUR","lines":[{"product_id":"P1","name":"Tea","quantity":3,"unit_price":250}],"total":750}`)
	step(testenv.SBMessage{MessageID: "m-3", Body: changed},
		func(s testenv.SBQueueStats) bool { return s.DeadLettered == 2 })
	// A redelivery of the rebuilt message is still recognised by its MessageId.
	step(testenv.SBMessage{MessageID: "m-2", Body: rebuilt},
		func(s testenv.SBQueueStats) bool { return s.Completed == 3 })

	got := rg.orders(t)
	if len(got) != 1 || got[0].ExternalID != "web-1" || got[0].Total != 500 {
		t.Fatalf("orders %+v: want web-1 once, as first received", got)
	}
	want := map[string]struct{ reason, says string }{
		"m-1": {deadLetterMessageIDReused, "web-2"},
		"m-3": {deadLetterOrderConflict, "web-1"},
	}
	dl := rg.peer.DeadLetters(t, queue)
	for _, d := range dl {
		w, ok := want[d.MessageID]
		if !ok || d.Reason != w.reason || !strings.Contains(d.Description, w.says) || !strings.Contains(d.Description, "order 1") {
			t.Errorf("%s dead-lettered as %q: %q; want %q naming %s and the stored order 1", d.MessageID, d.Reason, d.Description, w.reason, w.says)
		}
		if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "message_id="+d.MessageID) {
			t.Errorf("the dead-lettering of %s was not logged as an error:\n%s", d.MessageID, logs)
		}
	}
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2: %+v", len(dl), dl)
	}
	eventually(t, 10*time.Second, "every message counted", func() bool { st := rg.r.Status(); return st.Received == 5 })
	if st := rg.r.Status(); st.Stored != 1 || st.Duplicates != 2 || st.DeadLettered != 2 {
		t.Fatalf("status %+v: want 1 stored, 2 duplicates, 2 dead-lettered", st)
	}
}

// A quiet queue is not a broken one: once the receive link is attached, status says so before
// any message arrives.
func TestReceiverIsConnectedOnAQuietQueue(t *testing.T) {
	rg := newRig(t, testenv.SBPeerOptions{}, Options{})
	rg.peer.WaitStats(t, queue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Receivers == 1 })
	eventually(t, 10*time.Second, "status connected on an empty queue", func() bool { return rg.r.Status().State == LinkConnected })
	if st := rg.r.Status(); st.LastError != "" || st.Received != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestReceiverRecoversWhenTheNamespaceGoesAway(t *testing.T) {
	log := &testenv.Buffer{}
	rg := newRig(t, testenv.SBPeerOptions{}, Options{Logger: slog.New(slog.NewTextHandler(log, nil))})
	lost := func() int { return strings.Count(log.String(), "link lost") }
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "a", Body: order("web-a", 500)})
	rg.peer.WaitStats(t, queue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Completed == 1 })

	// A short drop: the link comes back by itself.
	rg.peer.DropConnections(t)
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "b", Body: order("web-b", 500)})
	rg.peer.WaitStats(t, queue, time.Minute, func(s testenv.SBQueueStats) bool { return s.Completed == 2 })

	// A long outage: status says so, and the receiver comes back once the namespace does.
	rg.peer.Refuse(t, true)
	rg.peer.DropConnections(t)
	eventually(t, time.Minute, "status to show the link down", func() bool { return rg.r.Status().State != LinkConnected })
	before := lost()
	if !log.WaitUntil(func(out string) bool { return strings.Count(out, "link lost") >= before+3 }, time.Minute, nil) {
		t.Fatalf("fewer than three attempts refused while the namespace was away:\n%s", log)
	}
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "c", Body: order("web-c", 500)})
	rg.peer.Refuse(t, false)
	rg.peer.WaitStats(t, queue, time.Minute, func(s testenv.SBQueueStats) bool { return s.Completed == 3 })
	if got := rg.orders(t); len(got) != 3 {
		t.Fatalf("%d orders after the namespace came back, want 3", len(got))
	}
	// Two links were lost; the attempts refused in between are not reconnections.
	if st := rg.r.Status(); st.State != LinkConnected || st.Reconnects == 0 || st.Reconnects > 2 || st.LastError != "" {
		t.Fatalf("status %+v: want connected again, after one or two reconnections", st)
	}
}

// eventually polls an in-process state that has no signal of its own; the deadline only bounds a
// failure.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReceiverOverWebSocketsThroughProxy takes the production path: AMQP over TLS WebSockets,
// dialled by the WAN dialer through a real HTTP CONNECT proxy. A message whose order was stored
// just before a crash (so it was never completed) is completed on redelivery without a second
// order.
func TestReceiverOverWebSocketsThroughProxy(t *testing.T) {
	certFile, keyFile, caFile, _ := testenv.TestCertWithCAFile(t)
	proxyLog := filepath.Join(t.TempDir(), "tinyproxy.log")
	proxy := testenv.StartTinyproxy(t, testenv.TinyproxyOptions{LogFile: proxyLog})
	dialer, err := wan.New(wan.Options{ProxyURL: "http://" + proxy, ExtraCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	peerOpts := testenv.SBPeerOptions{TLSCert: certFile, TLSKey: keyFile}
	// The receiver starts after the crash-time order is in place; the peer comes first for its
	// connection string.
	peer := testenv.StartServiceBusPeer(t, peerOpts)
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, _ := Decode(order("web-1", 500))
	if _, _, err := db.CreateOrder(context.Background(), storage.NewOrder{Order: p.Order(false), MessageID: "m-1"}); err != nil {
		t.Fatal(err)
	}
	r := NewReceiver(Options{DB: db, ConnectionString: peer.WebSocketConnectionString(), Queue: queue, WebSockets: true,
		DialContext: dialer.DialContext, TLSConfig: dialer.TLSConfig})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	peer.Send(t, queue, testenv.SBMessage{MessageID: "m-1", Body: order("web-1", 500)})
	peer.Send(t, queue, testenv.SBMessage{MessageID: "m-2", Body: order("web-2", 500)})
	peer.WaitStats(t, queue, time.Minute, func(s testenv.SBQueueStats) bool { return s.Completed == 2 })
	o, _ := db.ListOrders(context.Background(), storage.OrderFilter{Limit: 10})
	if len(o) != 2 {
		t.Fatalf("%d orders, want 2 (the redelivered one stored once)", len(o))
	}
	// The peer sees a completion before the SDK's call returns and the receiver counts it.
	eventually(t, 10*time.Second, "both messages counted", func() bool { st := r.Status(); return st.Stored+st.Duplicates == 2 })
	if st := r.Status(); st.Stored != 1 || st.Duplicates != 1 {
		t.Fatalf("status %+v", st)
	}
	if c := peer.Connections(t); c.Accepted["wss"] == 0 || c.Accepted["tcp"] != 0 {
		t.Fatalf("connections %+v: want WebSockets only", c)
	}
	b, _ := os.ReadFile(proxyLog)
	if !strings.Contains(string(b), "CONNECT 127.0.0.1:") {
		t.Fatal("the proxy saw no tunnel: the receiver did not go through the WAN dialer")
	}
}

// An order that cannot be stored for a second (disk full, say) is abandoned, and receiving
// pauses with a growing backoff (here from 200 ms): the message is not delivered again at once,
// five times within the second, until Service Bus dead-letters it for its delivery count; it is
// stored once the failure ends.
func TestLocalFailurePausesReceiving(t *testing.T) {
	rg := newRig(t, testenv.SBPeerOptions{MaxDeliveryCount: 5}, Options{LocalFailureBackoff: 200 * time.Millisecond})
	// The receiver writes (and fails) beside this connection: it waits for the lock.
	raw, err := sql.Open("sqlite", "file:"+rg.db.Path()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`CREATE TRIGGER disk_full BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "m-1", Body: order("web-1", 500), ContentType: "application/json"})
	deadline := time.Now().Add(30 * time.Second)
	for rg.r.Status().Abandoned < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want the first delivery abandoned", rg.r.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // the failure lasts a second from the first abandoned delivery
	if _, err := raw.Exec(`DROP TRIGGER disk_full`); err != nil {
		t.Fatal(err)
	}
	rg.peer.WaitStats(t, queue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Completed == 1 || s.DeadLettered > 0 })
	if s := rg.peer.Stats(t, queue); s.Completed != 1 || s.DeadLettered != 0 {
		t.Fatalf("queue %+v: want the order completed, not dead-lettered", s)
	}
	if got := rg.orders(t); len(got) != 1 || got[0].ExternalID != "web-1" {
		t.Fatalf("orders %+v", got)
	}
}

// The WebSocket to the namespace follows no redirect: the namespace's token would follow it to
// another host, or in clear. The dial fails instead.
func TestWebSocketFollowsNoRedirect(t *testing.T) {
	var followed atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Store(true) }))
	defer elsewhere.Close()
	ns := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/$servicebus/websocket", http.StatusFound))
	defer ns.Close()
	var d net.Dialer
	c := Connection{DialContext: d.DialContext}
	conn, err := c.dialWebSocket(t.Context(), azservicebus.NewWebSocketConnArgs{Host: "ws://" + strings.TrimPrefix(ns.URL, "http://") + "/$servicebus/websocket"})
	if err == nil {
		conn.Close()
		t.Fatal("the WebSocket dial followed a redirect and succeeded")
	}
	if followed.Load() {
		t.Fatal("the redirect was followed")
	}
}

// A queue the namespace does not have ends Run with ErrQueueMissing when the caller asked for it
// (the cloud named the queue, and is asked again), and the status says why.
func TestMissingQueueEndsRunWhenAsked(t *testing.T) {
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{Queues: []string{queue, "orders-2"}})
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := NewReceiver(Options{DB: db, ConnectionString: peer.ConnectionString(), Queue: "orders-moved-away", EndWhenMissing: true,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = r.Run(ctx)
	if !errors.Is(err, ErrQueueMissing) || !strings.Contains(err.Error(), `"orders-moved-away"`) {
		t.Fatalf("Run on a missing queue: %v, want ErrQueueMissing naming it", err)
	}
	if st := r.Status(); st.State != LinkDisconnected || !strings.Contains(st.LastError, "not-found") {
		t.Errorf("status %+v: want disconnected, saying the queue was not found", st)
	}
	// The queues the cloud names next are used by the same receiver, its counters going on.
	run := func(q string, id string) {
		t.Helper()
		r.SetQueue(q)
		if st := r.Status(); st.LastError != "" || st.Queue != q {
			t.Errorf("status after SetQueue(%q): %+v", q, st)
		}
		peer.Send(t, q, testenv.SBMessage{MessageID: id, Body: order("web-"+id, 500)})
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		peer.WaitStats(t, q, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Completed == 1 })
		stop()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}
	run(queue, "a")
	run("orders-2", "b")
	if st := r.Status(); st.Queue != "orders-2" || st.Received != 2 || st.Stored != 2 {
		t.Errorf("status on the third queue %+v: want 2 received and stored in all", st)
	}
}

// The status's last error never shows the connection string's key or signature, should the
// client library or a proxy echo it.
func TestStatusErrorHidesTheConnectionStringsSecret(t *testing.T) {
	const key = "c2VjcmV0LWtleS1vZi10aGUtcG9saWN5"
	r := NewReceiver(Options{ConnectionString: "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=" + key})
	got := r.errorText(fmt.Errorf("amqp: link refused: Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKey=%s: unauthorized", key))
	if strings.Contains(got, key) || !strings.Contains(got, "SharedAccessKey=xxxxx: unauthorized") {
		t.Errorf("status error %q", got)
	}
	// A key written twice: which one the client library takes is its choice, neither is shown.
	const first = "Zmlyc3Qta2V5LW9mLXRoZS1wb2xpY3k="
	r = NewReceiver(Options{ConnectionString: "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKey=" + first + ";SharedAccessKeyName=listen;SharedAccessKey=" + key})
	if got := r.errorText(fmt.Errorf("amqp: unauthorized for key %s / %s", first, key)); strings.Contains(got, first) || strings.Contains(got, key) {
		t.Errorf("status error with a key written twice: %q", got)
	}
}

// A namespace (or a proxy or firewall on the way) that accepts the connection and then says
// nothing does not hold the link "connecting" for ever: the attach gives up within its bound,
// status and the log say why, and the receiver tries again.
func TestSilentNamespaceFailsTheAttach(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case held <- c: // kept open, never answered
			default:
				c.Close()
			}
		}
	}()
	defer func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	}()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logs := &testenv.Buffer{}
	var d net.Dialer
	r := NewReceiver(Options{DB: db, Queue: queue, WebSockets: true,
		ConnectionString: "Endpoint=sb://storeedge-test.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=dGVzdA==",
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		},
		AttachTimeout: 500 * time.Millisecond,
		MinBackoff:    50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if !logs.WaitFor("servicebus: link lost, reconnecting", 30*time.Second, nil) {
		t.Fatalf("no failure logged after 30 s on a silent connection; status %+v", r.Status())
	}
	if st := r.Status(); st.State == LinkConnected || !strings.Contains(st.LastError, "no answer within 500ms") {
		t.Errorf("status %+v, want the link down and the silence as its last error", st)
	}
}

// A connection the client library makes again by itself (a proxy cutting long connections)
// counts as a reconnection and is logged, though no error reaches the receiver: status and
// storeedge_servicebus_reconnects_total show what operations.md says they show.
func TestConnectionsMadeAgainAreCounted(t *testing.T) {
	peer, r, logs := runOverWebSockets(t, nil)
	const drops = 2
	for i := 0; i <= drops; i++ {
		if i > 0 {
			peer.DropConnections(t)
		}
		peer.Send(t, queue, testenv.SBMessage{MessageID: fmt.Sprintf("m-%d", i), Body: order(fmt.Sprintf("web-%d", i), 500)})
		peer.WaitStats(t, queue, time.Minute, func(s testenv.SBQueueStats) bool { return s.Completed == i+1 })
	}
	st := r.Status()
	lost := strings.Count(logs.String(), "connection lost, made again")
	if st.Reconnects != drops || lost != drops || st.State != LinkConnected {
		t.Errorf("after %d connections dropped: status %+v, %d lines logged; want %d reconnections counted and logged\n%s", drops, st, lost, drops, logs)
	}
}

// A loss after one the client library recovered from by itself counts too: the first loss's
// redial does not hide the next (once the two are apart; sameLoss is shortened here).
func TestLossAfterARedialIsCounted(t *testing.T) {
	defer func(d time.Duration) { sameLoss = d }(sameLoss)
	sameLoss = 0
	var down atomic.Bool
	peer, r, logs := runOverWebSockets(t, func(dial dialFunc) dialFunc {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			if down.Load() {
				return nil, errors.New("network down")
			}
			return dial(ctx, network, addr)
		}
	})
	for i := range 2 {
		if i > 0 {
			peer.DropConnections(t) // the first loss: the client library makes the connection again
		}
		peer.Send(t, queue, testenv.SBMessage{MessageID: fmt.Sprintf("m-%d", i), Body: order(fmt.Sprintf("web-%d", i), 500)})
		peer.WaitStats(t, queue, time.Minute, func(s testenv.SBQueueStats) bool { return s.Completed == i+1 })
	}
	down.Store(true)
	peer.DropConnections(t) // the second: no connection can be made
	if !logs.WaitFor("servicebus: link lost, reconnecting", time.Minute, nil) {
		t.Fatalf("the second loss was not logged; status %+v", r.Status())
	}
	down.Store(false)
	eventually(t, time.Minute, "connected again", func() bool { return r.Status().State == LinkConnected })
	if st := r.Status(); st.Reconnects != 2 {
		t.Errorf("status %+v: want 2 reconnections, the redial and the loss after it\n%s", st, logs)
	}
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// runOverWebSockets runs a receiver over TLS WebSockets to a test peer, its WAN dialer wrapped by
// wrap when given, until the test ends.
func runOverWebSockets(t *testing.T, wrap func(dialFunc) dialFunc) (*testenv.SBPeer, *Receiver, *testenv.Buffer) {
	t.Helper()
	certFile, keyFile, caFile, _ := testenv.TestCertWithCAFile(t)
	dialer, err := wan.New(wan.Options{ExtraCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	peer := testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{TLSCert: certFile, TLSKey: keyFile})
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	dial := dialFunc(dialer.DialContext)
	if wrap != nil {
		dial = wrap(dial)
	}
	logs := &testenv.Buffer{}
	r := NewReceiver(Options{DB: db, ConnectionString: peer.WebSocketConnectionString(), Queue: queue, WebSockets: true,
		DialContext: dial, TLSConfig: dialer.TLSConfig, MinBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done }) // before the database closes: cleanups run last first
	return peer, r, logs
}
