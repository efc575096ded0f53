package storage

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// A request id is taken once: the same message delivered again is recognised, the same id in
// another message is a replay until the request would be expired anyway, and a reopened
// database still knows it.
func TestRememberSupportRequest(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	until := now.Add(20 * time.Minute)
	for _, step := range []struct {
		id   string
		seq  int64
		at   time.Time
		want string
	}{
		{"req-1", 7, now, SupportRequestNew},
		{"req-1", 7, now.Add(time.Minute), SupportRequestRedelivered},
		{"req-1", 9, now.Add(2 * time.Minute), SupportRequestReplayed},
		{"req-2", 9, now.Add(2 * time.Minute), SupportRequestNew},
		// A message without a sequence number (-1) cannot be told from another: a repeat is a
		// replay, never a redelivery to run again.
		{"req-3", -1, now.Add(2 * time.Minute), SupportRequestNew},
		{"req-3", -1, now.Add(3 * time.Minute), SupportRequestReplayed},
	} {
		got, err := db.RememberSupportRequest(ctx, step.id, "ping", step.seq, now, step.at, until)
		if err != nil || got != step.want {
			t.Fatalf("%s in message %d at %s: %q, %v; want %q", step.id, step.seq, step.at, got, err, step.want)
		}
	}
	path := db.Path()
	db.Close()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, _ := db.RememberSupportRequest(ctx, "req-2", "ping", 11, now, now.Add(3*time.Minute), until); got != SupportRequestReplayed {
		t.Fatalf("after a restart: %q, want a replay", got)
	}
	// Forgotten once the request would be refused as expired anyway.
	if got, _ := db.RememberSupportRequest(ctx, "req-1", "ping", 12, until, until.Add(time.Second), until.Add(time.Hour)); got != SupportRequestNew {
		t.Fatalf("after its time: %q, want new", got)
	}
}

// A request the replaced database took after its backup is not among those the restored one
// remembers: every request issued before the restore is refused (it may be one), one issued
// after it is taken (remote-support.md).
func TestSupportRequestsAfterARestore(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	now := time.Now()
	backup := backupOf(t, db)
	// Taken on the old machine after the backup.
	if got, err := db.RememberSupportRequest(ctx, "req-after-backup", "ping", 5, now, now, now.Add(time.Hour)); err != nil || got != SupportRequestNew {
		t.Fatalf("%q, %v", got, err)
	}
	db.Close()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	if _, err := Restore(ctx, backup, path); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, path)
	defer db.Close()
	later := time.Now().Add(time.Second)
	if got, err := db.RememberSupportRequest(ctx, "req-after-backup", "ping", 6, now, later, now.Add(time.Hour)); err != nil || got != SupportRequestBeforeRestore {
		t.Fatalf("a request issued before the restore, sent again: %q, %v; want it refused", got, err)
	}
	// Its message delivered once more (the dead-lettering failed): refused again, not run.
	if got, err := db.RememberSupportRequest(ctx, "req-after-backup", "ping", 6, now, later.Add(time.Second), now.Add(time.Hour)); err != nil || got != SupportRequestBeforeRestore {
		t.Fatalf("the refused message delivered again: %q, %v; want it refused again", got, err)
	}
	if got, err := db.RememberSupportRequest(ctx, "req-new", "ping", 7, later, later, later.Add(time.Hour)); err != nil || got != SupportRequestNew {
		t.Fatalf("a request issued after the restore: %q, %v; want it taken", got, err)
	}
}

func TestRetryRejectedOutbox(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	for _, k := range []string{"k1", "k2", "k3"} {
		if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: k, RequestHash: k}); err != nil {
			t.Fatal(err)
		}
	}
	pending, _ := db.PendingOutbox(ctx, 10)
	res := OutboxResult{Delivered: []string{pending[0].Key}, Rejected: map[string]string{pending[1].Key: "unknown product", pending[2].Key: "unknown store"}}
	if err := db.CompleteOutbox(ctx, res); err != nil {
		t.Fatal(err)
	}
	changed := db.OutboxChanged()
	n, err := db.RetryRejectedOutbox(ctx)
	if err != nil || n != 2 {
		t.Fatalf("retried %d, %v; want 2", n, err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("the outbox worker was not woken")
	}
	if st, _ := db.OrderStats(ctx); st.OutboxPending != 2 || st.OutboxRejected != 0 {
		t.Fatalf("after retry: %+v", st)
	}
	if n, _ := db.RetryRejectedOutbox(ctx); n != 0 {
		t.Fatalf("retried %d the second time, want 0", n)
	}
}
