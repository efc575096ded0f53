package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/logbudget"
	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/outbox"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// EphemeralPort as a port number asks the system for a free port (tests, tools). Addrs tells which
// port was chosen.
const EphemeralPort = -1

// Options configure a Server. The daemon fills them from the lan.* configuration keys.
type Options struct {
	DB *storage.DB
	// WAN reports the health of the link to the cloud for the status page; nil reports "unknown".
	// It is called on every status request, so it must be quick and safe for concurrent use.
	WAN func() WANStatus

	Bind      string // IP address to listen on; "" means every interface
	FrontDoor int    // port carrying every service; 0 = off, EphemeralPort = any free port
	// FrontDoorWithoutAdmin keeps the admin API and the status page off the front door, on the
	// admin port only (lan.front_door_admin: false).
	FrontDoorWithoutAdmin bool
	Services              map[string]int // service name (catalog, media, orders, devices, events, admin) -> own port, as FrontDoor

	// Zero durations and sizes take the configuration's defaults (config.DefaultLAN…).
	// ShutdownGrace zero means requests in progress are cut at once on stop.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout, ShutdownGrace time.Duration
	MaxBodyBytes                                                             int64
	MaxHeaderBytes                                                           int
	// CatalogNoticeEvery is the least time between two catalog.changed events on one event
	// stream; zero: 5 s, as the pushed notice.
	CatalogNoticeEvery time.Duration

	Logger *slog.Logger

	// ServiceBus reports the order link; nil when Service Bus is off.
	ServiceBus func() servicebus.Status
	// Upload reports the outbox's uploads to the cloud; nil when sync is off.
	Upload func() outbox.State
	// LogShipping reports log shipping to the vendor's intake; nil when it is off.
	LogShipping func() logship.Status
	// Support reports the remote support channel; nil when it is off.
	Support func() support.Status
	// Backups reports the scheduled backups; nil when backup.dir is empty.
	Backups func() backup.Status
	// BackOffice is the exchange with the ERP; nil when the daemon has none.
	BackOffice BackOffice
	// Media is the media cache behind the media service; nil answers every media request 404.
	Media Media
	// Discovery reports device discovery (UDP and mDNS) for the status page and the devices
	// seen on the LAN for admin; nil when the daemon runs none.
	Discovery Discovery

	// Devices is the device registry that authenticates device requests and serves pairing.
	// Required.
	Devices *devices.Manager
	// Alerts reports the alerts by e-mail for the status; nil when the daemon has none.
	Alerts Alerts
	// AdminToken is the admin credential (admin.token); "" turns the admin API off.
	AdminToken string
	// Metrics is the registry the admin port serves at /metrics; the server adds its HTTP
	// metrics and what the status sources above report. nil: no metrics.
	Metrics *prometheus.Registry
	// MetricsToken is the credential that reads the metrics only (metrics.token); the admin
	// token reads them too.
	MetricsToken string

	// TestMode flags every new order as a test order (shop.mode: test).
	TestMode bool
	// ConfigView is the configuration the daemon runs with, as `storeedge config` prints it
	// (secrets shown as xxxxx), served to admin at /api/v1/admin/config; "" answers 404.
	ConfigView string

	ServerID, ShopName, Version string
	StartedAt                   time.Time        // zero: the time New was called
	Now                         func() time.Time // clock for data ages and uptime; nil: time.Now
}

// BackOffice is what the admin service needs of the back-office exchange (package backoffice).
type BackOffice interface {
	Status() backoffice.Status
	// RunOnce exports and imports now, after a run in progress; its error says why a run failed.
	RunOnce(ctx context.Context) error
	// WebhookFailures lists orders the ERP's webhook refused for good, newest first.
	WebhookFailures(ctx context.Context, limit int) ([]storage.ExportFailure, error)
	// RetryWebhook forgets a refusal so the order goes at the next run; false when the order
	// was not refused.
	RetryWebhook(ctx context.Context, orderID string) (bool, error)
}

var _ BackOffice = (*backoffice.Agent)(nil)

// Discovery is what the status page and admin need of device discovery. Both methods are quick
// and safe for concurrent use.
type Discovery interface {
	Status() discovery.Status
	// Seen lists the devices that said hello on the LAN, the most recent first.
	Seen() []discovery.SeenDevice
}

// WANStatus is the health of the link to the cloud, as the feed syncer last saw it.
type WANStatus struct {
	State       string    `json:"state"` // a feed.State* value, disabled or unknown (docs/openapi.yaml WANStatus)
	LastContact time.Time `json:"last_contact,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Route       string    `json:"route"` // "direct" or e.g. "http-connect via proxy.lan:3128"
}

// Service names, as in the lan.services configuration keys.
const (
	serviceCatalog = "catalog"
	serviceMedia   = "media"
	serviceOrders  = "orders"
	serviceDevices = "devices"
	serviceEvents  = "events"
	serviceAdmin   = "admin"
	frontDoor      = "front_door"
)

// services is every LAN service in port order. A service without routes is not written yet: its
// routes are absent from the front door and its own port is not opened even when configured, so
// a firewall rule for it finds nothing listening rather than a server answering 404 to everything.
// Adding a service is giving it its routes here.
// access says who may call a service's routes; the router enforces it.
var services = []struct {
	name   string
	routes func(s *Server, r chi.Router)
	access access
}{
	{serviceCatalog, (*Server).catalogRoutes, accessDevice},
	{serviceMedia, (*Server).mediaRoutes, accessDevice},
	{serviceOrders, (*Server).ordersRoutes, accessDevice},
	{serviceDevices, (*Server).devicesRoutes, accessOwn},
	{serviceEvents, (*Server).eventsRoutes, accessDevice},
	{serviceAdmin, (*Server).adminRoutes, accessAdmin},
}

// Server serves the LAN HTTP API on the front door and the services' own ports.
type Server struct {
	o        Options
	streams  streamCount      // event streams open, by device
	guessLog logbudget.Budget // wrong admin credentials logged
	readyLog logbudget.Budget // why /readyz answered not ready, logged
	log      *slog.Logger
	now      func() time.Time
	front    *chi.Mux     // the front door's routes
	door     http.Handler // the front door's handler: front, observed
	ports    []*port      // enabled listeners: the front door first, then services in table order

	// stopping is closed when Run is told to stop, so long-lived answers (event streams) end at
	// once instead of holding the shutdown for its whole grace period.
	stopping chan struct{}

	lastAge atomic.Pointer[dataAge] // the data-age headers last sent, reused while they hold
	metrics *httpMetrics            // nil when Options.Metrics is

	sessions    *pageSessions // the status page's logged-in browsers
	pageChanges pageChanges   // wakes the status page's streams after an action

	// connState, when a test sets it before Run, is every port's http.Server.ConnState: the test
	// sees when the server has taken a connection instead of guessing.
	connState func(net.Conn, http.ConnState)

	mu        sync.Mutex // protects the fields below
	listening bool
	running   bool
	done      bool // Run returned or Close was called: the Server cannot serve again
}

// port is one listener and what it serves.
type port struct {
	name    string // frontDoor or a service name
	key     string // configuration key, for error messages
	num     int
	handler http.Handler
	ln      net.Listener
}

// New checks the options and builds the routers; it opens nothing.
func New(o Options) (*Server, error) {
	if o.DB == nil {
		return nil, errors.New("server: no database")
	}
	if o.Devices == nil {
		return nil, errors.New("server: no device registry")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StartedAt.IsZero() {
		o.StartedAt = o.Now()
	}
	o.ReadHeaderTimeout = orDefault(o.ReadHeaderTimeout, config.DefaultLANReadHeaderTimeout)
	o.ReadTimeout = orDefault(o.ReadTimeout, config.DefaultLANReadTimeout)
	o.WriteTimeout = orDefault(o.WriteTimeout, config.DefaultLANWriteTimeout)
	o.IdleTimeout = orDefault(o.IdleTimeout, config.DefaultLANIdleTimeout)
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = config.DefaultLANMaxBodyBytes
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = config.DefaultLANMaxHeaderBytes
	}
	o.ShutdownGrace = max(o.ShutdownGrace, 0)
	o.CatalogNoticeEvery = orDefault(o.CatalogNoticeEvery, defaultCatalogNoticeEvery)

	s := &Server{o: o, log: o.Logger, now: o.Now, stopping: make(chan struct{}), sessions: newPageSessions(),
		guessLog: logbudget.Budget{PerMinute: guessLogBudget}, readyLog: logbudget.Budget{PerMinute: readyLogBudget}}
	if o.Metrics != nil {
		var err error
		if s.metrics, err = newHTTPMetrics(o.Metrics); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
		if err := o.Metrics.Register(statusCollector{s}); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	s.door, s.front = s.build(frontDoor)
	if err := s.addPorts(); err != nil {
		return nil, err
	}
	return s, nil
}

// addPorts checks the configured ports and makes the listeners' handlers: the front door's and
// one per service whose port is on.
func (s *Server) addPorts() error {
	o := s.o
	known := make(map[string]bool, len(services))
	for _, svc := range services {
		known[svc.name] = true
	}
	for name := range o.Services {
		if !known[name] {
			return fmt.Errorf("server: lan.services.%s: unknown service; want catalog, media, orders, devices, events or admin", name)
		}
	}
	used := make(map[int]string)
	add := func(name, key string, num int) error {
		if num < EphemeralPort || num > 65535 {
			return fmt.Errorf("server: %s: port %d out of range; want 0 (off) or 1-65535", key, num)
		}
		if num == 0 {
			return nil
		}
		if other, ok := used[num]; ok && num > 0 {
			return fmt.Errorf("server: %s: %d: same port as %s; give each listener its own port, or 0 to turn it off", key, num, other)
		}
		used[num] = key
		h := s.door
		if name != frontDoor {
			h = s.listener(name)
		}
		s.ports = append(s.ports, &port{name: name, key: key, num: num, handler: h})
		return nil
	}
	if err := add(frontDoor, "lan.front_door", o.FrontDoor); err != nil {
		return err
	}
	for _, svc := range services {
		if svc.routes == nil {
			continue
		}
		if err := add(svc.name, "lan.services."+svc.name, o.Services[svc.name]); err != nil {
			return err
		}
	}
	return nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// listener builds the handler of one listener: its router, observed.
func (s *Server) listener(name string) http.Handler {
	h, _ := s.build(name)
	return h
}

// build is listener, returning the router too.
func (s *Server) build(name string) (http.Handler, *chi.Mux) {
	var lm *listenerMetrics
	if s.metrics != nil {
		lm = s.metrics.listener(name)
	}
	mux := s.router(name, lm)
	return s.observe(mux, s.directLookups(name, lm)), mux
}

// router builds the routes of one listener: the health checks and either one service's routes or,
// for the front door, every service's (the admin API and the status page only while
// FrontDoorWithoutAdmin is false). observe must wrap it: its middleware and handlers find
// the request's state in the context. lm, the listener's metrics, is nil when the server has none.
func (s *Server) router(name string, lm *listenerMetrics) *chi.Mux {
	r := chi.NewRouter()
	if lm != nil {
		r.Use(s.measure(lm))
	}
	r.Use(s.limitBody)
	notFound := s.notFound(name)
	r.NotFound(s.handle(notFound))
	r.MethodNotAllowed(s.handle(s.methodNotAllowed(r, notFound)))
	r.Get("/healthz", s.handle(s.healthz))
	r.Get("/readyz", s.handle(s.readyz))
	adminHere := name == serviceAdmin || name == frontDoor && !s.o.FrontDoorWithoutAdmin
	for _, svc := range services {
		if svc.access == accessAdmin && !adminHere {
			continue
		}
		if svc.routes != nil && (name == frontDoor || name == svc.name) {
			r.Group(func(r chi.Router) {
				switch svc.access {
				case accessDevice:
					r.Use(s.requireDevice)
				case accessAdmin:
					r.Use(s.requireAdmin)
				}
				svc.routes(s, r)
			})
		}
	}
	if adminHere {
		s.pageRoutes(r, name)
	}
	if name == serviceAdmin && s.o.Metrics != nil {
		s.metricsRoute(r)
	}
	return r
}

// Handler is the front door's handler: every route of every service.
func (s *Server) Handler() http.Handler { return s.door }

// Listen opens every enabled port now, so that a port in use or a missing privilege is reported
// before the rest of the daemon starts. On failure no port stays open and the error, a
// *ListenError, tells shop IT what to do. Listen is a no-op the second time.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return errors.New("server: listen: server already stopped")
	}
	if s.listening {
		return nil
	}
	for i, p := range s.ports {
		num := max(p.num, 0) // EphemeralPort: let the system choose
		addr := net.JoinHostPort(s.o.Bind, strconv.Itoa(num))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, q := range s.ports[:i] {
				q.ln.Close()
				q.ln = nil
			}
			return listenError(p.key, addr, num, err)
		}
		p.ln = ln
	}
	s.listening = true
	return nil
}

// Addrs returns the address each open port is bound to, by "front_door" or service name. It is
// empty before Listen.
func (s *Server) Addrs() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.ports))
	if !s.listening {
		return out
	}
	for _, p := range s.ports {
		out[p.name] = p.ln.Addr().String()
	}
	return out
}

// Close releases the ports of a Server that Listen opened but Run never served. It does nothing
// once Run has started: Run releases them itself when its context ends.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.done {
		s.done = true
		return nil
	}
	s.done = true
	var errs []error
	if s.listening {
		for _, p := range s.ports {
			errs = append(errs, p.ln.Close())
		}
	}
	return errors.Join(errs...)
}

// Run serves every open port (calling Listen first if needed) until ctx ends, then stops taking
// connections and gives requests in progress ShutdownGrace to finish before cutting them. It
// returns nil on a requested stop, or the error of a port that failed on its own (which stops the
// others too). A Server runs once.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	if err := s.claimRun(); err != nil {
		return err
	}
	defer func() {
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
	}()

	// Requests keep their context through the grace period: deriving it from ctx would cancel
	// them at the very moment Shutdown is meant to let them finish. It ends when Run returns, which
	// also ends long-lived requests that Shutdown does not wait for.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	servers := s.httpServers(base)
	results := make(chan error, len(servers))
	for i, srv := range servers {
		p := s.ports[i]
		s.log.LogAttrs(ctx, slog.LevelInfo, "LAN port open", slog.String(keyListener, p.name), slog.String(keyAddr, p.ln.Addr().String()))
		go func() { results <- s.serve(srv, p) }()
	}

	var failed error
	pending := len(servers)
	select {
	case <-ctx.Done():
	case failed = <-results:
		pending--
	}
	close(s.stopping)
	s.shutdown(ctx, servers)
	for ; pending > 0; pending-- {
		if err := <-results; failed == nil {
			failed = err
		}
	}
	return failed
}

// claimRun marks the Server as running, which it does once.
func (s *Server) claimRun() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.done {
		return errors.New("server: run: server already ran")
	}
	s.running = true
	return nil
}

// httpServers makes one http.Server per open port, in the order of s.ports, whose requests'
// context is base.
func (s *Server) httpServers(base context.Context) []*http.Server {
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	servers := make([]*http.Server, len(s.ports))
	for i, p := range s.ports {
		servers[i] = &http.Server{
			Handler:           p.handler,
			ReadHeaderTimeout: s.o.ReadHeaderTimeout,
			ReadTimeout:       s.o.ReadTimeout,
			WriteTimeout:      s.o.WriteTimeout,
			IdleTimeout:       s.o.IdleTimeout,
			MaxHeaderBytes:    s.o.MaxHeaderBytes,
			BaseContext:       func(net.Listener) context.Context { return base },
			ConnState:         s.connState,
			ErrorLog:          errLog,
		}
	}
	return servers
}

// serve serves p until srv is shut down, which is no error; any other error names the port.
func (s *Server) serve(srv *http.Server, p *port) error {
	err := srv.Serve(problemListener{Listener: p.ln, maxHeaderBytes: s.o.MaxHeaderBytes})
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("server: %s on %s: %w", p.key, p.ln.Addr(), err)
}

// shutdown stops every port taking connections and gives the requests in progress ShutdownGrace
// to finish; the connections of those still running then are closed, and the log says so.
func (s *Server) shutdown(ctx context.Context, servers []*http.Server) {
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	var cut atomic.Int32
	for _, srv := range servers {
		wg.Go(func() {
			if srv.Shutdown(grace) != nil {
				srv.Close()
				cut.Add(1)
			}
		})
	}
	wg.Wait()
	if cut.Load() > 0 {
		s.log.LogAttrs(ctx, slog.LevelWarn, "requests still running at the end of the shutdown grace period were cut",
			slog.Duration(keyGrace, s.o.ShutdownGrace))
	}
}
