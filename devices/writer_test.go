package devices

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
)

// writerDB is a database with one paired device, dv_a, closed when the test ends, and the time
// it was paired (to the millisecond, as stored).
func writerDB(t *testing.T) (*storage.DB, time.Time) {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.UnixMilli(time.Now().UnixMilli())
	if err := db.PairDevice(context.Background(), storage.Device{ID: "dv_a", Kind: "pos", Name: "a", PushPort: 8081, SecretHash: []byte("h"), PushKey: []byte("k"), PairedAt: now, PairedBy: storage.PairedByEnrollment}, nil); err != nil {
		t.Fatal(err)
	}
	return db, now
}

// The changes a link submits come back with what the store found: a command failed by a
// revocation while the link was taking it is Final, and the link does not write it.
func TestWriterReturnsFinal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, now := writerDB(t)
	cmds := []storage.Command{
		{ID: "cmd_1", DeviceID: "dv_a", Type: "print", Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "cmd_2", DeviceID: "dv_a", Type: "print", Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	}
	if err := db.EnqueueCommands(ctx, cmds, nil); err != nil {
		t.Fatal(err)
	}
	// cmd_2 expires while the link holds it.
	if n, err := db.ExpireCommands(ctx, now.Add(2*time.Hour), "ttl"); n != 2 || err != nil {
		t.Fatalf("expired %d, %v", n, err)
	}
	w := newWriter(db, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	go w.run(ctx)
	other, err := w.submit(ctx, []storage.CommandUpdate{{Seq: cmds[0].Seq, ID: "cmd_1", State: storage.CommandAcknowledged, At: now}})
	if err != nil {
		t.Fatal(err)
	}
	ups := []storage.CommandUpdate{{Seq: cmds[1].Seq, ID: "cmd_2", State: storage.CommandSent, At: now}}
	done, err := w.submit(ctx, ups)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !ups[0].Final {
		t.Error("an expired command taken as sent: Final false, so the link would write it")
	}
}

// A stop stores the changes queued before it, and those a stopping link hands over: the
// acknowledgements read before the server stops are not lost, and their commands are not
// written again after the restart.
func TestWriterStoresWhatIsQueuedAtStop(t *testing.T) {
	ctx := context.Background()
	db, now := writerDB(t)
	var cmds []storage.Command
	for i := range 3 {
		cmds = append(cmds, storage.Command{ID: fmt.Sprintf("cmd_%d", i), DeviceID: "dv_a", Type: "print", Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	}
	if err := db.EnqueueCommands(ctx, cmds, nil); err != nil {
		t.Fatal(err)
	}
	w := newWriter(db, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	stopped, stop := context.WithCancel(ctx)
	stop()
	for _, c := range cmds {
		if err := w.add(stopped, storage.CommandUpdate{Seq: c.Seq, ID: c.ID, DeviceID: "dv_a", State: storage.CommandAcknowledged, At: now}); err != nil {
			t.Fatalf("a stopping link could not hand over the acknowledgement of %s: %v", c.ID, err)
		}
	}
	w.run(stopped)
	for _, c := range cmds {
		got, err := db.GetCommand(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != storage.CommandAcknowledged {
			t.Errorf("%s is %s after the stop, want acknowledged", c.ID, got.State)
		}
	}
}

// settle is bounded whatever the writer does: with the queue full and no writer to take it (a
// revocation as the server stops), it returns after stopWrites rather than never.
func TestSettleIsBounded(t *testing.T) {
	w := newWriter(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	for range cap(w.ch) {
		w.ch <- job{}
	}
	returned := make(chan struct{})
	go func() {
		w.settle(context.WithoutCancel(context.Background()))
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(stopWrites + 10*time.Second):
		t.Fatal("settle still waits for a full queue nobody takes")
	}
}
