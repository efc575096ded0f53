package support

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/servicebus"
	"github.com/storeedge/storeedge/tools/testenv"
)

const (
	reqQueue   = "support-lyon-01"
	replyQueue = "support-replies"
	shopID     = "lyon-01"
	serverID   = "storeedge-lyon-01"
	// secretKey is the shared access key of the rig's connection string, which no answer may
	// show.
	secretKey = "c3VwcG9ydC1TM0NSRVQta2V5LWZvci10ZXN0cw=="
)

// t0 is the rig's clock at the start; requests are issued relative to it.
var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// vendorKey is the vendor's signing key in the tests; otherKey signs forgeries.
var (
	vendorKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	otherKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
)

type rig struct {
	peer  *testenv.SBPeer
	db    *storage.DB
	w     *Worker
	logs  *testenv.Buffer
	clock atomic.Pointer[time.Time]
	stop  func()
	n     int // messages sent
}

// newRig runs a Worker against the Service Bus test peer, through the real SDK, with every kind
// allowed unless mod says otherwise.
func newRig(t *testing.T, mod func(*Options)) *rig {
	t.Helper()
	return newRigWithPeer(t, testenv.SBPeerOptions{Queues: []string{reqQueue, replyQueue}}, mod)
}

func newRigWithPeer(t *testing.T, peer testenv.SBPeerOptions, mod func(*Options)) *rig {
	t.Helper()
	rg := &rig{peer: testenv.StartServiceBusPeer(t, peer), logs: &testenv.Buffer{}}
	rg.clock.Store(&t0)
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rg.db = db
	cs := strings.Replace(rg.peer.ConnectionString(), "SharedAccessKey=v", "SharedAccessKey="+secretKey, 1)
	o := Options{
		Connection: servicebus.Connection{ConnectionString: cs},
		Queue:      reqQueue, ReplyQueue: replyQueue,
		Verifier:   Verifier{Key: vendorKey.Public().(ed25519.PublicKey), Shop: shopID, Server: serverID},
		Allowed:    map[string]bool{KindPing: true, KindDiagnostics: true, KindResync: true, KindRetryOutbox: true},
		DB:         db,
		Sources:    Sources{Version: "1.4.0", StartedAt: t0.Add(-time.Hour)},
		Secrets:    []string{cs, secretKey},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(rg.logs, nil)),
		Now:    func() time.Time { return *rg.clock.Load() },
	}
	if mod != nil {
		mod(&o)
	}
	rg.w = New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- rg.w.Run(ctx) }()
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

// request is a request meant for the rig's server, issued now and valid for ten minutes.
func request(kind, id string) Request {
	return Request{Kind: kind, ID: id, Shop: shopID, Server: serverID, IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
}

// send puts a message with body on the request queue and returns its message id.
func (rg *rig) send(t *testing.T, body []byte) string {
	t.Helper()
	rg.n++
	id := fmt.Sprintf("msg-%d", rg.n)
	rg.peer.Send(t, reqQueue, testenv.SBMessage{MessageID: id, Body: body, ContentType: "application/jose"})
	return id
}

// sendSigned signs r with the vendor's key and sends it.
func (rg *rig) sendSigned(t *testing.T, r Request) string {
	t.Helper()
	body, err := Sign(vendorKey, r)
	if err != nil {
		t.Fatal(err)
	}
	return rg.send(t, body)
}

// settled waits until the request queue has settled n messages in all.
func (rg *rig) settled(t *testing.T, n int) {
	t.Helper()
	rg.peer.WaitStats(t, reqQueue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Completed+s.DeadLettered == n })
}

// answers reads the answers on the reply queue, by request id.
func (rg *rig) answers(t *testing.T) map[string]testenv.SBQueued {
	t.Helper()
	out := map[string]testenv.SBQueued{}
	for _, m := range rg.peer.Messages(t, replyQueue) {
		out[m.CorrelationID] = m
	}
	return out
}

func decodeAnswer(t *testing.T, m testenv.SBQueued) (Answer, map[string]any) {
	t.Helper()
	var a Answer
	var raw struct {
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal(m.Body, &a); err != nil {
		t.Fatalf("answer %s is not JSON: %v\n%s", m.MessageID, err, m.Body)
	}
	json.Unmarshal(m.Body, &raw)
	return a, raw.Result
}

func TestPingIsAnsweredOnTheReplyQueue(t *testing.T) {
	rg := newRig(t, nil)
	msg := rg.sendSigned(t, request(KindPing, "req-ping-1"))
	rg.settled(t, 1)
	if got := rg.peer.Completed(t, reqQueue); len(got) != 1 || got[0] != msg {
		t.Fatalf("completed %v, want the request's message %s", got, msg)
	}
	ans := rg.answers(t)["req-ping-1"]
	if ans.MessageID != "req-ping-1" || ans.Subject != KindPing || ans.ContentType != "application/json" ||
		ans.ApplicationProperties["shop"] != shopID || ans.ApplicationProperties["server"] != serverID {
		t.Fatalf("answer's properties %+v", ans)
	}
	a, res := decodeAnswer(t, ans)
	if !a.OK || a.RequestID != "req-ping-1" || a.Kind != KindPing || a.Shop != shopID || a.Server != serverID || !a.AnsweredAt.Equal(t0) {
		t.Fatalf("answer %+v", a)
	}
	if res["version"] != "1.4.0" || res["uptime_seconds"] != 3600.0 || res["time"] != "2026-11-23T10:00:00Z" {
		t.Fatalf("ping result %v", res)
	}
	st := rg.w.Status()
	if st.State != LinkConnected || st.Answered != 1 || len(st.Recent) != 1 || st.Recent[0].ID != "req-ping-1" ||
		st.Recent[0].Kind != KindPing || st.Recent[0].Result != ResultOK || st.Recent[0].MessageID != msg {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(rg.logs.String(), "level=INFO msg=\"support: request answered\" request_id=req-ping-1 kind=ping result=ok") {
		t.Fatalf("the request was not logged:\n%s", rg.logs)
	}
}

// A request given back unanswered (the database failing) is not taken again at once: Service
// Bus would dead-letter it within milliseconds, its deliveries used up, where a failure of a
// few minutes should leave it to be answered. The waits grow from MinBackoff.
func TestRequestGivenBackIsNotTakenAgainAtOnce(t *testing.T) {
	const min = 100 * time.Millisecond
	rg := newRig(t, func(o *Options) { o.MinBackoff, o.MaxBackoff = min, time.Second })
	rg.db.Close() // every request fails to be remembered
	start := time.Now()
	rg.sendSigned(t, request(KindPing, "req-db-down"))
	rg.peer.WaitStats(t, reqQueue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Abandoned >= 3 })
	// Two waits came between the three deliveries: each at least half its step (min, 2×min).
	if took := time.Since(start); took < min/2+min {
		t.Errorf("3 deliveries in %v: the request was taken again without a wait", took)
	}
	if s := rg.peer.Stats(t, reqQueue); s.DeadLettered != 0 {
		t.Errorf("stats %+v: dead-lettered already", s)
	}
}

// The answer's envelope is kept as the request gave it: a UUID holding "1234-5678", the shape of
// a pairing code the result's redaction takes out, stays whole in the body's request_id, which
// the vendor matches answers by.
func TestAnswerKeepsTheRequestID(t *testing.T) {
	rg := newRig(t, nil)
	const id = "7f3c9a2e-1234-5678-9a6f-1d2e3f4a5b6c"
	rg.sendSigned(t, request(KindPing, id))
	rg.settled(t, 1)
	ans, ok := rg.answers(t)[id]
	if !ok {
		t.Fatalf("no answer with the MessageId %s", id)
	}
	if a, _ := decodeAnswer(t, ans); a.RequestID != id || !a.OK {
		t.Fatalf("answer %+v: want request_id %s", a, id)
	}
}

// Every request the server does not take is dead-lettered with its reason and what was wrong,
// answered with nothing, counted and logged; a request taken once is refused when sent again.
func TestRefusedRequestsAreDeadLetteredWithTheirReason(t *testing.T) {
	rg := newRig(t, func(o *Options) { o.Allowed[KindRetryOutbox] = false })
	ping, err := Sign(vendorKey, request(KindPing, "req-ping"))
	if err != nil {
		t.Fatal(err)
	}
	rg.send(t, ping)
	rg.settled(t, 1)
	forged, _ := Sign(otherKey, request(KindRetryOutbox, "req-forged"))
	expired := request(KindPing, "req-expired")
	expired.IssuedAt, expired.ExpiresAt = t0.Add(-time.Hour), t0.Add(-10*time.Minute)
	wrongShop := request(KindPing, "req-paris")
	wrongShop.Shop = "paris-02"
	want := map[string]struct{ reason, says string }{
		rg.send(t, forged):                                   {ReasonForged, "does not verify"},
		rg.sendSigned(t, expired):                            {ReasonExpired, "expired at 2026-11-23T09:50:00Z"},
		rg.sendSigned(t, wrongShop):                          {ReasonWrongTarget, `meant for shop "paris-02"`},
		rg.send(t, ping):                                     {ReasonReplayed, `request "req-ping" was taken before`},
		rg.sendSigned(t, request("reboot", "req-reboot")):    {ReasonUnknownKind, `kind "reboot"`},
		rg.sendSigned(t, request(KindRetryOutbox, "req-ro")): {ReasonNotAllowed, "does not allow retry-outbox requests"},
		rg.send(t, []byte("please send the configuration")):  {ReasonMalformed, "not a JWS"},
	}
	rg.settled(t, 1+len(want))
	dl := rg.peer.DeadLetters(t, reqQueue)
	if len(dl) != len(want) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dl), len(want), dl)
	}
	for _, d := range dl {
		w := want[d.MessageID]
		if d.Reason != w.reason || !strings.Contains(d.Description, w.says) {
			t.Errorf("%s dead-lettered as %q: %q; want %q saying %q", d.MessageID, d.Reason, d.Description, w.reason, w.says)
		}
	}
	if got := rg.answers(t); len(got) != 1 || got["req-ping"].MessageID == "" {
		t.Fatalf("answers %v: want the first ping's only", got)
	}
	st := rg.w.Status()
	if st.Answered != 1 || st.Refused != int64(len(want)) || len(st.Recent) != 1+len(want) {
		t.Fatalf("status %+v", st)
	}
	for _, h := range st.Recent {
		switch {
		case h.Result == ReasonForged && (h.ID != "" || h.Kind != ""):
			t.Errorf("status trusts what a forged request says: %+v", h)
		case h.Result == ReasonNotAllowed && (h.ID != "req-ro" || h.Kind != KindRetryOutbox):
			t.Errorf("status does not say which request was not allowed: %+v", h)
		}
	}
	if n := strings.Count(rg.logs.String(), `level=WARN msg="support: request refused and dead-lettered"`); n != len(want) {
		t.Errorf("%d refusals logged, want %d:\n%s", n, len(want), rg.logs)
	}
}

// After a restore, the requests the replaced database may have taken since the backup are refused:
// those issued before the restore by this server's clock, as early as the 5 minutes of clock skew
// make them; a request issued later runs (remote-support.md).
func TestRequestsFromBeforeARestoreAreRefused(t *testing.T) {
	ctx := context.Background()
	old, err := storage.Open(ctx, filepath.Join(t.TempDir(), "old.db"))
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "b")
	if err := old.Backup(ctx, backup, storage.Manifest{}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	path := filepath.Join(t.TempDir(), "restored.db")
	if _, err := storage.Restore(ctx, backup, path); err != nil {
		t.Fatal(err)
	}
	restoredAt := time.Now()
	db, err := storage.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rg := newRig(t, func(o *Options) { o.DB = db })
	now := restoredAt.Add(6 * time.Minute).UTC()
	rg.clock.Store(&now)
	early := request(KindPing, "req-early") // 4 minutes after the restore by the vendor's clock: within the skew
	early.IssuedAt, early.ExpiresAt = restoredAt.Add(4*time.Minute).UTC(), now.Add(30*time.Minute)
	late := request(KindPing, "req-late")
	late.IssuedAt, late.ExpiresAt = restoredAt.Add(6*time.Minute).UTC(), now.Add(30*time.Minute)
	earlyMsg := rg.sendSigned(t, early)
	rg.sendSigned(t, late)
	rg.settled(t, 2)
	dl := rg.peer.DeadLetters(t, reqQueue)
	if len(dl) != 1 || dl[0].MessageID != earlyMsg || dl[0].Reason != ReasonReplayed || !strings.Contains(dl[0].Description, "restored from a backup") {
		t.Fatalf("dead letters %+v: want the request issued within the skew refused as replayed", dl)
	}
	if got := rg.answers(t); len(got) != 1 || got["req-late"].MessageID == "" {
		t.Fatalf("answers %v: want the request issued after the restore answered", got)
	}
}

// A request whose message comes again (its lock expired while it ran) is answered again, with
// the same MessageId, and completed, not refused as a replay.
func TestRedeliveryIsAnsweredAgain(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	rg := newRigWithPeer(t, testenv.SBPeerOptions{Queues: []string{reqQueue, replyQueue}, LockDuration: 300 * time.Millisecond}, func(o *Options) {
		o.LockRenewInterval = time.Hour // the lock is left to expire
		o.Sources.Doctor = func(ctx context.Context) any {
			if calls.Add(1) == 1 {
				close(entered)
				<-release
			}
			return map[string]string{"doctor": "ran"}
		}
	})
	rg.sendSigned(t, request(KindDiagnostics, "req-slow"))
	<-entered
	rg.peer.WaitStats(t, reqQueue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.LockExpirations >= 1 })
	close(release)
	rg.settled(t, 1)
	if st := rg.peer.Stats(t, reqQueue); st.DeadLettered != 0 || st.Completed != 1 {
		t.Fatalf("request queue %+v: want the request completed once", st)
	}
	replies := rg.peer.Messages(t, replyQueue)
	if len(replies) != 2 || replies[0].MessageID != "req-slow" || replies[1].MessageID != "req-slow" {
		t.Fatalf("replies %+v: want the answer twice, under the request's id", replies)
	}
	if calls.Load() != 2 {
		t.Fatalf("ran %d times", calls.Load())
	}
}

// The answers of diagnostics, resync and retry-outbox, and of a request that fails.
func TestEachKindIsAnswered(t *testing.T) {
	ring := NewRing(0)
	log := slog.New(ring.Handler(slog.DiscardHandler))
	resynced := make(chan string, 1)
	rg := newRig(t, func(o *Options) {
		o.Sources.Config = func() string { return "shop:\n  id: \"lyon-01\"\ncloud:\n  store_key: \"xxxxx\"\n" }
		o.Sources.Status = func(ctx context.Context) (any, error) {
			return map[string]any{"server_id": serverID, "mode": "test"}, nil
		}
		o.Sources.Logs = ring
		o.Sources.Doctor = func(ctx context.Context) any { return map[string]any{"results": []string{"PASS data_dir writable"}} }
		o.Sources.Resync = func(ctx context.Context, c string) error { resynced <- c; return nil }
	})
	log.Info("feed: sync failed", slog.String("collection", "prices"), slog.Int("attempt", 3))
	log.Debug("not kept")
	rejectedOrder(t, rg.db)

	diag, resync := request(KindDiagnostics, "req-diag"), request(KindResync, "req-resync")
	resync.Args.Collection = "prices"
	rg.sendSigned(t, diag)
	rg.sendSigned(t, resync)
	rg.sendSigned(t, request(KindRetryOutbox, "req-retry"))
	rg.settled(t, 3)
	answers := rg.answers(t)

	a, res := decodeAnswer(t, answers["req-diag"])
	if !a.OK || !strings.Contains(res["config"].(string), `id: "lyon-01"`) || res["status"].(map[string]any)["mode"] != "test" ||
		res["doctor"] == nil || res["errors"] != nil {
		t.Fatalf("diagnostics %+v: %v", a, res)
	}
	logs := res["logs"].([]any)
	if len(logs) != 1 || logs[0].(map[string]any)["message"] != "feed: sync failed" || logs[0].(map[string]any)["attrs"].(map[string]any)["attempt"] != 3.0 {
		t.Fatalf("diagnostics logs %v: want the INFO record only", logs)
	}
	if db := res["database"].(map[string]any); db["ok"] != true || db["check"] != "quick_check" || db["schema"].(float64) < 12 {
		t.Fatalf("database check %v", db)
	}

	if a, res := decodeAnswer(t, answers["req-resync"]); !a.OK || res["collection"] != "prices" || <-resynced != "prices" {
		t.Fatalf("resync %+v %v", a, res)
	}
	if a, res := decodeAnswer(t, answers["req-retry"]); !a.OK || res["requeued"] != 1.0 {
		t.Fatalf("retry-outbox %+v %v", a, res)
	}
	if st, _ := rg.db.OrderStats(context.Background()); st.OutboxRejected != 0 || st.OutboxPending != 1 {
		t.Fatalf("outbox after retry-outbox: %+v", st)
	}
}

// Doctor's checks using up the request's time (a slow WAN) do not make the database look damaged.
func TestDiagnosticsDatabaseCheckOutlastsASlowDoctor(t *testing.T) {
	rg := newRig(t, func(o *Options) {
		o.RunTimeout = 300 * time.Millisecond
		o.Sources.Doctor = func(ctx context.Context) any {
			<-ctx.Done()
			return map[string]any{"results": []string{"FAIL cloud tcp: " + ctx.Err().Error()}}
		}
	})
	rg.sendSigned(t, request(KindDiagnostics, "req-slow-wan"))
	rg.settled(t, 1)
	a, res := decodeAnswer(t, rg.answers(t)["req-slow-wan"])
	if db := res["database"].(map[string]any); !a.OK || db["ok"] != true {
		t.Fatalf("diagnostics %+v: database %v; want it checked before doctor used the time up", a, db)
	}
}

// rejectedOrder makes an order whose upload the cloud refused.
func rejectedOrder(t *testing.T, db *storage.DB) {
	t.Helper()
	ctx := context.Background()
	o := orders.Order{Source: orders.SourceLAN, DeviceID: "pos-1", Status: "new", Currency: "EUR"}
	if _, _, err := db.CreateOrder(ctx, storage.NewOrder{Order: o, IdempotencyKey: "k1", RequestHash: "h1"}); err != nil {
		t.Fatal(err)
	}
	pending, _ := db.PendingOutbox(ctx, 10)
	if err := db.CompleteOutbox(ctx, storage.OutboxResult{Rejected: map[string]string{pending[0].Key: "unknown store"}}); err != nil {
		t.Fatal(err)
	}
}

// A request that cannot be done is answered with the reason, not dead-lettered: it was valid.
func TestFailedRequestIsAnsweredWithItsError(t *testing.T) {
	rg := newRig(t, nil) // no Resync: sync is off
	r := request(KindResync, "req-resync")
	r.Args.Collection = "stock"
	rg.sendSigned(t, r)
	rg.settled(t, 1)
	a, _ := decodeAnswer(t, rg.answers(t)["req-resync"])
	if a.OK || !strings.Contains(a.Error, "sync with the cloud is off on this server (cloud.sync: false)") {
		t.Fatalf("answer %+v", a)
	}
	if st := rg.w.Status(); st.Recent[0].Result != ResultError || !strings.Contains(st.Recent[0].Detail, "cloud.sync") {
		t.Fatalf("status %+v", st.Recent)
	}
}

// No answer carries a configured secret, wherever it turns up: in the configuration, the
// status, or the log; nor personal data in the log.
func TestAnswersCarryNoSecret(t *testing.T) {
	ring := NewRing(0)
	log := slog.New(ring.Handler(slog.DiscardHandler))
	var cs string
	rg := newRig(t, func(o *Options) {
		cs = o.Connection.ConnectionString
		o.Sources.Config = func() string { return "support:\n  servicebus:\n    connection_string: \"" + cs + "\"\n" }
		o.Sources.Status = func(ctx context.Context) (any, error) {
			return map[string]any{"last_error": "amqp: " + cs + ": refused", "route": "https://shop:" + secretKey + "@proxy.lan"}, nil
		}
		o.Sources.Logs = ring
		o.Sources.Doctor = func(ctx context.Context) any { return map[string]any{"detail": "key " + secretKey} }
	})
	log.Warn("webhook refused", slog.String("error", "the ERP said: SharedAccessKey="+secretKey), slog.String("customer_email", "jane@example.com"),
		slog.String("token", "tok-123456"))
	rg.sendSigned(t, request(KindDiagnostics, "req-diag"))
	rg.settled(t, 1)
	body := string(rg.answers(t)["req-diag"].Body)
	for _, s := range []string{secretKey, cs, "jane@example.com", "tok-123456"} {
		if strings.Contains(body, s) {
			t.Errorf("the answer shows %q:\n%s", s, body)
		}
	}
	if !strings.Contains(body, "xxxxx") {
		t.Fatalf("nothing redacted: the test shows nothing\n%s", body)
	}
}

// An answer larger than a message may carry sheds the older log records first, and says so.
func TestLargeAnswersAreShortened(t *testing.T) {
	ring := NewRing(0)
	log := slog.New(ring.Handler(slog.DiscardHandler))
	big := strings.Repeat("s", 150<<10)
	rg := newRig(t, func(o *Options) {
		o.Sources.Status = func(ctx context.Context) (any, error) { return map[string]string{"quarantine": big}, nil }
		o.Sources.Logs = ring
	})
	for i := range DefaultRingSize {
		log.Info(fmt.Sprintf("record %03d %s", i, strings.Repeat("l", 1000)))
	}
	rg.sendSigned(t, request(KindDiagnostics, "req-diag"))
	rg.settled(t, 1)
	m := rg.answers(t)["req-diag"]
	a, res := decodeAnswer(t, m)
	if len(m.Body) > MaxAnswerBytes || !a.OK || len(a.Truncated) != 1 || a.Truncated[0] != "logs" {
		t.Fatalf("%d bytes, truncated %v, error %q", len(m.Body), a.Truncated, a.Error)
	}
	logs := res["logs"].([]any)
	last := logs[len(logs)-1].(map[string]any)["message"].(string)
	if len(logs) == 0 || len(logs) >= DiagnosticsLogLines || !strings.HasPrefix(last, "record 199 ") || res["status"] == nil {
		t.Fatalf("%d log records kept, the last %.12q; status kept: %v", len(logs), last, res["status"] != nil)
	}
}

// A request running when the server stops is not answered with the stop: it goes back to the
// queue and is answered after the restart.
func TestStopWhileRunningGivesTheRequestBack(t *testing.T) {
	entered := make(chan struct{})
	rg := newRig(t, func(o *Options) {
		o.Sources.Doctor = func(ctx context.Context) any {
			close(entered)
			<-ctx.Done()
			return nil
		}
	})
	rg.sendSigned(t, request(KindDiagnostics, "req-diag"))
	<-entered
	rg.stop()
	st := rg.peer.WaitStats(t, reqQueue, 30*time.Second, func(s testenv.SBQueueStats) bool { return s.Abandoned == 1 })
	if st.Completed != 0 || st.DeadLettered != 0 || st.Active != 1 {
		t.Fatalf("request queue %+v: want the request back in the queue", st)
	}
	if got := rg.peer.Messages(t, replyQueue); len(got) != 0 {
		t.Fatalf("answered while stopping: %+v", got)
	}
	if h := rg.w.Status().Recent[0]; h.Result != ResultAbandoned || h.ID != "req-diag" {
		t.Fatalf("status %+v", h)
	}
}
