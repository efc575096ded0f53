package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/orders"
)

func TestPairingCodeIsSpentOnce(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	code := []byte("hash-of-a-code")
	if err := db.AddPairingCode(ctx, code, now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	dev := func(id string, at time.Time) Device {
		return Device{ID: id, Kind: "pos", Name: id, PushPort: 8081, SecretHash: []byte("h"), PushKey: []byte("k"), PairedAt: at, PairedBy: PairedByCode}
	}
	if err := db.PairDevice(ctx, dev("dv_a", now), code); err != nil {
		t.Fatal(err)
	}
	if err := db.PairDevice(ctx, dev("dv_b", now), code); !errors.Is(err, ErrPairingCode) {
		t.Fatalf("second use: %v, want ErrPairingCode", err)
	}
	if _, err := db.GetDevice(ctx, "dv_b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused pairing stored its device: %v", err)
	}
	late := []byte("another code")
	db.AddPairingCode(ctx, late, now, now.Add(time.Minute))
	if err := db.PairDevice(ctx, dev("dv_c", now.Add(time.Minute)), late); !errors.Is(err, ErrPairingCode) {
		t.Fatalf("expired code: %v, want ErrPairingCode", err)
	}
}

func TestCommandStates(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	o, _, err := db.CreateOrder(ctx, NewOrder{Order: orders.Order{Source: orders.SourceLAN, Status: orders.StatusNew}, IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	cmds := make([]Command, 1200) // more than one INSERT's worth
	for i := range cmds {
		cmds[i] = Command{ID: fmt.Sprintf("cmd_%04d", i), DeviceID: "dv_a", Type: "print", Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	cmds[0].OrderID, cmds[0].Type = o.ID, "order.new"
	cmds[2].ExpiresAt = now.Add(time.Second)
	if err := db.EnqueueCommands(ctx, cmds, &Cursor{Name: "test_cursor", Value: 7}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(cmds); i++ {
		if cmds[i].Seq <= cmds[i-1].Seq {
			t.Fatalf("seq %d after %d: not in order", cmds[i].Seq, cmds[i-1].Seq)
		}
	}
	if v, ok, _ := db.MetaValue(ctx, "test_cursor"); !ok || v != 7 {
		t.Fatalf("cursor %d %v", v, ok)
	}
	ack := func(c Command, state string) CommandUpdate {
		return CommandUpdate{Seq: c.Seq, ID: c.ID, OrderID: c.OrderID, DeviceID: c.DeviceID, State: state, At: now}
	}
	err = db.UpdateCommands(ctx, []CommandUpdate{
		{Seq: cmds[0].Seq, ID: cmds[0].ID, State: CommandSent, At: now},
		{Seq: cmds[1].Seq, ID: cmds[1].ID, State: CommandSent, At: now},
		ack(cmds[0], CommandAcknowledged),
		ack(cmds[0], CommandFailed), // after a final state: ignored
		ack(cmds[3], CommandFailed),
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := db.ExpireCommands(ctx, now.Add(2*time.Second), "ttl"); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	for i, want := range []string{CommandAcknowledged, CommandSent, CommandExpired, CommandFailed, CommandQueued} {
		c, err := db.GetCommand(ctx, cmds[i].ID)
		if err != nil || c.State != want {
			t.Errorf("command %d: %s, %v; want %s", i, c.State, err, want)
		}
		if i == 0 && (c.Attempts != 1 || c.SentAt == nil || c.DoneAt == nil) {
			t.Errorf("acknowledged command %+v", c)
		}
	}
	open, _ := db.OpenCommands(ctx, "dv_a", 0, now, 5)
	if len(open) != 5 || open[0].ID != cmds[1].ID || open[1].ID != cmds[4].ID {
		t.Fatalf("open commands start %v", open[:2])
	}
	if d, _ := db.QueueDepths(ctx); d["dv_a"] != int64(len(cmds)-3) {
		t.Fatalf("queue depth %d", d["dv_a"])
	}
	if n, _ := db.PruneCommands(ctx, now.Add(3*time.Second), "order.new"); n != 1 {
		t.Fatalf("pruned %d of type order.new, want the 1 finished", n)
	}
	if n, _ := db.PruneCommands(ctx, now.Add(3*time.Second), ""); n != 2 {
		t.Fatalf("pruned %d, want the 2 other finished", n)
	}
	ledger, _ := db.OrderLedger(ctx, o.ID)
	if last := ledger[len(ledger)-1]; last.Stage != orders.StagePushed || last.Detail != "to device dv_a" {
		t.Fatalf("ledger %+v", ledger)
	}
}

// A command that is final already is not taken as sent again (Final, so that the link does not
// write it), and a command to a device revoked before it was queued fails at once.
func TestCommandsOfARevokedDevice(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	for _, id := range []string{"dv_a", "dv_b"} {
		if err := db.PairDevice(ctx, Device{ID: id, Kind: "pos", Name: id, PushPort: 8081, SecretHash: []byte("h"), PushKey: []byte("k"), PairedAt: now, PairedBy: PairedByEnrollment}, nil); err != nil {
			t.Fatal(err)
		}
	}
	cmd := func(id, device string) Command {
		return Command{ID: id, DeviceID: device, Type: "print", Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	before := []Command{cmd("cmd_1", "dv_a"), cmd("cmd_2", "dv_a"), cmd("cmd_3", "dv_b")}
	if err := db.EnqueueCommands(ctx, before, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateCommands(ctx, []CommandUpdate{{Seq: before[0].Seq, ID: "cmd_1", State: CommandSent, At: now}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := db.RevokeDevice(ctx, "dv_a", now, "device revoked"); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	// Targets chosen before the revocation.
	after := []Command{cmd("cmd_4", "dv_a"), cmd("cmd_5", "dv_b")}
	if err := db.EnqueueCommands(ctx, after, nil); err != nil {
		t.Fatal(err)
	}
	// The caller is told, to answer as the command is.
	if after[0].State != CommandFailed || after[0].Reason != "device revoked" || after[0].DoneAt == nil || after[1].State != "" {
		t.Errorf("queued for a revoked device and another: %+v, %+v", after[0], after[1])
	}
	for id, want := range map[string]string{"cmd_1": CommandFailed, "cmd_2": CommandFailed, "cmd_3": CommandQueued, "cmd_4": CommandFailed, "cmd_5": CommandQueued} {
		c, err := db.GetCommand(ctx, id)
		if err != nil || c.State != want || want == CommandFailed && c.Reason != "device revoked" {
			t.Errorf("%s: %s %q, %v; want %s", id, c.State, c.Reason, err, want)
		}
	}
	// A link that took them before the revocation stores them as sent now.
	ups := []CommandUpdate{
		{Seq: before[0].Seq, ID: "cmd_1", State: CommandSent, At: now},
		{Seq: after[0].Seq, ID: "cmd_4", State: CommandSent, At: now},
		{Seq: after[1].Seq, ID: "cmd_5", State: CommandSent, At: now},
	}
	if err := db.UpdateCommands(ctx, ups); err != nil {
		t.Fatal(err)
	}
	if !ups[0].Final || !ups[1].Final || ups[2].Final {
		t.Errorf("Final: %v %v %v, want true true false", ups[0].Final, ups[1].Final, ups[2].Final)
	}
}

// A command written to its device that expires before the device's acknowledgement arrives is
// acknowledged all the same (the device did it; an order's ledger says it was pushed); one
// never written stays expired whatever a device says of it.
func TestLateAcknowledgementCounts(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	if err := db.PairDevice(ctx, Device{ID: "dv_a", Kind: "pos", Name: "a", PushPort: 8081, SecretHash: []byte("h"), PushKey: []byte("k"), PairedAt: now, PairedBy: PairedByEnrollment}, nil); err != nil {
		t.Fatal(err)
	}
	o, _, err := db.CreateOrder(ctx, NewOrder{Order: orders.Order{Source: orders.SourceLAN, Status: orders.StatusNew}, IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	cmds := []Command{
		{ID: "cmd_sent", DeviceID: "dv_a", Type: "order.new", OrderID: o.ID, Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Second)},
		{ID: "cmd_never", DeviceID: "dv_a", Type: "print", Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Second)},
	}
	if err := db.EnqueueCommands(ctx, cmds, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateCommands(ctx, []CommandUpdate{{Seq: cmds[0].Seq, ID: cmds[0].ID, State: CommandSent, At: now}}); err != nil {
		t.Fatal(err)
	}
	if n, err := db.ExpireCommands(ctx, now.Add(2*time.Second), "ttl"); n != 2 || err != nil {
		t.Fatalf("expired %d, %v; want 2", n, err)
	}
	later := now.Add(3 * time.Second)
	var ups []CommandUpdate
	for _, c := range cmds {
		ups = append(ups, CommandUpdate{Seq: c.Seq, ID: c.ID, OrderID: c.OrderID, DeviceID: c.DeviceID, State: CommandAcknowledged, At: later})
	}
	if err := db.UpdateCommands(ctx, ups); err != nil {
		t.Fatal(err)
	}
	c, err := db.GetCommand(ctx, "cmd_sent")
	if err != nil || c.State != CommandAcknowledged || c.Reason != lateAck || c.DoneAt == nil || !c.DoneAt.Equal(later) {
		t.Fatalf("the command acknowledged late: %+v, %v", c, err)
	}
	if c, err := db.GetCommand(ctx, "cmd_never"); err != nil || c.State != CommandExpired || c.Reason != "ttl" {
		t.Fatalf("the command never written: %+v, %v", c, err)
	}
	ledger, _ := db.OrderLedger(ctx, o.ID)
	if last := ledger[len(ledger)-1]; last.Stage != orders.StagePushed {
		t.Fatalf("ledger %+v: not pushed", ledger)
	}
}

// The push path finds commands through the indexes of the open commands (and the prune through
// that of the closed ones), never by reading every command kept: a read of the whole table, a
// week of commands to every device, would make each fan-out slower as commands pile up.
func TestCommandQueriesReadByTheIndexes(t *testing.T) {
	db := openTest(t)
	for name, q := range map[string]string{
		"open commands":  qOpenCommands,
		"queued devices": qQueuedCommandDevices,
		"expire":         qExpireCommands,
		"prune":          qPruneCommands,
		"queue depth":    qQueueDepth,
		"queue depths":   qQueueDepths,
	} {
		args := make([]any, strings.Count(q, "?"))
		for i := range args {
			args[i] = 1
		}
		plan := queryPlan(t, db, q, args...)
		if !strings.Contains(plan, "INDEX device_commands_") || strings.Contains(plan, "SCAN device_commands;") || strings.HasSuffix(plan, "SCAN device_commands") {
			t.Errorf("%s: plan %q does not read by an index of device_commands", name, plan)
		}
	}
	// The admin list of the queued or sent commands ("what is stuck") reads the open ones, not
	// the week of commands kept.
	for _, f := range []CommandFilter{{State: CommandQueued}, {State: CommandSent, Before: 7}, {DeviceID: "dv_1", State: CommandSent}} {
		q, args := listCommandsQuery(f)
		if plan := queryPlan(t, db, q, args...); !strings.Contains(plan, "INDEX device_commands_open") {
			t.Errorf("the list of %+v: plan %q does not read by the index of open commands", f, plan)
		}
	}
}
