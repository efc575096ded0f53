package devices

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/storeedge/storeedge/devices/push"
	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/storage"
)

// maxOffered bounds the commands a link holds in memory for its device; beyond it, it reads its
// queue from the database instead.
const maxOffered = 4096

// warnEvery is how often a device that stays unreachable is logged at WARN; in between, DEBUG.
const warnEvery = 10 * time.Minute

// link keeps the push connection to one device: it dials the device, runs the hello exchange,
// writes the device's open commands in order and records the acks, and reconnects with backoff
// when the connection fails.
type link struct {
	m    *Manager
	id   string
	wake chan struct{} // new commands to send, or "retry now"

	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex // protects the fields below
	state    string
	lastErr  string
	offered  []storage.Command // stored since the link last read its queue, in seq order
	reload   bool              // offered overflowed: read the queue from the database
	lastWarn time.Time
}

func newLink(m *Manager, id string) *link {
	return &link{m: m, id: id, wake: make(chan struct{}, 1), done: make(chan struct{}), state: PushConnecting}
}

func (l *link) status() (state, lastErr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state, l.lastErr
}

func (l *link) setState(state, lastErr string) {
	l.mu.Lock()
	l.state, l.lastErr = state, lastErr
	l.mu.Unlock()
}

// poke wakes the link: new commands to send, or, while it waits to reconnect, "retry now" (the
// device just said it is back).
func (l *link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// offer hands the link a command just stored for its device.
func (l *link) offer(c storage.Command) {
	l.mu.Lock()
	if len(l.offered) < maxOffered {
		l.offered = append(l.offered, c)
	} else {
		l.offered, l.reload = nil, true
	}
	l.mu.Unlock()
	l.poke()
}

// stop ends the link and waits until its connection is closed.
func (l *link) stop() {
	l.cancel()
	<-l.done
}

// run connects and reconnects until ctx ends.
func (l *link) run(ctx context.Context) {
	defer close(l.done)
	b := backoff.New(l.m.o.RetryMin, l.m.o.RetryMax)
	for {
		connected, err := l.session(ctx)
		if ctx.Err() != nil {
			l.setState(PushOffline, "")
			return
		}
		if connected {
			b.Reset()
		}
		msg := err.Error()
		l.setState(PushOffline, msg)
		wait := b.Next(0)
		l.logFailure(ctx, connected, err, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-l.wake:
		case <-t.C:
		}
		t.Stop()
		l.setState(PushConnecting, msg)
	}
}

// logFailure logs a lost connection at WARN, and a device that stays unreachable at WARN every
// warnEvery only.
func (l *link) logFailure(ctx context.Context, connected bool, err error, wait time.Duration) {
	now := time.Now()
	l.mu.Lock()
	level := slog.LevelDebug
	if connected || now.Sub(l.lastWarn) >= warnEvery {
		level, l.lastWarn = slog.LevelWarn, now
	}
	l.mu.Unlock()
	msg := "devices: cannot reach device for push; will retry"
	if connected {
		msg = "devices: push connection closed; will reconnect"
	}
	l.m.log.LogAttrs(ctx, level, msg, slog.String(keyDevice, l.id), slog.String(keyError, err.Error()), slog.Duration("retry_in", wait))
}

// inflight is a command written on the connection and not acknowledged yet.
type inflight struct {
	id, orderID string
	seq         int64
	at          time.Time // when it was written
	// marked tells that its "sent" state is stored. It is stored with the acknowledgement when
	// that comes quickly (one row update instead of two), else after markAfter or when the
	// connection ends.
	marked bool
}

// markAfter is how long a command may await its ack before its "sent" state is stored on its own.
const markAfter = time.Second

// errPeer marks the errors caused by what the device sent, which are worth telling it.
var errPeer = errors.New("device sent")

// session runs one connection. connected tells whether the hello exchange succeeded.
func (l *link) session(ctx context.Context) (connected bool, err error) {
	m := l.m
	d, err := m.db.GetDevice(ctx, l.id)
	if err != nil {
		return false, err
	}
	if !d.RevokedAt.IsZero() {
		return false, ErrRevoked
	}
	addr := net.JoinHostPort(d.Address, strconv.Itoa(d.PushPort))
	dctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	nc, err := m.o.Dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	c, err := push.ServerHandshake(nc, d.PushKey, m.o.ServerID, d.ID, m.now(), m.o.Timeout)
	if err != nil {
		if !isNetErr(err) {
			push.SendError(nc, d.PushKey, nil, err.Error(), m.now())
		}
		return false, fmt.Errorf("%s: %w", addr, err)
	}
	l.setState(PushConnected, "")
	m.log.Info("devices: push connected", slog.String(keyDevice, l.id), slog.String(keyAddr, addr))
	// What was stored before now is read from the database; what comes later is offered.
	l.mu.Lock()
	l.reload, l.offered = true, nil
	l.mu.Unlock()
	// Expired commands are reported as such before the queue is offered to the device.
	m.expire(ctx)

	frames := make(chan push.Frame, 64)
	readErr := make(chan error, 1)
	readerDone, quit := make(chan struct{}), make(chan struct{})
	defer func() { close(quit); nc.Close(); <-readerDone }()
	go func() {
		defer close(readerDone)
		for {
			f, err := c.ReadFrame()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case frames <- f:
			case <-quit:
				return
			}
		}
	}()

	var sent []inflight
	var last int64
	ackTimer := time.NewTimer(time.Hour)
	ackTimer.Stop()
	defer ackTimer.Stop()
	markTicker := time.NewTicker(markAfter)
	defer markTicker.Stop()
	// What was written and not acknowledged is sent, and will be written again.
	defer func() { l.mark(ctx, sent, time.Time{}) }()
	for {
		// Refill once half the window is free, not at every ack: a write (and, after a
		// reconnect, a query) then carries many commands.
		if room := m.o.Window - len(sent); room >= (m.o.Window+1)/2 {
			batch, err := l.next(ctx, last, room)
			if err != nil {
				return true, err
			}
			if len(batch) > 0 {
				if err := l.write(c, batch); err != nil {
					return true, err
				}
				if len(sent) == 0 {
					ackTimer.Reset(m.o.Timeout)
				}
				now := m.now()
				for _, cmd := range batch {
					sent = append(sent, inflight{id: cmd.ID, orderID: cmd.OrderID, seq: cmd.Seq, at: now})
				}
				last = batch[len(batch)-1].Seq
				continue
			}
		}
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-l.wake:
		case err := <-readErr:
			if isNetErr(err) {
				return true, err
			}
			c.SendError(err.Error(), m.now())
			return true, fmt.Errorf("%w garbage: %w", errPeer, err)
		case f := <-frames:
			before := len(sent)
			var err error
			if sent, err = l.answer(ctx, c, f, sent); err != nil {
				return true, err
			}
			// Only an answer to a command in flight is progress: a device that sends other
			// acks and never these still times out.
			if len(sent) < before {
				ackTimer.Stop()
				if len(sent) > 0 {
					ackTimer.Reset(m.o.Timeout)
				}
			}
		case <-markTicker.C:
			if err := l.mark(ctx, sent, m.now().Add(-markAfter)); err != nil {
				return true, err
			}
		case <-ackTimer.C:
			if len(sent) > 0 {
				return true, fmt.Errorf("no acknowledgement of command %s within %s", sent[0].id, m.o.Timeout)
			}
		}
	}
}

// answer handles a frame from the device and returns what is still awaiting an ack.
func (l *link) answer(ctx context.Context, c *push.Conn, f push.Frame, sent []inflight) ([]inflight, error) {
	switch f.Type {
	case push.TypeAck, push.TypeNack:
		i := slices.IndexFunc(sent, func(x inflight) bool { return x.id == f.ID })
		if i < 0 {
			// An ack for a command of an earlier connection, or repeated: harmless.
			l.m.log.Debug("devices: ack for no command in flight", slog.String(keyDevice, l.id), slog.String(keyCommand, f.ID))
			return sent, nil
		}
		c := sent[i]
		sent = slices.Delete(sent, i, i+1)
		u := storage.CommandUpdate{Seq: c.seq, ID: c.id, OrderID: c.orderID, DeviceID: l.id, State: storage.CommandAcknowledged, At: l.m.now()}
		if !c.marked {
			u.SentAt = c.at
		}
		if f.Type == push.TypeNack {
			u.State, u.Reason = storage.CommandFailed, "refused by the device: "+printableReason(f.Payload)
		}
		return sent, l.m.writer.add(ctx, u)
	case push.TypeError:
		return sent, fmt.Errorf("the device closed the connection: %s", printableReason(f.Payload))
	default:
		c.SendError("a device sends only ack, nack and error frames", l.m.now())
		return sent, fmt.Errorf("%w a %s frame, which devices do not send", errPeer, f.Type)
	}
}

// next returns up to n commands to write after seq last: from the database after a reconnect
// or an overflow, else from those offered.
func (l *link) next(ctx context.Context, last int64, n int) ([]storage.Command, error) {
	now := l.m.now()
	l.mu.Lock()
	if l.reload {
		l.reload, l.offered = false, nil
		l.mu.Unlock()
		cmds, err := l.m.db.OpenCommands(ctx, l.id, last, now, n)
		if err != nil {
			return nil, err
		}
		if len(cmds) == n {
			l.mu.Lock()
			l.reload = true // there may be more
			l.mu.Unlock()
		}
		return cmds, nil
	}
	defer l.mu.Unlock()
	var out []storage.Command
	i := 0
	for ; i < len(l.offered) && len(out) < n; i++ {
		c := l.offered[i]
		if c.Seq > last && c.ExpiresAt.After(now) {
			out = append(out, c)
		}
	}
	l.offered = l.offered[i:]
	return out, nil
}

// mark stores the "sent" state of the commands in flight written before (all of them when
// before is zero) whose state is not stored yet.
func (l *link) mark(ctx context.Context, sent []inflight, before time.Time) error {
	for i := range sent {
		c := &sent[i]
		if c.marked || (!before.IsZero() && c.at.After(before)) {
			continue
		}
		if err := l.m.writer.add(ctx, storage.CommandUpdate{Seq: c.seq, ID: c.id, State: storage.CommandSent, At: c.at}); err != nil {
			return err
		}
		c.marked = true
	}
	return nil
}

// write writes the commands in one go.
func (l *link) write(c *push.Conn, cmds []storage.Command) error {
	frames := make([]push.Frame, len(cmds))
	for i, cmd := range cmds {
		frames[i] = push.Frame{Type: push.TypeCommand, Time: cmd.CreatedAt.UnixMilli(), ID: cmd.ID, CommandType: cmd.Type, Payload: cmd.Payload}
	}
	if err := c.WriteFrames(frames, l.m.o.Timeout); err != nil {
		return fmt.Errorf("write commands: %w", err)
	}
	return nil
}

// isNetErr tells a failed or closed connection from a peer that sent something wrong.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func printableReason(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < ' ' || c > '~' {
			c = '?'
		}
		out = append(out, c)
	}
	return strconv.Quote(string(out))
}
