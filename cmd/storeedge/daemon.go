package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/dirlock"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/alerts"
	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/service"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/server"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/feed"
	"github.com/storeedge/storeedge/sync/heartbeat"
	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/sync/outbox"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// daemon wires the components together and runs them until ctx ends:
//
//	WAN dialer → cloud client → feed syncer ─┐
//	                          → outbox ──────┤
//	                          → heartbeat ───┤
//	                                         ├→ storage (SQLite)
//	              Service Bus receiver ──────┤
//	LAN server (front door + services) ──────┤
//	  discovery (UDP 57854, mDNS) ── seen devices, status
//	devices (registry, push to TCP 8081) ────┤
//	back office (ERP files, webhook) ────────┤
//	media fetcher (Blob → cache) ────────────┘
//	alerts (rules on all the above → SMTP mail queue)
//	log ─ logship: redacted copy → disk buffer → log intake, through the WAN dialer (optional)
//	    └ support: recent records ─┐
//	support channel: signed requests (support queue) → answers (reply queue), through the WAN
//	  dialer (optional): ping, diagnostics (config, status, log, doctor, database), resync, retry-outbox
//
// The steps below follow the picture: the local store, the WAN side, the shop's own services,
// the LAN listeners, then every worker at once. The database opens and the LAN listeners bind
// before anything runs, so the shop is served from its local data within a second whatever the
// WAN does; sync runs in the background. started, when not nil, is called with the bound
// addresses once serving.
func daemon(ctx context.Context, cfg config.Config, log *slog.Logger, started func(map[string]string)) error {
	s := &components{cfg: cfg, log: log, startedAt: time.Now()}
	// One daemon per data_dir: two would each serve, sync and pair devices on their own.
	lock, err := lockDataDir(cfg.DataDir, "stop it first, or give this one another data_dir")
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := s.openLogs(); err != nil {
		return err
	}
	if s.shipper != nil {
		defer s.shipper.Close() // writes what is queued
	}
	logEnvWarnings(s.log, cfg)
	if err := s.openStore(ctx); err != nil {
		return err
	}
	defer func() {
		// A failed close leaves the numbers given out to jump at the next start (storage/ids.go):
		// said, so that shop IT knows why.
		if err := s.db.Close(); err != nil {
			s.log.Error("storage: the database did not close cleanly; the next start will raise the order numbers and event ids past the last ones given out", slog.Any("error", err))
		}
	}()
	if err := s.openWAN(); err != nil {
		return err
	}
	if err := s.buildServices(ctx); err != nil {
		return err
	}
	if err := s.listen(); err != nil {
		return err
	}
	err = s.run(ctx, started)
	s.log.Info("storeedge: stopped")
	return err
}

// components holds the daemon's parts while it runs.
type components struct {
	cfg       config.Config
	log       *slog.Logger // tees to log shipping once the WAN side is open
	startedAt time.Time

	db      *storage.DB
	dialer  *wan.Dialer
	shipper *logship.Shipper // nil when log shipping is off
	ring    *support.Ring    // the recent records, kept when the support channel is on
	client  *cloud.Client
	syncer  *feed.Syncer
	route   string // how the cloud is reached: direct, or through which proxy

	outbox     *outbox.Worker
	receiver   atomic.Pointer[servicebus.Receiver] // once the queue is known
	queueErr   atomic.Pointer[string]              // why the queue is not known yet, while it is not
	sbStatus   func() servicebus.Status            // nil when Service Bus is off
	backOffice *backoffice.Agent
	media      *media.Fetcher
	devices    *devices.Manager
	alerts     *alerts.Alerts
	backups    *backup.Scheduler // nil without scheduled backups
	helpdesk   *support.Worker   // the remote support channel; nil when it is off

	server    *server.Server
	discovery *discoveryServices
}

// openStore opens the database with its read cache, and records this run's mode and identity.
func (s *components) openStore(ctx context.Context) error {
	db, err := storage.Open(ctx, s.cfg.DatabasePath())
	if err != nil {
		return err
	}
	s.db = db
	if what := db.Upgraded(); what != "" {
		s.log.Info("storage: database upgraded", slog.String("upgrade", what))
	}
	if why := db.EpochRenewed(); why != "" {
		s.log.Info("storage: new delta feed epoch: devices that follow changes start again from 0", slog.String("epoch", db.Epoch()), slog.String("reason", why))
	}
	if why := db.IDsRaised(); why != "" {
		s.log.Info("storage: order numbers and event ids go on past the last ones given out, with a jump", slog.String("reason", why))
	}
	if s.cfg.LAN.ReadCacheMB > 0 {
		if err := db.EnableReadCache(int64(s.cfg.LAN.ReadCacheMB) << 20); err != nil {
			return err
		}
	}
	if err := recordMode(ctx, db, s.cfg, s.log); err != nil {
		return err
	}
	return db.RecordIdentity(ctx, backup.IdentityOf(s.cfg))
}

// openLogs builds the one WAN dialer and, before anything else logs, what takes a copy of
// every record: log shipping, through the dialer, and the support channel's recent records.
func (s *components) openLogs() error {
	dialer, err := newWANDialer(s.cfg)
	if err != nil {
		return usageError{err}
	}
	s.dialer = dialer
	// The server's own log never shows a secret of the configuration, whatever a dependency's
	// error echoes (the shipped and the support copies redact more, personal data too).
	s.log = slog.New(logship.SecretsHandler(s.log.Handler(), s.cfg.SecretValues()))
	if s.shipper, err = newLogShipper(s.cfg, dialer, s.log); err != nil {
		return err
	}
	if s.shipper != nil {
		s.log = slog.New(s.shipper.Handler(s.log.Handler()))
	}
	// The support channel keeps the recent records for its diagnostics, when it is on.
	if s.ring = supportRing(s.cfg); s.ring != nil {
		s.log = slog.New(s.ring.Handler(s.log.Handler()))
	}
	return nil
}

// openWAN builds what talks through the WAN dialer to the cloud: the cloud client and the feed
// syncer.
func (s *components) openWAN() error {
	dialer := s.dialer
	var err error
	// No overall client timeout: the cloud client applies cloud.request_timeout itself, so that
	// a long first-sync stream that keeps moving is not cut.
	if s.client, err = cloud.New(s.cfg.Cloud.URL, s.cfg.Cloud.StoreKey.Reveal(), dialer.HTTPClient(0), "storeedge/"+buildVersion()); err != nil {
		return usageError{err}
	}
	s.client.SetRequestTimeout(s.cfg.Cloud.RequestTimeout)
	s.syncer = feed.New(feed.Options{
		DB:           s.db,
		Client:       s.client,
		PageSize:     s.cfg.Cloud.PageSize,
		PollInterval: s.cfg.Cloud.PollInterval,
		Logger:       s.log,
		Classify:     classifyWANError,
	})
	s.route = dialer.Describe(s.client.Host())
	return nil
}

// buildServices builds the shop's own services: uploads, Service Bus status, the back office,
// media, devices, scheduled backups and the alerts that watch them all.
func (s *components) buildServices(ctx context.Context) error {
	cfg, log := s.cfg, s.log
	var err error
	if s.backups, err = backup.NewScheduler(cfg, s.db, buildVersion(), log); err != nil {
		return usageError{err}
	}
	if cfg.ServiceBus.Enabled {
		s.sbStatus = func() servicebus.Status {
			if r := s.receiver.Load(); r != nil {
				return r.Status()
			}
			if noQueue(cfg) {
				return servicebus.Status{State: servicebus.LinkDisconnected, LastError: errNoQueue.Error()}
			}
			why := waitingForQueue
			if e := s.queueErr.Load(); e != nil {
				why += ": " + *e
			}
			return servicebus.Status{State: servicebus.LinkConnecting, Queue: cfg.ServiceBus.Queue, LastError: why}
		}
	}
	s.outbox = outbox.New(outbox.Options{DB: s.db, Cloud: s.client, Batch: cfg.Orders.OutboxBatch, Logger: log})
	// The ERP is on the shop's side of the WAN: its webhook is reached directly, not through the
	// WAN proxy.
	s.backOffice = backoffice.New(backoffice.Options{DB: s.db, Config: cfg.BackOffice, Shop: cfg.Shop, UserAgent: "storeedge/" + buildVersion(), Logger: log})
	if s.media, err = newMedia(cfg, s.db, s.dialer, s.client, log); err != nil {
		return err
	}
	if s.devices, err = newDevices(ctx, cfg, s.db, log); err != nil {
		return err
	}
	var syncing *feed.Syncer
	if cfg.Cloud.Sync {
		syncing = s.syncer
	}
	src := alertSources{db: s.db, syncer: syncing, route: s.route, serviceBus: s.sbStatus, devices: s.devices, media: s.media,
		backups: s.backups, backOffice: s.backOffice}
	if s.alerts, err = newAlerts(cfg, s.dialer, src, log); err != nil {
		return usageError{err}
	}
	return s.buildSupport()
}

// buildSupport builds the remote support channel, which reads the status through the LAN
// server once it is built.
func (s *components) buildSupport() error {
	src := support.Sources{StartedAt: s.startedAt, Logs: s.ring,
		Status: func(ctx context.Context) (any, error) { return s.server.StatusDocument(ctx) }}
	if s.cfg.Cloud.Sync {
		src.Resync = s.syncer.Resnapshot
	}
	var err error
	if s.helpdesk, err = newSupport(s.cfg, s.dialer, s.db, src, s.log); err != nil {
		return usageError{err}
	}
	return nil
}

// newDevices is the device registry and its push links. Devices are paired and dialled on the
// LAN: no WAN dialer.
func newDevices(ctx context.Context, cfg config.Config, db *storage.DB, log *slog.Logger) (*devices.Manager, error) {
	return devices.New(ctx, devices.Options{
		DB:               db,
		ServerID:         cfg.ServerID,
		EnrollmentSecret: cfg.Devices.EnrollmentSecret.Reveal(),
		PairingCodeTTL:   cfg.Devices.PairingCodeTTL,
		PairingAttempts:  cfg.Devices.PairingAttempts,
		PushPortDefault:  cfg.Devices.PushPortDefault,
		CommandTTL:       cfg.Devices.CommandTTL,
		RetryMax:         cfg.Devices.PushRetryMax,
		Timeout:          cfg.Devices.PushTimeout,
		MinPushVersion:   cfg.Devices.PushMinVersion,
		Logger:           log,
	})
}

// listen builds the LAN server and binds its ports, then discovery, which says which ports are
// open (the server's status reads discovery through s.discovery, filled in then).
func (s *components) listen() error {
	s.discovery = &discoveryServices{}
	srv, err := server.New(s.serverOptions())
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	s.server = srv
	d, err := newDiscovery(s.cfg, srv.Addrs(), s.devices.PairingOpen, s.log)
	if err != nil {
		srv.Close()
		return err
	}
	if d != nil {
		*s.discovery = *d
	}
	return nil
}

// serverOptions gives the LAN server its configuration and what its answers read.
func (s *components) serverOptions() server.Options {
	cfg := s.cfg
	o := server.Options{
		DB:                    s.db,
		WAN:                   s.wanStatus,
		Bind:                  cfg.LAN.Bind,
		FrontDoor:             cfg.LAN.FrontDoor,
		FrontDoorWithoutAdmin: !cfg.LAN.FrontDoorAdmin,
		Services:              serviceMap(cfg.LAN.Services),
		ReadHeaderTimeout:     cfg.LAN.ReadHeaderTimeout,
		ReadTimeout:           cfg.LAN.ReadTimeout,
		WriteTimeout:          cfg.LAN.WriteTimeout,
		IdleTimeout:           cfg.LAN.IdleTimeout,
		ShutdownGrace:         cfg.LAN.ShutdownGrace,
		MaxBodyBytes:          cfg.LAN.MaxBodyBytes,
		MaxHeaderBytes:        cfg.LAN.MaxHeaderBytes,
		Logger:                s.log,
		TestMode:              cfg.Shop.IsTest(),
		ConfigView:            cfg.Redacted(),
		ServiceBus:            s.sbStatus,
		LogShipping:           logShippingStatus(s.shipper),
		Support:               supportStatus(s.helpdesk),
		BackOffice:            s.backOffice,
		Backups:               backupStatus(s.backups),
		Discovery:             s.discovery,
		Media:                 s.media,
		Devices:               s.devices,
		Alerts:                s.alerts,
		AdminToken:            cfg.Admin.Token.Reveal(),
		Metrics:               newMetrics(),
		MetricsToken:          cfg.Metrics.Token.Reveal(),
		ServerID:              cfg.ServerID,
		ShopName:              cfg.Shop.Name,
		Version:               buildVersion(),
		StartedAt:             s.startedAt,
	}
	if cfg.Cloud.Sync {
		o.Upload = s.outbox.State
	}
	return o
}

// wanStatus is the link to the cloud as the status shows it.
func (s *components) wanStatus() server.WANStatus {
	if !s.cfg.Cloud.Sync {
		return server.WANStatus{State: "disabled", Route: s.route}
	}
	w := s.syncer.WAN()
	return server.WANStatus{State: w.State, LastContact: w.LastContact, LastError: w.LastError, Route: s.route}
}

// run starts every worker, tells systemd the service is ready, and waits until ctx ends or a
// worker fails.
func (s *components) run(ctx context.Context, started func(map[string]string)) error {
	cfg := s.cfg
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.server.Run(gctx) })
	g.Go(func() error { return s.backOffice.Run(gctx) })
	s.discovery.run(gctx, g)
	g.Go(func() error { return s.db.RunReadCacheWarmer(gctx, s.log) })
	g.Go(func() error { return s.devices.Run(gctx) })
	g.Go(func() error { return s.alerts.Run(gctx) })
	if s.backups != nil {
		g.Go(func() error { return s.backups.Run(gctx) })
	}
	g.Go(func() error { return s.media.Run(gctx) })
	if s.shipper != nil {
		g.Go(func() error { return s.shipper.Run(gctx) })
	}
	if s.helpdesk != nil {
		g.Go(func() error { return s.helpdesk.Run(gctx) })
	}
	if cfg.Cloud.Sync {
		g.Go(func() error { return s.syncer.Run(gctx) })
		g.Go(func() error { return s.outbox.Run(gctx) })
		hb := &heartbeat.Sender{Client: s.client, DB: s.db, ServerID: cfg.ServerID, Version: buildVersion(), StartedAt: s.startedAt,
			WAN: func() string { return s.syncer.WAN().State }, Logger: s.log}
		g.Go(func() error { return hb.Run(gctx) })
	}
	if cfg.ServiceBus.Enabled {
		g.Go(func() error { return s.receiveOrders(gctx) })
	}
	addrs := s.server.Addrs()
	s.log.Info("storeedge: serving", slog.String("version", buildVersion()), slog.Any("listen", addrs),
		slog.String("database", s.db.Path()), slog.String("cloud", s.client.Host()), slog.String("wan_route", s.route),
		slog.Bool("sync", cfg.Cloud.Sync), slog.Duration("startup", time.Since(s.startedAt)))
	if started != nil {
		started(addrs)
	}
	// systemd (Type=notify): ready once serving; the watchdog is petted while the database answers.
	notifier := service.Systemd()
	if err := notifier.Ready(); err != nil {
		s.log.Warn("storeedge: cannot tell systemd the service is ready", slog.Any("error", err))
	}
	g.Go(func() error { return service.RunWatchdog(gctx, notifier, s.db.Ping) })
	err := g.Wait()
	notifier.Stopping()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return err
}

// waitingForQueue is the Service Bus status while the cloud has not named the queue.
const waitingForQueue = "waiting for the queue name from the cloud's remote configuration"

// errNoQueue is why no Service Bus order is received when the queue is not configured and the
// cloud, which would name it, is not to be contacted.
var errNoQueue = errors.New("no orders are received: servicebus.queue is empty and cloud.sync is false, so the cloud is not asked which queue to use; set servicebus.queue")

// noQueue tells whether Service Bus is on with no queue to receive from: servicebus.queue is
// empty and cloud.sync, which would ask the cloud for it, is off.
func noQueue(cfg config.Config) bool {
	return cfg.ServiceBus.Enabled && cfg.ServiceBus.Queue == "" && !cfg.Cloud.Sync
}

// receiveOrders runs the Service Bus receiver on the shop's queue, asking the cloud which it is
// when servicebus.queue is empty (and cloud.sync is on: with it off, the cloud is not contacted
// and nothing is received); and asking it again, with backoff, when the namespace says the queue
// it named does not exist (the vendor moved the shop to another).
func (s *components) receiveOrders(ctx context.Context) error {
	if noQueue(s.cfg) {
		s.log.Warn("servicebus: " + errNoQueue.Error())
		<-ctx.Done()
		return nil
	}
	fromCloud := s.cfg.ServiceBus.Queue == ""
	b := backoff.New(time.Second, 5*time.Minute)
	var r *servicebus.Receiver // one for the whole run, so that its counters go on
	missing := ""              // why the last queue was given up: the namespace does not have it
	for {
		queue := s.cfg.ServiceBus.Queue
		if fromCloud {
			q, err := remoteQueue(ctx, s.client, s.log, func(err error) {
				e := err.Error()
				s.queueErr.Store(&e)
				if r != nil {
					// The not-found error stays in view beside why the cloud cannot say.
					r.Waiting(missing + waitingForQueue + ": " + e)
				}
			})
			if err != nil {
				return err
			}
			queue = q
		}
		if r == nil {
			o := serviceBusOptions(s.cfg, s.dialer, queue)
			o.DB, o.TestMode, o.Logger, o.EndWhenMissing = s.db, s.cfg.Shop.IsTest(), s.log, fromCloud
			r = servicebus.NewReceiver(o)
			s.receiver.Store(r)
		} else {
			r.SetQueue(queue)
		}
		received := r.Status().Received
		err := r.Run(ctx)
		if !errors.Is(err, servicebus.ErrQueueMissing) {
			return err
		}
		missing = err.Error() + "; "
		if r.Status().Received > received {
			b.Reset() // it was the right queue until now
		}
		wait := b.Next(0)
		s.log.Warn("servicebus: the queue the cloud named does not exist; asking the cloud again", slog.String("queue", queue),
			slog.Any("error", err), slog.Duration("retry_in", wait))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return nil
		}
	}
}

// recordMode logs the shop's mode at start, and loudly when it differs from the last run: going
// from test to production is a deliberate configuration change that must leave a trace.
func recordMode(ctx context.Context, db *storage.DB, cfg config.Config, log *slog.Logger) error {
	production := !cfg.Shop.IsTest()
	was, known, err := db.RecordMode(ctx, production)
	if err != nil {
		return err
	}
	mode := func(p bool) string {
		if p {
			return config.ModeProduction
		}
		return config.ModeTest
	}
	switch {
	case known && was != production:
		log.Warn("shop mode changed by configuration", slog.String("from", mode(was)), slog.String("to", mode(production)))
	case production:
		log.Info("shop mode: production")
	default:
		log.Info("shop mode: test: orders are flagged as test and stay out of production exports")
	}
	return nil
}

// remoteQueue asks the cloud which Service Bus queue is the shop's, retrying with backoff while
// the WAN is down or the answer names no usable queue; report is told why at each failure.
func remoteQueue(ctx context.Context, client *cloud.Client, log *slog.Logger, report func(error)) (string, error) {
	b := backoff.New(time.Second, 5*time.Minute)
	for {
		rc, err := client.Config(ctx)
		var queue string
		if err == nil {
			queue, err = cloud.RemoteQueue(rc)
		}
		if err == nil && queue != "" {
			log.Info("servicebus: queue from the cloud's remote configuration", slog.String("queue", queue))
			return queue, nil
		}
		if err == nil {
			err = errors.New("the cloud's remote configuration names no Service Bus queue; set servicebus.queue")
		}
		report(err)
		wait := b.Next(cloud.RetryAfter(err)) // the cloud's Retry-After is a floor (cloud-api.md)
		log.Warn("servicebus: cannot learn the queue name yet", slog.Any("error", err), slog.Duration("retry_in", wait))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return "", err
		}
	}
}

// newWANDialer is the one WAN dialer, as configured; doctor builds it here too.
func newWANDialer(cfg config.Config) (*wan.Dialer, error) {
	return wan.New(wan.Options{
		ProxyURL:       cfg.WAN.Proxy.Reveal(),
		UseEnvironment: cfg.WAN.UseEnvironment,
		ExtraCAFile:    cfg.WAN.ExtraCAFile,
		ConnectTimeout: cfg.WAN.ConnectTimeout,
	})
}

// serviceBusOptions are how the server connects to its Service Bus queue; doctor connects so.
func serviceBusOptions(cfg config.Config, dialer *wan.Dialer, queue string) servicebus.Options {
	return servicebus.Options{
		ConnectionString:  cfg.ServiceBus.ConnectionString.Reveal(),
		Queue:             queue,
		WebSockets:        cfg.ServiceBus.Transport == config.TransportWebSockets,
		DialContext:       dialer.DialContext,
		TLSConfig:         dialer.TLSConfig,
		LockRenewInterval: cfg.ServiceBus.LockRenewInterval,
		MaxConcurrent:     cfg.ServiceBus.MaxConcurrent,
	}
}

// serviceMap is the port of each LAN service, as the server wants it.
func serviceMap(s config.Services) map[string]int {
	return map[string]int{
		"catalog": s.Catalog,
		"media":   s.Media,
		"orders":  s.Orders,
		"devices": s.Devices,
		"events":  s.Events,
		"admin":   s.Admin,
	}
}

// classifyWANError tells a proxy failure from an unreachable cloud, for the status page.
func classifyWANError(err error) string {
	var pe *wan.ProxyError
	if errors.As(err, &pe) && !errors.Is(err, wan.ErrTargetUnreachable) {
		return feed.StateProxyError
	}
	return feed.StateUnreachable
}

// lockDataDir takes the lock on dir for this process; advice ends the message when another
// process holds it.
func lockDataDir(dir, advice string) (*dirlock.Lock, error) {
	host, _ := os.Hostname()
	l, err := dirlock.Acquire(dir, dirlock.Owner{PID: os.Getpid(), StartedAt: time.Now(), Host: host, Version: buildVersion(), PIDNamespace: dirlock.PIDNamespace()})
	var held *dirlock.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("%w: %s", err, advice)
	}
	return l, err
}

// backupStatus is the status's view of the scheduled backups; nil without them.
func backupStatus(b *backup.Scheduler) func() backup.Status {
	if b == nil {
		return nil
	}
	return b.Status
}
