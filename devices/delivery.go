package devices

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/storeedge/storeedge/devices/push"
	"github.com/storeedge/storeedge/storage"
)

// errPeer marks the errors caused by what the device sent, which are worth telling it.
var errPeer = errors.New("device sent")

// inflight is a command written on the connection and not acknowledged yet.
type inflight struct {
	id, orderID string
	seq         int64
}

// delivery is what one connection knows of the device's queue: the commands in flight, the
// batches being stored as sent before they are written, and the last command taken from the
// queue.
type delivery struct {
	l *link
	c *push.Conn

	sent     []inflight  // written, awaiting their acks, in seq order
	pending  []batch     // taken from the queue, being stored as sent, to be written in this order
	npending int         // commands in pending
	last     int64       // seq of the last command taken from the queue
	ackWait  *time.Timer // runs while commands await their acks

	// What the check (see check) works with.
	drained  bool              // the last refill found the queue empty, with room in the window
	suspects map[int64]bool    // seqs the previous check found held back
	taken    map[int64]bool    // seqs taken from the queue since the previous check
	marks    marks             // the counts of work under way at the previous check
	retry    []storage.Command // commands a check found left behind, to be written first

	faultLogged bool // a frame breaking the protocol was logged (once a connection)
}

// marks are counts of work under way at a check: state changes queued to the writer, and
// enqueues begun. Once both are done, a command is no longer on its way to a link.
type marks struct{ writer, enqueues int64 }

// batch is commands taken from the queue together; stored receives the outcome of storing them
// as sent. The writer stores in the order it is given, so batches are stored in order.
type batch struct {
	cmds   []storage.Command
	ups    []storage.CommandUpdate // their changes to sent, each Final once stored if its command was
	stored chan error
}

// received is a frame read from the device, its payload cut to what the server reads of it (a
// reason of at most push.MaxReason bytes), with what it breaks of the protocol's payload rules.
type received struct {
	push.Frame
	fault string // Frame.PayloadFault of the frame as sent
}

// read reads the device's frames on a goroutine of its own until the connection fails; stop
// closes the connection and waits for it. The frames wait with their payloads cut: a device
// sending acks with large payloads while the server writes to it holds little memory.
func read(c *push.Conn) (frames <-chan received, failed <-chan error, stop func()) {
	fs, errs := make(chan received, 64), make(chan error, 1)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, err := c.ReadFrame()
			if err != nil {
				errs <- err
				return
			}
			r := received{Frame: f, fault: f.PayloadFault()}
			switch {
			case f.Type == push.TypeAck:
				r.Payload = nil // nothing is read of it
			case len(f.Payload) > push.MaxReason:
				r.Payload = bytes.Clone(f.Payload[:push.MaxReason])
			}
			select {
			case fs <- r:
			case <-quit:
				return
			}
		}
	}()
	return fs, errs, func() { close(quit); c.Close(); <-done }
}

// deliver writes the device's commands on an established connection and records the answers,
// until the connection fails or ctx ends.
func (l *link) deliver(ctx context.Context, c *push.Conn) error {
	frames, readErr, stop := read(c)
	defer stop()
	d := &delivery{l: l, c: c, ackWait: time.NewTimer(time.Hour)}
	defer func() {
		if ctx.Err() == nil {
			return
		}
		// The link stops (the server stops, or the device is revoked): the answers already read
		// are recorded, or an acknowledgement dropped now would leave its command open.
		d.answerRead(ctx, frames)
	}()
	d.ackWait.Stop()
	defer d.ackWait.Stop()
	checks := time.NewTicker(l.m.o.CheckEvery)
	defer checks.Stop()
	for {
		if err := d.refill(ctx); err != nil {
			return err
		}
		var stored chan error // the oldest pending batch's, nil (never ready) when none
		if len(d.pending) > 0 {
			stored = d.pending[0].stored
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.wake:
		case err := <-stored:
			if err != nil {
				return fmt.Errorf("store commands as sent: %w", err)
			}
			if err := d.write(); err != nil {
				return err
			}
		case err := <-readErr:
			// The reader queued every frame it read before the failure: a device that acks its
			// commands and then closes the connection (an app restarting after a reload) has
			// them recorded, not written again or left to expire.
			if aerr := d.answerRead(ctx, frames); aerr != nil {
				return aerr
			}
			if push.IsConnError(err) {
				return err
			}
			c.SendError(err.Error(), l.m.now())
			return fmt.Errorf("%w garbage: %w", errPeer, err)
		case f := <-frames:
			if err := d.answer(ctx, f); err != nil {
				return err
			}
		case <-d.ackWait.C:
			// Answers that arrived while this loop was busy count: read them first.
			before := len(d.sent)
			if err := d.answerRead(ctx, frames); err != nil {
				return err
			}
			if before > 0 && len(d.sent) == before {
				return fmt.Errorf("no acknowledgement of command %s within %s", d.sent[0].id, l.m.o.Timeout)
			}
		case <-checks.C:
			if err := d.check(ctx); err != nil {
				return err
			}
		}
	}
}

// answerRead records the answers read and not yet handled, in the order they came.
func (d *delivery) answerRead(ctx context.Context, frames <-chan received) error {
	for len(frames) > 0 {
		if err := d.answer(ctx, <-frames); err != nil {
			return err
		}
	}
	return nil
}

// refill takes the next commands from the queue once a quarter of the window is free, not at
// every ack (a write, and after a reconnect a query, then carries many commands), and has them
// stored as sent. They are written once that is stored, so that a command the device may have
// is never shown queued, and a write cut off by a crash still counts as an attempt; meanwhile
// the acks of those in flight are read, and the window refilled further.
func (d *delivery) refill(ctx context.Context) error {
	w := d.l.m.o.Window
	room := w - len(d.sent) - d.npending
	d.drained = false
	if room < (w+3)/4 {
		return nil
	}
	var cmds []storage.Command
	if len(d.retry) > 0 {
		n := min(room, len(d.retry))
		cmds, d.retry = d.retry[:n], d.retry[n:]
	} else {
		var err error
		if cmds, err = d.l.next(ctx, d.last, room); err != nil {
			return err
		}
		d.drained = len(cmds) == 0
		if d.drained {
			return nil
		}
		d.last = cmds[len(cmds)-1].Seq
	}
	if d.taken == nil {
		d.taken = map[int64]bool{}
	}
	ups := make([]storage.CommandUpdate, len(cmds))
	at := d.l.m.now()
	for i, cmd := range cmds {
		ups[i] = storage.CommandUpdate{Seq: cmd.Seq, ID: cmd.ID, State: storage.CommandSent, At: at}
		d.taken[cmd.Seq] = true
	}
	stored, err := d.l.m.writer.submit(ctx, ups)
	if err != nil {
		return err
	}
	d.pending = append(d.pending, batch{cmds: cmds, ups: ups, stored: stored})
	d.npending += len(cmds)
	return nil
}

// write writes the oldest pending batch, now stored as sent, in one go: those of its commands
// the store found final meanwhile (failed by a revocation, expired) are not written.
func (d *delivery) write() error {
	b := d.pending[0]
	d.pending = slices.Delete(d.pending, 0, 1)
	d.npending -= len(b.cmds)
	cmds := b.cmds[:0:0]
	for i, cmd := range b.cmds {
		if !b.ups[i].Final {
			cmds = append(cmds, cmd)
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	frames := make([]push.Frame, len(cmds))
	for i, cmd := range cmds {
		frames[i] = push.Frame{Type: push.TypeCommand, Time: cmd.CreatedAt.UnixMilli(), ID: cmd.ID, CommandType: cmd.Type, Payload: cmd.Payload}
	}
	if err := d.c.WriteFrames(frames, d.l.m.o.Timeout); err != nil {
		return fmt.Errorf("write commands: %w", err)
	}
	if len(d.sent) == 0 {
		d.ackWait.Reset(d.l.m.o.Timeout)
	}
	for _, cmd := range cmds {
		d.sent = append(d.sent, inflight{id: cmd.ID, orderID: cmd.OrderID, seq: cmd.Seq})
	}
	return nil
}

// answer handles a frame from the device: an ack or nack of a command in flight is recorded.
// Only such an answer is progress: a device that sends other acks and never these still times
// out.
func (d *delivery) answer(ctx context.Context, f received) error {
	l := d.l
	switch f.Type {
	case push.TypeAck, push.TypeNack:
	case push.TypeError:
		return fmt.Errorf("the device closed the connection: %s", printableReason(f.Payload))
	default:
		d.c.SendError("a device sends only ack, nack and error frames", l.m.now())
		return fmt.Errorf("%w a %s frame, which devices do not send", errPeer, f.Type)
	}
	if msg := f.fault; msg != "" && !d.faultLogged {
		// Read all the same (refusing it would write the command again at every reconnection),
		// but the device's maker should hear of it: once a connection.
		d.faultLogged = true
		l.m.log.Warn("devices: the device's frame breaks the push protocol; read all the same", slog.String(keyDevice, l.id),
			slog.String("frame", f.Type.String()), slog.String("fault", msg))
	}
	i := slices.IndexFunc(d.sent, func(x inflight) bool { return x.id == f.ID })
	if i < 0 {
		// An ack for a command of an earlier connection, or repeated: harmless.
		l.m.log.Debug("devices: ack for no command in flight", slog.String(keyDevice, l.id), slog.String(keyCommand, f.ID))
		return nil
	}
	c := d.sent[i]
	d.sent = slices.Delete(d.sent, i, i+1)
	d.ackWait.Stop()
	if len(d.sent) > 0 {
		d.ackWait.Reset(l.m.o.Timeout)
	}
	u := storage.CommandUpdate{Seq: c.seq, ID: c.id, OrderID: c.orderID, DeviceID: l.id, State: storage.CommandAcknowledged, At: l.m.now()}
	if f.Type == push.TypeNack {
		u.State, u.Reason = storage.CommandFailed, "refused by the device: "+printableReason(f.Payload)
		l.m.nacked.Add(1)
	} else {
		l.m.acked.Add(1)
	}
	return l.m.writer.add(ctx, u)
}

// checkLimit bounds the commands one check reports.
const checkLimit = 64

// check looks for commands the connection holds back for no reason: open in the database, but
// neither in flight, nor handed to the link and waiting to be taken, nor waiting their turn
// behind a full window. That is a defect (one kept commands queued for good behind connected
// devices once), and it must not be silent: a command found by two checks in a row, not taken
// from the queue in between, with the state changes queued and the enqueues begun before the
// first check done since, is counted in the status, logged, and written again.
func (d *delivery) check(ctx context.Context) error {
	l := d.l
	// Read before the query: what the previous check counted as under way is done, and the
	// query sees its effects.
	settled := l.m.writer.finished.Load() >= d.marks.writer && l.m.enqueues.done.Load() >= d.marks.enqueues
	open, err := l.m.db.OpenCommands(ctx, l.id, 0, l.m.now(), d.inWindow()+checkLimit)
	if err != nil {
		return err
	}
	// Read after the query: every change and enqueue that could explain what it found is
	// counted in them.
	now := marks{writer: l.m.writer.queued.Load(), enqueues: l.m.enqueues.started.Load()}
	busy := d.busy()
	found := map[int64]bool{}
	var stuck []storage.Command
	for _, c := range open {
		if c.Seq > d.last && !d.drained {
			break // waiting its turn
		}
		if busy[c.Seq] {
			continue
		}
		found[c.Seq] = true
		if settled && d.suspects[c.Seq] && !d.taken[c.Seq] {
			stuck = append(stuck, c)
		}
	}
	d.suspects, d.marks, d.taken = found, now, nil
	if len(stuck) > 0 {
		d.resend(stuck)
	}
	return nil
}

// inWindow counts the commands in flight, being stored as sent, and to be written again.
func (d *delivery) inWindow() int { return len(d.sent) + d.npending + len(d.retry) }

// busy is the set of seqs of the commands on their way: in flight, being stored as sent, to be
// written again, and handed to the link but not taken yet.
func (d *delivery) busy() map[int64]bool {
	busy := make(map[int64]bool, d.inWindow())
	for _, c := range d.sent {
		busy[c.seq] = true
	}
	for _, b := range d.pending {
		for _, c := range b.cmds {
			busy[c.Seq] = true
		}
	}
	for _, c := range d.retry {
		busy[c.Seq] = true
	}
	d.l.mu.Lock()
	for _, c := range d.l.offered {
		busy[c.Seq] = true
	}
	d.l.mu.Unlock()
	return busy
}

// resend counts, logs and writes again commands a check found left behind: those before the
// last one taken from the queue directly, the others by reading the queue again.
func (d *delivery) resend(stuck []storage.Command) {
	l := d.l
	l.m.stuck.Add(int64(len(stuck)))
	l.m.log.Warn("devices: commands left behind while the device is connected; sending them again",
		slog.String(keyDevice, l.id), slog.Int(keyCount, len(stuck)), slog.String(keyCommand, stuck[0].ID), slog.String("state", stuck[0].State))
	for _, c := range stuck {
		if c.Seq <= d.last {
			d.retry = append(d.retry, c)
		}
	}
	l.mu.Lock()
	l.reload, l.offered = true, nil
	l.mu.Unlock()
}
