package devices

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/storeedge/storeedge/devices/push"
	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/clip"
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
	m     *Manager
	id    string
	wake  chan struct{} // new commands to send
	retry chan struct{} // "retry now": the device said it is back

	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex // protects the fields below
	state    string
	lastErr  string
	version  int               // push protocol version of the last connection; 0: none yet
	offered  []storage.Command // stored since the link last read its queue, in seq order
	reload   bool              // offered overflowed: read the queue from the database
	lastWarn time.Time
	warnedV1 bool // the device was told to be updated from version 1
}

func newLink(m *Manager, id string) *link {
	return &link{m: m, id: id, wake: make(chan struct{}, 1), retry: make(chan struct{}, 1), done: make(chan struct{}), state: PushConnecting}
}

func (l *link) status() (state, lastErr string, version int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state, l.lastErr, l.version
}

func (l *link) setState(state, lastErr string) {
	l.mu.Lock()
	l.state, l.lastErr = state, lastErr
	l.mu.Unlock()
}

// poke wakes the connected link: new commands to send. A link waiting to reconnect keeps its
// backoff (push-protocol.md): a command stored for a device away does not make it dial again.
func (l *link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// retryNow ends the wait of a link waiting to reconnect: the device just said it is back.
func (l *link) retryNow() {
	select {
	case l.retry <- struct{}{}:
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
			select { // the heartbeats of a device that was connected say nothing of now
			case <-l.retry:
			default:
			}
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
		case <-l.retry:
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
	c, err := push.ServerHandshake(nc, d.PushKey, m.o.ServerID, d.ID, m.o.MinPushVersion, m.now(), m.o.Timeout)
	if err != nil {
		return false, fmt.Errorf("%s: %w", addr, err)
	}
	l.connected(c.Version(), addr)
	// What was stored before now is read from the database; what comes later is offered.
	l.mu.Lock()
	l.reload, l.offered = true, nil
	l.mu.Unlock()
	// Expired commands are reported as such before the queue is offered to the device.
	m.expire(ctx)

	return true, l.deliver(ctx, c)
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

// connected records a connection made in the given protocol version. A device that speaks
// version 1 is told once (per run) to the log: its hello is bound to nothing, so one replayed
// from an earlier connection passes for it.
func (l *link) connected(version int, addr string) {
	l.mu.Lock()
	l.state, l.lastErr, l.version = PushConnected, "", version
	warn := version < 2 && !l.warnedV1
	l.warnedV1 = l.warnedV1 || warn
	l.mu.Unlock()
	l.m.log.Info("devices: push connected", slog.String(keyDevice, l.id), slog.String(keyAddr, addr), slog.Int("version", version))
	if warn {
		l.m.log.Warn("devices: device speaks push protocol version 1, whose hello can be replayed; update it, then set devices.push_min_version to 2",
			slog.String(keyDevice, l.id), slog.String(keyAddr, addr))
	}
}

func printableReason(b []byte) string {
	return clip.Quoted(string(b), 200)
}
