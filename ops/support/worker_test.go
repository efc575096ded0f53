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
	rg := &rig{peer: testenv.StartServiceBusPeer(t, testenv.SBPeerOptions{Queues: []string{reqQueue, replyQueue}}), logs: &testenv.Buffer{}}
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
