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
	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/ops/service"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/server"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/feed"
	"github.com/storeedge/storeedge/sync/heartbeat"
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
// The database opens and the LAN listeners bind before anything starts, so the shop is served
// from its local data within a second whatever the WAN does; sync runs in the background.
// started, when not nil, is called with the bound addresses once serving.
func daemon(ctx context.Context, cfg config.Config, log *slog.Logger, started func(map[string]string)) error {
	startedAt := time.Now()
	// One daemon per data_dir: two would each serve, sync and pair devices on their own.
	lock, err := lockDataDir(cfg.DataDir, "stop it first, or give this one another data_dir")
	if err != nil {
		return err
	}
	defer lock.Release()
	db, err := storage.Open(ctx, cfg.DatabasePath())
	if err != nil {
		return err
	}
	defer db.Close()
	if why := db.EpochRenewed(); why != "" {
		log.Info("storage: new delta feed epoch: devices that follow changes start again from 0", slog.String("epoch", db.Epoch()), slog.String("reason", why))
	}
	if cfg.LAN.ReadCacheMB > 0 {
		if err := db.EnableReadCache(int64(cfg.LAN.ReadCacheMB) << 20); err != nil {
			return err
		}
	}

	dialer, err := newWANDialer(cfg)
	if err != nil {
		return usageError{err}
	}
	// Log shipping tees every record from here on; Close (deferred) writes what is queued.
	shipper, err := newLogShipper(cfg, dialer, log)
	if err != nil {
		return err
	}
	if shipper != nil {
		defer shipper.Close()
		log = slog.New(shipper.Handler(log.Handler()))
	}
	// The support channel keeps the recent records for its diagnostics, when it is on.
	ring := supportRing(cfg)
	if ring != nil {
		log = slog.New(ring.Handler(log.Handler()))
	}
	// No overall client timeout: the cloud client applies cloud.request_timeout itself, so that
	// a long first-sync stream that keeps moving is not cut.
	client, err := cloud.New(cfg.Cloud.URL, cfg.Cloud.StoreKey.Reveal(), dialer.HTTPClient(0), "storeedge/"+buildVersion())
	if err != nil {
		return usageError{err}
	}
	client.SetRequestTimeout(cfg.Cloud.RequestTimeout)
	syncer := feed.New(feed.Options{
		DB:           db,
		Client:       client,
		PageSize:     cfg.Cloud.PageSize,
		PollInterval: cfg.Cloud.PollInterval,
		Logger:       log,
		Classify:     classifyWANError,
	})
	route := dialer.Describe(client.Host())
	wanStatus := func() server.WANStatus {
		if !cfg.Cloud.Sync {
			return server.WANStatus{State: "disabled", Route: route}
		}
		w := syncer.WAN()
		return server.WANStatus{State: w.State, LastContact: w.LastContact, LastError: w.LastError, Route: route}
	}

	if err := recordMode(ctx, db, cfg, log); err != nil {
		return err
	}
	if err := db.RecordIdentity(ctx, backup.IdentityOf(cfg)); err != nil {
		return err
	}
	backups, err := backup.NewScheduler(cfg, db, buildVersion(), log)
	if err != nil {
		return usageError{err}
	}

	var receiver atomic.Pointer[servicebus.Receiver]
	var sbStatus func() servicebus.Status
	if cfg.ServiceBus.Enabled {
		sbStatus = func() servicebus.Status {
			if r := receiver.Load(); r != nil {
				return r.Status()
			}
			return servicebus.Status{State: servicebus.LinkConnecting, Queue: cfg.ServiceBus.Queue, LastError: "waiting for the queue name from the cloud's remote configuration"}
		}
	}

	ob := outbox.New(outbox.Options{DB: db, Cloud: client, Batch: cfg.Orders.OutboxBatch, Logger: log})
	var upload func() outbox.State
	if cfg.Cloud.Sync {
		upload = ob.State
	}

	// The ERP is on the shop's side of the WAN: its webhook is reached directly, not through the
	// WAN proxy.
	bo := backoffice.New(backoffice.Options{DB: db, Config: cfg.BackOffice, Shop: cfg.Shop, UserAgent: "storeedge/" + buildVersion(), Logger: log})

	mediaFetcher, err := newMedia(cfg, db, dialer, client, log)
	if err != nil {
		return err
	}

	// Discovery says which LAN ports are open, so it is built once they are (below).
	disc := &discoveryServices{}

	// Devices are paired and dialled on the LAN: no WAN dialer.
	dm, err := devices.New(ctx, devices.Options{
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
	if err != nil {
		return err
	}

	var syncing *feed.Syncer
	if cfg.Cloud.Sync {
		syncing = syncer
	}
	alerter, err := newAlerts(cfg, dialer, alertSources{db: db, syncer: syncing, route: route, serviceBus: sbStatus, devices: dm, media: mediaFetcher}, log)
	if err != nil {
		return usageError{err}
	}

	var srv *server.Server
	src := support.Sources{StartedAt: startedAt, Logs: ring, Status: func(ctx context.Context) (any, error) { return srv.StatusDocument(ctx) }}
	if cfg.Cloud.Sync {
		src.Resync = syncer.Resnapshot
	}
	helpdesk, err := newSupport(cfg, dialer, db, src, log)
	if err != nil {
		return usageError{err}
	}

	srv, err = server.New(server.Options{
		DB:                db,
		WAN:               wanStatus,
		Bind:              cfg.LAN.Bind,
		FrontDoor:         cfg.LAN.FrontDoor,
		Services:          serviceMap(cfg.LAN.Services),
		ReadHeaderTimeout: cfg.LAN.ReadHeaderTimeout,
		ReadTimeout:       cfg.LAN.ReadTimeout,
		WriteTimeout:      cfg.LAN.WriteTimeout,
		IdleTimeout:       cfg.LAN.IdleTimeout,
		ShutdownGrace:     cfg.LAN.ShutdownGrace,
		MaxBodyBytes:      cfg.LAN.MaxBodyBytes,
		MaxHeaderBytes:    cfg.LAN.MaxHeaderBytes,
		Logger:            log,
		TestMode:          cfg.Shop.IsTest(),
		ServiceBus:        sbStatus,
		Upload:            upload,
		LogShipping:       logShippingStatus(shipper),
		Support:           supportStatus(helpdesk),
		BackOffice:        bo,
		Discovery:         disc,
		Media:             mediaFetcher,
		Devices:           dm,
		Alerts:            alerter,
		AdminToken:        cfg.Admin.Token.Reveal(),
		ServerID:          cfg.ServerID,
		ShopName:          cfg.Shop.Name,
		Version:           buildVersion(),
		StartedAt:         startedAt,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	d, err := newDiscovery(cfg, srv.Addrs(), dm.PairingOpen, log)
	if err != nil {
		srv.Close()
		return err
	}
	if d != nil {
		*disc = *d
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return bo.Run(gctx) })
	disc.run(gctx, g)
	g.Go(func() error { return db.RunReadCacheWarmer(gctx, log) })
	g.Go(func() error { return dm.Run(gctx) })
	g.Go(func() error { return alerter.Run(gctx) })
	if backups != nil {
		g.Go(func() error { return backups.Run(gctx) })
	}
	g.Go(func() error { return mediaFetcher.Run(gctx) })
	if shipper != nil {
		g.Go(func() error { return shipper.Run(gctx) })
	}
	if helpdesk != nil {
		g.Go(func() error { return helpdesk.Run(gctx) })
	}
	if cfg.Cloud.Sync {
		g.Go(func() error { return syncer.Run(gctx) })
		g.Go(func() error { return ob.Run(gctx) })
		hb := &heartbeat.Sender{Client: client, DB: db, ServerID: cfg.ServerID, Version: buildVersion(), StartedAt: startedAt,
			WAN: func() string { return syncer.WAN().State }, Logger: log}
		g.Go(func() error { return hb.Run(gctx) })
	}
	if cfg.ServiceBus.Enabled {
		g.Go(func() error {
			queue := cfg.ServiceBus.Queue
			if queue == "" {
				q, qerr := remoteQueue(gctx, client, log)
				if qerr != nil {
					return qerr
				}
				queue = q
			}
			o := serviceBusOptions(cfg, dialer, queue)
			o.DB, o.TestMode, o.Logger = db, cfg.Shop.IsTest(), log
			r := servicebus.NewReceiver(o)
			receiver.Store(r)
			return r.Run(gctx)
		})
	}
	addrs := srv.Addrs()
	log.Info("storeedge: serving", slog.String("version", buildVersion()), slog.Any("listen", addrs),
		slog.String("database", db.Path()), slog.String("cloud", client.Host()), slog.String("wan_route", route),
		slog.Bool("sync", cfg.Cloud.Sync), slog.Duration("startup", time.Since(startedAt)))
	if started != nil {
		started(addrs)
	}
	// systemd (Type=notify): ready once serving; the watchdog is petted while the database answers.
	notifier := service.Systemd()
	if err := notifier.Ready(); err != nil {
		log.Warn("storeedge: cannot tell systemd the service is ready", slog.Any("error", err))
	}
	g.Go(func() error { return service.RunWatchdog(gctx, notifier, db.Ping) })
	err = g.Wait()
	notifier.Stopping()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	log.Info("storeedge: stopped")
	return err
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

// remoteQueue asks the cloud which Service Bus queue is the shop's, retrying while the WAN is down.
func remoteQueue(ctx context.Context, client *cloud.Client, log *slog.Logger) (string, error) {
	b := backoff.New(time.Second, 5*time.Minute)
	for {
		rc, err := client.Config(ctx)
		if err == nil && rc.ServiceBus.Queue != "" {
			log.Info("servicebus: queue from the cloud's remote configuration", slog.String("queue", rc.ServiceBus.Queue))
			return rc.ServiceBus.Queue, nil
		}
		if err == nil {
			err = errors.New("the cloud's remote configuration names no Service Bus queue; set servicebus.queue")
		}
		wait := b.Next(0)
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
	l, err := dirlock.Acquire(dir, dirlock.Owner{PID: os.Getpid(), StartedAt: time.Now(), Host: host, Version: buildVersion()})
	var held *dirlock.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("%w: %s", err, advice)
	}
	return l, err
}
