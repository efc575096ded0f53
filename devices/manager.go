package devices

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/storeedge/storeedge/devices/push"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// Options configure a Manager. Zero values take defaults: the configuration's
// (config.DefaultDevices…) for what a devices.* key sets, the constants below for the rest.
type Options struct {
	DB       *storage.DB
	ServerID string // sent in the push hello; "" is "storeedge"
	// EnrollmentSecret, when set, pairs any device that presents it (mass roll-out).
	EnrollmentSecret string
	PairingCodeTTL   time.Duration // how long a pairing code is valid
	PairingAttempts  int           // failed pairing attempts allowed per address per minute
	PushPortDefault  int           // push port of a device that names none
	CommandTTL       time.Duration // how long a command waits for its device before it expires
	// RetryMin and RetryMax bound the backoff between attempts to reach a device.
	RetryMin, RetryMax time.Duration
	// Timeout bounds dialling a device, the hello exchange, a write, and the wait for an ack.
	Timeout time.Duration
	// MinPushVersion is the oldest push protocol version a device may speak; 0 is
	// push.MinVersion (every version).
	MinPushVersion int
	// Window is how many commands may await their acks on one connection.
	Window int
	// CatalogNoticeEvery is the least time between two rounds of catalog.changed notices.
	CatalogNoticeEvery time.Duration
	// CheckEvery is how often each connection checks that no command is left behind (see
	// delivery.check); a command left behind is found within two checks.
	CheckEvery time.Duration
	// Dial connects to devices; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock of pairing codes, heartbeats and command expiry; nil: time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Committed, when set, is called after each batch of command state changes is stored (tests
	// wait on it instead of polling).
	Committed func([]storage.CommandUpdate)
}

// Defaults of the Options that no configuration key sets; the others are the configuration's.
const (
	defaultRetryMin   = time.Second
	defaultWindow     = 256
	defaultCheckEvery = 10 * time.Second

	// OnlineWindow is how long after its last heartbeat a device without a push connection
	// still counts as online; devices heartbeat every 30 s.
	OnlineWindow = 90 * time.Second
)

// Capability names with a meaning to the server.
const (
	// CapOrders marks a device that handles orders: it gets an order.new command for each new order.
	CapOrders = "orders"
	// CapCatalog marks a device that keeps a copy of the catalog: it gets a catalog.changed
	// command when the server's catalog changed (docs/catalog.md).
	CapCatalog = "catalog"
)

// Kinds of device.
var Kinds = []string{"tablet", "kiosk", "pos", "signage", "printer", "other"}

// Errors of the Manager's methods; the server maps them to answers.
var (
	ErrUnauthorized = errors.New("devices: no valid device credential")
	ErrRevoked      = errors.New("devices: device revoked")
	ErrBadPairing   = errors.New("devices: pairing code unknown, expired or already used, or wrong enrollment secret")
	ErrEnrollment   = errors.New("devices: enrollment with a shop secret is off (devices.enrollment_secret is empty); pair with a code")
	ErrNotFound     = errors.New("devices: no such device")
	ErrNoTarget     = errors.New("devices: no paired device matches")
)

// InvalidError is a request field with a bad value.
type InvalidError struct{ Field, Msg string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

// ThrottledError refuses a pairing attempt after too many failures.
type ThrottledError struct {
	RetryAfter time.Duration
	Reason     string // why, when not too many failed attempts from the address
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("devices: %s; try again in %s", e.Why(), e.RetryAfter.Round(time.Second))
}

// Why says what the pairings were refused for.
func (e *ThrottledError) Why() string {
	if e.Reason != "" {
		return e.Reason
	}
	return "too many failed pairing attempts from this address"
}

// throttled is the refusal of a pairing attempt from address after too many failed ones, from it
// or from all addresses together, or nil.
func (m *Manager) throttled(address string, now time.Time) error {
	ok, wait, shared := m.throttle.allow(address, now)
	if ok {
		return nil
	}
	e := &ThrottledError{RetryAfter: wait}
	if shared {
		e.Reason = "too many failed pairing attempts from all addresses together in the last minute; every pairing waits (the log names the addresses that failed)"
	}
	return e
}

// entry is what the Manager remembers of a device between requests.
type entry struct {
	dev  storage.Device
	hash [32]byte
	// revokedVersion is, once the device is revoked, the push version of its last connection
	// since the server started (its link is gone then); 0: none.
	revokedVersion int
}

// Manager is the registry, pairing, authentication and the command queue with its push links.
type Manager struct {
	o        Options
	db       *storage.DB
	log      *slog.Logger
	now      func() time.Time
	throttle *throttle
	pairing  chan struct{} // held by the pairing attempt under way
	enrolled *throttle     // pairings by the enrollment secret, per address (see EnrollmentsPerAddress)
	// refusedLog lets one log line a window through per address refused by enrolled.
	refusedLog *throttle
	writer     *writer

	changed chan struct{} // a device was paired or revoked: Run reconciles its links

	// enqueueMu makes storing commands and handing them to the links one step, so that every
	// link is handed its commands in the order the database numbered them (see enqueue).
	enqueueMu sync.Mutex
	// enqueues counts the enqueues begun and done (the links' checks read them).
	enqueues struct{ started, done atomic.Int64 }

	stuck atomic.Int64 // commands found left behind a connected device since start
	// acked and nacked count the commands devices acknowledged or refused since start.
	acked, nacked atomic.Int64

	mu    sync.RWMutex // protects the fields below
	devs  map[string]*entry
	links map[string]*link
	// revoking counts the revocations under way of each device: its link is stopped before the
	// revocation is stored, and reconcile starts none meanwhile.
	revoking   map[string]int
	codesUntil time.Time // when the last pairing code created expires
}

// New loads the registry from the database.
func New(ctx context.Context, o Options) (*Manager, error) {
	if o.DB == nil {
		return nil, errors.New("devices: no database")
	}
	if o.ServerID == "" {
		o.ServerID = "storeedge"
	}
	o.PairingCodeTTL = orDefault(o.PairingCodeTTL, config.DefaultDevicesPairingCodeTTL)
	o.PairingAttempts = orDefault(o.PairingAttempts, config.DefaultDevicesPairingAttempts)
	o.PushPortDefault = orDefault(o.PushPortDefault, config.DefaultDevicesPushPortDefault)
	o.CommandTTL = orDefault(o.CommandTTL, config.DefaultDevicesCommandTTL)
	o.RetryMin = orDefault(o.RetryMin, defaultRetryMin)
	o.RetryMax = orDefault(o.RetryMax, config.DefaultDevicesPushRetryMax)
	o.Timeout = orDefault(o.Timeout, config.DefaultDevicesPushTimeout)
	o.Window = orDefault(o.Window, defaultWindow)
	o.CatalogNoticeEvery = orDefault(o.CatalogNoticeEvery, defaultCatalogNoticeEvery)
	o.MinPushVersion = orDefault(o.MinPushVersion, push.MinVersion)
	o.CheckEvery = orDefault(o.CheckEvery, defaultCheckEvery)
	if o.Dial == nil {
		d := &net.Dialer{KeepAlive: 15 * time.Second}
		o.Dial = d.DialContext
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{o: o, db: o.DB, log: o.Logger, now: o.Now, throttle: newThrottle(o.PairingAttempts, time.Minute), pairing: make(chan struct{}, 1),
		enrolled: newThrottle(EnrollmentsPerAddress, EnrollmentWindow), refusedLog: newThrottle(1, EnrollmentWindow),
		changed: make(chan struct{}, 1), devs: map[string]*entry{}, links: map[string]*link{}, revoking: map[string]int{}}
	m.writer = newWriter(o.DB, o.Logger, o.Committed)
	devs, err := o.DB.Devices(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		m.devs[d.ID] = &entry{dev: d, hash: [32]byte(d.SecretHash)}
	}
	if err := m.initOrderCursor(ctx); err != nil {
		return nil, err
	}
	if m.codesUntil, err = o.DB.PairingCodesUntil(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Log attribute keys.
const (
	keyDevice  = "device_id"
	keyAddr    = "addr"
	keyError   = "error"
	keyCommand = "command_id"
	keyType    = "type"
	keyName    = "name"
	keyKind    = "kind"
	keyCount   = "count"
)

// Device is a device as the API shows it.
type Device struct {
	ID           string     `json:"id"`
	Kind         string     `json:"kind"`
	Name         string     `json:"name"`
	AppVersion   string     `json:"app_version"`
	Address      string     `json:"address"`
	PushPort     int        `json:"push_port"`
	Capabilities []string   `json:"capabilities"`
	PairedAt     time.Time  `json:"paired_at"`
	PairedBy     string     `json:"paired_by"`
	LastSeen     *time.Time `json:"last_seen"` // null: no heartbeat yet
	Revoked      bool       `json:"revoked"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	Online       bool       `json:"online"`
	// Push is the push connection: connected, connecting, offline or revoked.
	Push      string `json:"push"`
	PushError string `json:"push_error,omitempty"`
	// PushVersion is the push protocol version of the device's last connection since the
	// server started; 0: none yet.
	PushVersion int   `json:"push_version"`
	QueueDepth  int64 `json:"queue_depth"` // commands queued or sent, not yet acknowledged
}

// Push connection states.
const (
	PushConnected  = "connected"
	PushConnecting = "connecting"
	PushOffline    = "offline"
	PushRevoked    = "revoked"
)

func (m *Manager) view(e *entry, depth int64, now time.Time) Device {
	d := e.dev
	v := Device{ID: d.ID, Kind: d.Kind, Name: d.Name, AppVersion: d.AppVersion, Address: d.Address, PushPort: d.PushPort,
		Capabilities: slices.Clone(d.Capabilities), PairedAt: d.PairedAt, PairedBy: d.PairedBy, QueueDepth: depth, Push: PushOffline}
	if v.Capabilities == nil {
		v.Capabilities = []string{}
	}
	if !d.LastSeen.IsZero() {
		t := d.LastSeen
		v.LastSeen = &t
	}
	if !d.RevokedAt.IsZero() {
		t := d.RevokedAt
		v.Revoked, v.RevokedAt, v.Push, v.PushVersion = true, &t, PushRevoked, e.revokedVersion
		return v
	}
	if l := m.links[d.ID]; l != nil {
		v.Push, v.PushError, v.PushVersion = l.status()
	}
	v.Online = v.Push == PushConnected || (!d.LastSeen.IsZero() && now.Sub(d.LastSeen) < OnlineWindow)
	return v
}

// List returns every device, revoked ones included, by pairing time.
func (m *Manager) List(ctx context.Context) ([]Device, error) {
	depths, err := m.db.QueueDepths(ctx)
	if err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Device, 0, len(m.devs))
	for _, e := range m.devs {
		out = append(out, m.view(e, depths[e.dev.ID], now))
	}
	slices.SortFunc(out, func(a, b Device) int {
		if c := a.PairedAt.Compare(b.PairedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Get returns one device, or ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (Device, error) {
	depth, err := m.db.QueueDepth(ctx, id)
	if err != nil {
		return Device{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	e := m.devs[id]
	if e == nil {
		return Device{}, ErrNotFound
	}
	return m.view(e, depth, m.now()), nil
}

// Summary is the devices part of the status page.
type Summary struct {
	Paired  int   `json:"paired"`
	Online  int   `json:"online"`
	Offline int   `json:"offline"`
	Queued  int64 `json:"queued"` // commands waiting for their devices
	// StuckCommands counts the commands found left queued or sent behind a connected device,
	// and written again, since the server started: 0 unless something is wrong.
	StuckCommands int64   `json:"stuck_commands"`
	Devices       []Brief `json:"devices"`
}

// Brief is one device on the status page.
type Brief struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Online     bool   `json:"online"`
	Push       string `json:"push"`
	QueueDepth int64  `json:"queue_depth"`
}

// Summary counts devices online and offline and the commands queued for them.
func (m *Manager) Summary(ctx context.Context) (Summary, error) {
	all, err := m.List(ctx)
	if err != nil {
		return Summary{}, err
	}
	s := Summary{Devices: []Brief{}, StuckCommands: m.stuck.Load()}
	for _, d := range all {
		if d.Revoked {
			continue
		}
		s.Paired++
		if d.Online {
			s.Online++
		} else {
			s.Offline++
		}
		s.Queued += d.QueueDepth
		s.Devices = append(s.Devices, Brief{ID: d.ID, Name: d.Name, Kind: d.Kind, Online: d.Online, Push: d.Push, QueueDepth: d.QueueDepth})
	}
	return s, nil
}

// PushAnswers counts the commands devices acknowledged and those they refused since the
// server started (for the metrics); both only grow.
func (m *Manager) PushAnswers() (acked, refused int64) {
	return m.acked.Load(), m.nacked.Load()
}

// Authenticate checks a device token ("<id>.<secret>") against the registry in memory and
// returns the device's id. A revoked device gets ErrRevoked, anything else that is not a valid
// credential ErrUnauthorized.
func (m *Manager) Authenticate(token string) (string, error) {
	id, secret, ok := splitToken(token)
	h := hashSecret(secret)
	m.mu.RLock()
	e := m.devs[id]
	var stored [32]byte
	var revoked bool
	if e != nil {
		stored, revoked = e.hash, !e.dev.RevokedAt.IsZero()
	}
	m.mu.RUnlock()
	// Compare even when the id is unknown, so that timing does not tell ids apart.
	match := equalHash(h, stored)
	switch {
	case !ok || e == nil || !match:
		return "", ErrUnauthorized
	case revoked:
		return "", ErrRevoked
	}
	return id, nil
}

// PairingCode is a code an admin created, to be typed into one device.
type PairingCode struct {
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// NewPairingCode creates a single-use pairing code valid for ttl (0: the configured TTL).
func (m *Manager) NewPairingCode(ctx context.Context, ttl time.Duration) (PairingCode, error) {
	if ttl <= 0 {
		ttl = m.o.PairingCodeTTL
	}
	code := newPairingCode()
	norm, _ := normalizeCode(code)
	now := m.now()
	if err := m.db.AddPairingCode(ctx, hashCode(norm), now, now.Add(ttl)); err != nil {
		return PairingCode{}, err
	}
	m.mu.Lock()
	if now.Add(ttl).After(m.codesUntil) {
		m.codesUntil = now.Add(ttl)
	}
	m.mu.Unlock()
	m.log.Info("devices: pairing code created", slog.Time("expires_at", now.Add(ttl)))
	return PairingCode{Code: code, ExpiresAt: now.Add(ttl).UTC()}, nil
}

// PairingOpen tells whether a device could pair now: the enrollment secret is configured, or a
// pairing code may still be waiting for its device. Discovery announces it.
func (m *Manager) PairingOpen() bool {
	if m.o.EnrollmentSecret != "" {
		return true
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.now().Before(m.codesUntil)
}

// A device pairs with the enrollment secret at most EnrollmentsPerAddress times from one address
// in EnrollmentWindow (ten times that from every address together); beyond, a *ThrottledError.
// Loopback, this machine, is not limited.
const (
	EnrollmentsPerAddress = 10
	EnrollmentWindow      = 10 * time.Minute
)

// isLoopback tells an address of this machine.
func isLoopback(address string) bool {
	ip, err := netip.ParseAddr(address)
	return err == nil && ip.Unmap().IsLoopback()
}

// PairRequest is what a device sends to pair: one of Code and EnrollmentSecret, and itself.
type PairRequest struct {
	Code             string   `json:"code,omitempty"`
	EnrollmentSecret string   `json:"enrollment_secret,omitempty"`
	Kind             string   `json:"kind"`
	Name             string   `json:"name,omitempty"`
	AppVersion       string   `json:"app_version,omitempty"`
	PushPort         int      `json:"push_port,omitempty"`
	Capabilities     []string `json:"capabilities,omitempty"`
}

// Credentials are what a device receives once, when it pairs.
type Credentials struct {
	DeviceID string `json:"device_id"`
	Secret   string `json:"secret"`
	Token    string `json:"token"`
	Device   Device `json:"device"`
}

// PairingThrottled returns a *ThrottledError when address may not try to pair now (too many
// failed attempts from it, or from every address together), else nil. It counts nothing: the
// server asks it before reading the request, so that a throttled address gets 429 whatever it
// sends (devices.md).
func (m *Manager) PairingThrottled(address string) error {
	if err := m.throttled(address, m.now()); err != nil {
		return err
	}
	return nil
}

// Pair pairs a new device that asked from address (its IP, where the server will dial it).
// Failed attempts count against the address's allowance; over it, a *ThrottledError.
func (m *Manager) Pair(ctx context.Context, req PairRequest, address string) (_ Credentials, err error) {
	// What needs no turn is answered at once: a throttled address, a malformed request.
	if err := m.throttled(address, m.now()); err != nil {
		return Credentials{}, err
	}
	if err := checkDevice(req.Kind, &req.Name, req.AppVersion, &req.PushPort, req.Capabilities, m.o.PushPortDefault); err != nil {
		return Credentials{}, err
	}
	switch {
	case req.Code != "" && req.EnrollmentSecret != "":
		return Credentials{}, &InvalidError{"code", "give a pairing code or the enrollment secret, not both"}
	case req.Code == "" && req.EnrollmentSecret == "":
		return Credentials{}, &InvalidError{"code", "missing; give the pairing code an admin created, or the shop's enrollment secret"}
	case req.Code == "" && m.o.EnrollmentSecret == "":
		return Credentials{}, ErrEnrollment
	}
	// Then one attempt at a time, from its check against the failures to its own outcome:
	// attempts sent at once would otherwise all pass the check before any had failed. Pairings
	// are rare, and their database writes take turns anyway.
	select {
	case m.pairing <- struct{}{}:
		defer func() { <-m.pairing }()
	case <-ctx.Done():
		return Credentials{}, ctx.Err()
	}
	now := m.now()
	if err := m.throttled(address, now); err != nil {
		return Credentials{}, err
	}
	var codeHash []byte
	by := storage.PairedByCode
	switch {
	case req.Code != "":
		norm, ok := normalizeCode(req.Code)
		if !ok {
			m.throttle.fail(address, now)
			m.log.Warn("devices: pairing refused: the code is not 8 digits", slog.String(keyAddr, address))
			return Credentials{}, ErrBadPairing
		}
		codeHash = hashCode(norm)
	default:
		if !EqualSecret(req.EnrollmentSecret, m.o.EnrollmentSecret) {
			m.throttle.fail(address, now)
			m.log.Warn("devices: pairing refused: wrong enrollment secret", slog.String(keyAddr, address))
			return Credentials{}, ErrBadPairing
		}
		// Each device paired stays, and is dialled for push until an admin revokes it: one
		// address (or a flood of them) pairs only so many. This machine's own programs (a script
		// of shop IT's on loopback) are not held to it. The pairing is counted as it passes, so
		// that requests at once cannot all pass; given back if it fails.
		if !isLoopback(address) {
			ok, wait := m.enrolled.take(address, now)
			if !ok {
				// Logged once per address and window: a device retrying is no news.
				if first, _ := m.refusedLog.take(address, now); first {
					m.log.Warn("devices: pairing refused: too many devices paired lately with the enrollment secret", slog.String(keyAddr, address))
				}
				return Credentials{}, &ThrottledError{RetryAfter: wait, Reason: "too many devices paired with the enrollment secret in the last 10 minutes (10 from one address, 100 in all)"}
			}
			enrolledAt := now
			defer func() {
				if err != nil {
					m.enrolled.giveBack(address, enrolledAt)
				}
			}()
		}
		by = storage.PairedByEnrollment
	}
	id, secret := newDeviceID(), newSecret()
	h := hashSecret(secret)
	d := storage.Device{ID: id, Kind: req.Kind, Name: req.Name, AppVersion: req.AppVersion, Address: address, PushPort: req.PushPort,
		Capabilities: req.Capabilities, SecretHash: h[:], PushKey: push.Key(secret), PairedAt: now, PairedBy: by, LastSeen: now}
	if d.Name == "" {
		d.Name = req.Kind + " " + id[len(id)-4:]
	}
	err = m.db.PairDevice(ctx, d, codeHash)
	if errors.Is(err, storage.ErrPairingCode) {
		m.throttle.fail(address, now)
		m.log.Warn("devices: pairing refused: code unknown, expired or used", slog.String(keyAddr, address))
		return Credentials{}, ErrBadPairing
	}
	if err != nil {
		return Credentials{}, err
	}
	d.PairedAt, d.LastSeen = d.PairedAt.UTC(), d.LastSeen.UTC()
	e := &entry{dev: d, hash: h}
	m.mu.Lock()
	m.devs[id] = e
	view := m.view(e, 0, now)
	m.mu.Unlock()
	m.poke()
	m.log.Info("devices: paired", slog.String(keyDevice, id), slog.String(keyKind, d.Kind), slog.String(keyName, d.Name),
		slog.String(keyAddr, address), slog.String("by", by))
	return Credentials{DeviceID: id, Secret: secret, Token: Token(id, secret), Device: view}, nil
}

// poke tells Run that the set of devices changed.
func (m *Manager) poke() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Heartbeat is what a device reports about itself every 30 s; zero fields leave what is known.
type Heartbeat struct {
	AppVersion   string   `json:"app_version,omitempty"`
	PushPort     int      `json:"push_port,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
}

// Heartbeat records that a device is alive at address, with what it reports, and retries its
// push connection at once if it was down.
func (m *Manager) Heartbeat(ctx context.Context, id string, hb Heartbeat, address string) (Device, error) {
	if err := checkReport(hb.AppVersion, &hb.PushPort, hb.Capabilities, -1); err != nil {
		return Device{}, err
	}
	now := m.now()
	d, err := m.db.UpdateDevice(ctx, id, func(d *storage.Device) error {
		if !d.RevokedAt.IsZero() {
			return ErrRevoked
		}
		d.LastSeen, d.Address = now, address
		if hb.AppVersion != "" {
			d.AppVersion = hb.AppVersion
		}
		if hb.PushPort > 0 {
			d.PushPort = hb.PushPort
		}
		if hb.Capabilities != nil {
			d.Capabilities = hb.Capabilities
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return Device{}, ErrNotFound
		}
		return Device{}, err
	}
	return m.replace(ctx, d, true)
}

// replace puts a device as stored back in the registry and returns its view; wake retries its
// push connection now.
func (m *Manager) replace(ctx context.Context, d storage.Device, wake bool) (Device, error) {
	depth, err := m.db.QueueDepth(ctx, d.ID)
	if err != nil {
		return Device{}, err
	}
	d.LastSeen = d.LastSeen.UTC()
	m.mu.Lock()
	e := m.devs[d.ID]
	if e == nil {
		m.mu.Unlock()
		return Device{}, ErrNotFound
	}
	if !e.dev.RevokedAt.IsZero() {
		// Revoked while d was read: a revocation is never undone by a later write-back.
		d.RevokedAt = e.dev.RevokedAt
	}
	ne := &entry{dev: d, hash: e.hash, revokedVersion: e.revokedVersion}
	m.devs[d.ID] = ne
	l := m.links[d.ID]
	v := m.view(ne, depth, m.now())
	m.mu.Unlock()
	if wake && l != nil {
		l.retryNow()
	}
	return v, nil
}

// Rename gives a device a new name.
func (m *Manager) Rename(ctx context.Context, id, name string) (Device, error) {
	if msg := checkName(name); msg != "" {
		return Device{}, &InvalidError{"name", msg}
	}
	d, err := m.db.UpdateDevice(ctx, id, func(d *storage.Device) error { d.Name = name; return nil })
	if errors.Is(err, storage.ErrNotFound) {
		return Device{}, ErrNotFound
	}
	if err != nil {
		return Device{}, err
	}
	m.log.Info("devices: renamed", slog.String(keyDevice, id), slog.String(keyName, name))
	return m.replace(ctx, d, false)
}

// Revoke revokes a device: from the moment it returns, the device's credential is refused,
// its push connection is closed and its open commands are failed. Revoking twice is harmless.
func (m *Manager) Revoke(ctx context.Context, id string) (Device, error) {
	// The push connection closes first: a batch of commands stored as sent just before the
	// revocation commits would otherwise still be written to the device after it, failed in
	// the database. No link starts again while the revocation is under way; one that fails
	// leaves the device as it was, and its link starts again.
	m.mu.Lock()
	if _, known := m.devs[id]; !known {
		m.mu.Unlock()
		return Device{}, ErrNotFound
	}
	m.revoking[id]++
	l := m.links[id]
	delete(m.links, id)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.revoking[id]--; m.revoking[id] == 0 {
			delete(m.revoking, id)
		}
		m.mu.Unlock()
		m.poke()
	}()
	// Once begun, a revocation is carried through: an admin who gives up waiting must not leave
	// it stored but not in force.
	ctx = context.WithoutCancel(ctx)
	version := 0
	if l != nil {
		_, _, version = l.status()
		l.stop()
		// The acknowledgements the link read are stored before the revocation fails what is
		// left open: a command the device did stays acknowledged.
		m.writer.settle(ctx)
	}
	now := m.now()
	if _, err := m.db.RevokeDevice(ctx, id, now, "device revoked"); err != nil {
		return Device{}, err
	}
	d, getErr := m.db.GetDevice(ctx, id)
	m.mu.Lock()
	old := m.devs[id]
	if old == nil { // forgotten meanwhile
		m.mu.Unlock()
		return Device{}, ErrNotFound
	}
	if getErr != nil {
		// The revocation is stored: it is in force here too, whatever the read after it did
		// (the credential refused, the streams ended), from what memory holds of the device.
		d = old.dev
		if d.RevokedAt.IsZero() {
			d.RevokedAt = now
		}
	}
	e := &entry{dev: d, hash: old.hash, revokedVersion: max(version, old.revokedVersion)}
	m.devs[id] = e
	v := m.view(e, 0, now)
	m.mu.Unlock()
	m.log.Info("devices: revoked", slog.String(keyDevice, id), slog.String(keyName, d.Name))
	return v, nil
}

// checkDevice checks what a device says about itself, filling defaults: an empty name stays
// empty (Pair names it), a zero push port takes defaultPort (none when negative).
func checkDevice(kind string, name *string, appVersion string, port *int, caps []string, defaultPort int) error {
	if !slices.Contains(Kinds, kind) {
		return &InvalidError{"kind", fmt.Sprintf("%q is not one of %s", kind, strings.Join(Kinds, ", "))}
	}
	if *name != "" {
		if msg := checkName(*name); msg != "" {
			return &InvalidError{"name", msg}
		}
	}
	return checkReport(appVersion, port, caps, defaultPort)
}

// checkReport checks what a device reports in its pairing request and heartbeats.
func checkReport(appVersion string, port *int, caps []string, defaultPort int) error {
	if len(appVersion) > 64 || !visible(appVersion) {
		return &InvalidError{"app_version", "want at most 64 visible ASCII characters"}
	}
	if *port == 0 && defaultPort > 0 {
		*port = defaultPort
	}
	if *port < 0 || *port > 65535 {
		return &InvalidError{"push_port", fmt.Sprintf("%d is not a port (1-65535)", *port)}
	}
	if len(caps) > 16 {
		return &InvalidError{"capabilities", "at most 16"}
	}
	for i, c := range caps {
		if !validToken(c) {
			return &InvalidError{fmt.Sprintf("capabilities[%d]", i), fmt.Sprintf("%q: want 1 to 32 of a-z 0-9 . _ -, starting with a letter", c)}
		}
	}
	return nil
}

func checkName(name string) string {
	switch {
	case strings.TrimSpace(name) == "":
		return "empty"
	case !utf8.ValidString(name) || utf8.RuneCountInString(name) > 64 || strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "want 1 to 64 characters, without control characters"
	}
	return ""
}

func visible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// validToken accepts the names of command types and capabilities: 1 to 32 of a-z 0-9 . _ -,
// starting with a letter.
func validToken(s string) bool {
	if len(s) == 0 || len(s) > push.MaxTypeLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
