// Package devicesim is the reference shop device: it pairs with the server, heartbeats, listens
// on its push port, checks every pushed command (authentication, sequence, size), does each
// command id once and acknowledges it. cmd/devicesim runs one or many of them; tests and
// benchmarks use it as a real device on loopback. A device maker can read it beside
// docs/push-protocol.md and docs/devices.md.
package devicesim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/storeedge/storeedge/devices/push"
)

// Options describe a simulated device.
type Options struct {
	// Server is the base URL of the storeedge LAN API, e.g. "http://192.168.1.10"; the device
	// pairs and heartbeats there.
	Server string
	// Kind is tablet, kiosk, pos, signage, printer or other; "" is tablet.
	Kind         string
	Name         string
	AppVersion   string
	Capabilities []string
	// Listen is the push listener's address; "" is 127.0.0.1:0 (a free port).
	Listen string
	// Heartbeat is the interval between heartbeats; 0 is 30 s, negative sends none.
	Heartbeat time.Duration
	// Types are the command types the device knows; nil is the five of docs/push-protocol.md
	// (order.new, print, catalog.changed, reload, ping). A command of another type is refused
	// with a nack saying "unknown command type", as the protocol asks of a device.
	Types []string
	// Handle, when set, is called once per new command id of a known type, in order; an error
	// refuses the command (a nack with the error as the reason).
	Handle func(Command) error
	// AckDelay holds each ack back, to simulate a slow device.
	AckDelay time.Duration
	// PushVersion is the push protocol version the device speaks; 0 is push.Version. Version 1
	// is for trying a server against devices not yet updated.
	PushVersion int
	HTTPClient  *http.Client
	Logger      *slog.Logger
}

// Command is a command the device accepted.
type Command struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	Time    time.Time       `json:"time"`
}

// Rejection is a connection the device closed because of what the server (or someone posing as
// it) sent.
type Rejection struct {
	Reason string
	Err    error
}

// Device is one simulated device.
type Device struct {
	o   Options
	log *slog.Logger

	// doing serialises doing commands across connections, so that one read from a connection
	// a newer one replaced is never done after one from the newer.
	doing sync.Mutex

	mu         sync.Mutex // protects the fields below
	ln         net.Listener
	addr       string // the push listener's address, kept across restarts
	id, secret string
	key        []byte
	conn       net.Conn         // the server's current push connection
	order      uint64           // its place in the order of connections accepted
	accepted   uint64           // connections accepted, across restarts
	gen        uint64           // counts the connections adopted
	received   map[string]int   // times each command id came
	refused    map[string]error // why each refused command id was refused
	commands   []Command
	nacked     []Command
	duplicates int
	rejections []Rejection
	changed    chan struct{}
	paired     chan struct{} // closed once the device has its credentials
}

// New makes a device; it opens nothing yet.
func New(o Options) *Device {
	if o.Kind == "" {
		o.Kind = "tablet"
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PushVersion == 0 {
		o.PushVersion = push.Version
	}
	return &Device{o: o, log: o.Logger, addr: o.Listen, received: map[string]int{}, refused: map[string]error{}, changed: make(chan struct{}), paired: make(chan struct{})}
}

// SetCredentials gives the device the id and secret it received when it paired.
func (d *Device) SetCredentials(id, secret string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.key == nil {
		close(d.paired)
	}
	d.id, d.secret, d.key = id, secret, push.Key(secret)
}

// ID is the device's id, "" before pairing.
func (d *Device) ID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.id
}

// Token is the device's API credential, for "Authorization: Bearer <token>".
func (d *Device) Token() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.id + "." + d.secret
}

// listen opens the push listener if it is not open, on the address it had before if any.
func (d *Device) listen() (net.Listener, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ln != nil {
		return d.ln, nil
	}
	ln, err := net.Listen("tcp", d.addr)
	if err != nil {
		return nil, fmt.Errorf("devicesim: push listener: %w", err)
	}
	d.ln, d.addr = ln, ln.Addr().String()
	return ln, nil
}

// Listen opens the push listener now (Pair and Run open it otherwise) and returns its address.
func (d *Device) Listen() (string, error) {
	ln, err := d.listen()
	if err != nil {
		return "", err
	}
	return ln.Addr().String(), nil
}

// PushAddr is the address of the push listener (after Listen, Pair or Run).
func (d *Device) PushAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

func (d *Device) pushPort() int {
	_, p, _ := net.SplitHostPort(d.PushAddr())
	n, _ := strconv.Atoi(p)
	return n
}

// Pair pairs the device with a pairing code or, when code is "", the shop's enrollment secret.
func (d *Device) Pair(ctx context.Context, code, enrollmentSecret string) error {
	if _, err := d.listen(); err != nil {
		return err
	}
	req := map[string]any{"kind": d.o.Kind, "name": d.o.Name, "app_version": d.o.AppVersion, "push_port": d.pushPort(), "capabilities": d.o.Capabilities}
	if code != "" {
		req["code"] = code
	} else {
		req["enrollment_secret"] = enrollmentSecret
	}
	var creds struct {
		DeviceID string `json:"device_id"`
		Secret   string `json:"secret"`
		Token    string `json:"token"`
	}
	status, err := d.call(ctx, "/api/v1/devices/pair", "", req, &creds)
	if err != nil {
		return fmt.Errorf("devicesim: pair: %w", err)
	}
	// As devices.md gives them: 201, an id of dv_ and 16 of a-z 2-7, a secret of 43 base64url
	// characters, and the token to send, which is the two joined by a dot.
	if status != http.StatusCreated || !deviceIDShape.MatchString(creds.DeviceID) || !secretShape.MatchString(creds.Secret) ||
		creds.Token != creds.DeviceID+"."+creds.Secret {
		return fmt.Errorf("devicesim: pair: answer %d with device_id %q and a token that is not device_id.secret, or not of the shapes devices.md gives", status, creds.DeviceID)
	}
	d.SetCredentials(creds.DeviceID, creds.Secret)
	d.log.Info("devicesim: paired", slog.String("device_id", creds.DeviceID))
	return nil
}

// Heartbeat tells the server the device is alive, and where it listens.
func (d *Device) Heartbeat(ctx context.Context) error {
	req := map[string]any{"app_version": d.o.AppVersion, "push_port": d.pushPort()}
	if _, err := d.call(ctx, "/api/v1/devices/heartbeat", d.Token(), req, nil); err != nil {
		return fmt.Errorf("devicesim: heartbeat: %w", err)
	}
	return nil
}

// HTTPError is an answer other than 2xx.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// The shapes of the credentials a pairing gives (devices.md).
var (
	deviceIDShape = regexp.MustCompile(`^dv_[a-z2-7]{16}$`)
	secretShape   = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// call POSTs in as JSON to path and decodes a 2xx answer into out; it returns the status.
func (d *Device) call(ctx context.Context, path, token string, in, out any) (int, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.o.Server+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.o.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, &HTTPError{Status: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// Run serves the push port and heartbeats until ctx ends, then closes the listener and every
// connection; a later Run listens on the same address again (a device that was away).
func (d *Device) Run(ctx context.Context) error {
	ln, err := d.listen()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		d.mu.Lock()
		d.ln = nil
		d.mu.Unlock()
		ln.Close()
	}()
	if d.o.Heartbeat > 0 {
		wg.Go(func() { d.heartbeats(ctx) })
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("devicesim: accept: %w", err)
		}
		d.mu.Lock()
		d.accepted++
		order := d.accepted
		d.mu.Unlock()
		wg.Go(func() {
			stop := context.AfterFunc(ctx, func() { nc.Close() })
			defer stop()
			defer nc.Close()
			d.serve(ctx, nc, order)
		})
	}
}

func (d *Device) heartbeats(ctx context.Context) {
	t := time.NewTicker(d.o.Heartbeat)
	defer t.Stop()
	for {
		if err := d.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("devicesim: heartbeat failed", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// helloWait bounds the hello exchange, and the wait for the pairing answer before it.
const helloWait = 10 * time.Second

// serve runs one push connection from the server, the order-th accepted.
func (d *Device) serve(ctx context.Context, nc net.Conn, order uint64) {
	// The server dials as soon as the device is paired, which can be before the device has
	// read the answer to its pairing request (a mass roll-out): wait for it, within the time
	// the server gives the hello exchange, rather than refuse.
	deadline := time.Now().Add(helloWait)
	select {
	case <-d.paired:
	case <-time.After(helloWait):
		d.reject(nc, "not paired yet", errors.New("devicesim: no credentials"))
		return
	case <-ctx.Done():
		return
	}
	d.mu.Lock()
	id, key := d.id, d.key
	d.mu.Unlock()
	c, err := push.DeviceHandshake(nc, key, id, d.o.PushVersion, time.Now(), time.Until(deadline))
	if err != nil {
		d.reject(nc, "hello", err)
		return
	}
	d.log.Debug("devicesim: server connected", slog.String("server", c.PeerID))
	gen, ok := d.adopt(nc, order)
	if !ok {
		return
	}
	defer d.drop(nc)
	for {
		f, err := c.ReadFrame()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return
			}
			c.SendError(err.Error(), time.Now())
			d.reject(nc, "frame", err)
			return
		}
		switch f.Type {
		case push.TypeCommand:
		case push.TypeError:
			d.log.Info("devicesim: the server closed the connection", slog.String("reason", string(f.Payload)))
			return
		default:
			c.SendError("a server sends only command and error frames", time.Now())
			d.reject(nc, "frame", fmt.Errorf("devicesim: unexpected %s frame", f.Type))
			return
		}
		ack := push.Frame{Type: push.TypeAck, Time: time.Now().UnixMilli(), ID: f.ID}
		if err := d.accept(f, gen); errors.Is(err, errReplaced) {
			return
		} else if err != nil {
			ack.Type, ack.Payload = push.TypeNack, []byte(push.Reason(err.Error()))
		}
		if d.o.AckDelay > 0 {
			select {
			case <-time.After(d.o.AckDelay):
			case <-ctx.Done():
				return
			}
		}
		if err := c.WriteFrame(ack, 10*time.Second); err != nil {
			return
		}
	}
}

// adopt makes nc, the order-th connection accepted, whose hellos checked out, the device's push
// connection. The server keeps one connection per device, so a newer one means the older is dead
// on the server's side: the older is closed, and nothing more read from it is acted on. What it
// had not acknowledged comes again on the new one, in order. Newer means accepted later: the two
// hellos run side by side, and the older connection's can end last. ok is false when nc is that
// older one, which the caller closes.
func (d *Device) adopt(nc net.Conn, order uint64) (gen uint64, ok bool) {
	d.mu.Lock()
	if order < d.order {
		d.mu.Unlock()
		return 0, false
	}
	old := d.conn
	d.conn, d.order = nc, order
	d.gen++
	gen = d.gen
	d.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return gen, true
}

// drop forgets nc when it ends.
func (d *Device) drop(nc net.Conn) {
	d.mu.Lock()
	if d.conn == nc {
		d.conn = nil
		d.notifyLocked()
	}
	d.mu.Unlock()
}

// Connected reports whether the server's push connection is open.
func (d *Device) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn != nil
}

// DefaultTypes are the command types a device knows unless Options.Types says otherwise.
var DefaultTypes = []string{push.CommandOrderNew, push.CommandPrint, push.CommandCatalogChanged, push.CommandReload, push.CommandPing}

func (d *Device) types() []string {
	if d.o.Types == nil {
		return DefaultTypes
	}
	return d.o.Types
}

// errReplaced refuses a command read from a connection a newer one replaced.
var errReplaced = errors.New("devicesim: connection replaced by a newer one")

// accept does a verified command once: a command id seen before (sent again because its ack
// was lost) is only acknowledged again. gen is the connection it came on; one that a newer
// connection replaced is not acted on.
func (d *Device) accept(f push.Frame, gen uint64) error {
	cmd := Command{ID: f.ID, Type: f.CommandType, Payload: json.RawMessage(f.Payload), Time: time.UnixMilli(f.Time).UTC()}
	d.doing.Lock()
	defer d.doing.Unlock()
	d.mu.Lock()
	if gen != d.gen {
		d.mu.Unlock()
		return errReplaced
	}
	d.received[f.ID]++
	if d.received[f.ID] > 1 {
		d.duplicates++
		err := d.refused[f.ID] // refused once, refused again
		d.mu.Unlock()
		return err
	}
	d.mu.Unlock()
	var err error
	if !slices.Contains(d.types(), cmd.Type) {
		err = errors.New(push.UnknownType)
	} else if d.o.Handle != nil {
		err = d.o.Handle(cmd)
	}
	d.mu.Lock()
	if err == nil {
		d.commands = append(d.commands, cmd)
	} else {
		d.refused[cmd.ID] = err
		d.nacked = append(d.nacked, cmd)
		d.log.Warn("devicesim: command refused", slog.String("id", cmd.ID), slog.String("type", cmd.Type), slog.Any("reason", err))
	}
	d.notifyLocked()
	d.mu.Unlock()
	return err
}

func (d *Device) reject(nc net.Conn, what string, err error) {
	d.log.Warn("devicesim: connection refused", slog.String("at", what), slog.Any("error", err), slog.String("remote", nc.RemoteAddr().String()))
	d.mu.Lock()
	d.rejections = append(d.rejections, Rejection{Reason: what + ": " + err.Error(), Err: err})
	d.notifyLocked()
	d.mu.Unlock()
}

func (d *Device) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// Commands returns the commands done so far, in the order they came, each id once.
func (d *Device) Commands() []Command {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Command(nil), d.commands...)
}

// Refused returns the commands the device nacked, in the order they came, each id once.
func (d *Device) Refused() []Command {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Command(nil), d.nacked...)
}

// Duplicates counts commands received again after they were done or refused.
func (d *Device) Duplicates() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.duplicates
}

// Received tells how many times the command with this id came, the first time included.
func (d *Device) Received(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.received[id]
}

// Rejections returns the connections refused so far and why.
func (d *Device) Rejections() []Rejection {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Rejection(nil), d.rejections...)
}

// Changed returns a channel closed at the next command done or connection refused.
func (d *Device) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// WaitFor waits until cond holds (checked at each change) or ctx ends.
func (d *Device) WaitFor(ctx context.Context, cond func(*Device) bool) error {
	for {
		ch := d.Changed()
		if cond(d) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
