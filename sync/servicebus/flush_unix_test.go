//go:build unix

package servicebus

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

// signalWriter closes seen once a written line holds want.
type signalWriter struct {
	want string
	once sync.Once
	seen chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// Once the disk failed a flush of the database, nothing can be stored for good: the receiver
// stops receiving, and the orders wait in the queue instead of being delivered again and again
// until the queue dead-letters them. The failure is staged with a FIFO under the WAL's name.
func TestDiskThatFailedAFlushLeavesOrdersInTheQueue(t *testing.T) {
	w := &signalWriter{want: "not receiving orders", seen: make(chan struct{})}
	rg := newRig(t, testenv.SBPeerOptions{MaxDeliveryCount: 2},
		Options{LocalFailureBackoff: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(w, nil))})
	restore := testenv.FailWALFlushes(t, rg.db.Path())
	lan := orders.Order{Source: orders.SourceLAN, DeviceID: "pos", Status: orders.StatusNew}
	if _, _, err := rg.db.CreateOrder(context.Background(), storage.NewOrder{Order: lan, IdempotencyKey: "k", RequestHash: "h"}); err == nil {
		t.Fatal("an order was stored with the flush failing")
	}
	restore()
	rg.peer.Send(t, queue, testenv.SBMessage{MessageID: "m-1", Body: order("web-1", 500), ContentType: "application/json"})
	select {
	case <-w.seen:
	case <-time.After(30 * time.Second):
		t.Fatalf("the receiver did not stop receiving; queue %+v", rg.peer.Stats(t, queue))
	}
	if s := rg.peer.Stats(t, queue); s.DeadLettered != 0 || s.Completed != 0 || s.Active+s.Locked != 1 {
		t.Fatalf("queue %+v: want the order waiting in it", s)
	}
	if st := rg.r.Status(); !strings.Contains(st.LastError, "not receiving orders until storeedge restarts") {
		t.Errorf("status %+v: want the reason in last_error", st)
	}
}
