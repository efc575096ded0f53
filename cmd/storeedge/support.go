package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/doctor"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// supportDoctorTimeout bounds each WAN check of the doctor report diagnostics sends, so that
// the whole request stays well within support.DefaultRunTimeout.
const supportDoctorTimeout = 10 * time.Second

// supportRing is the ring of recent log records diagnostics sends, or nil when the support
// channel is off (nothing is kept then).
func supportRing(cfg config.Config) *support.Ring {
	if !cfg.Support.ServiceBus.Enabled {
		return nil
	}
	return support.NewRing(0, cfg.SecretValues()...)
}

// supportConnection is how the server reaches the support namespace: as the order link does.
func supportConnection(cfg config.Config, dialer *wan.Dialer) servicebus.Connection {
	s := cfg.Support.ServiceBus
	return servicebus.Connection{
		ConnectionString: s.ConnectionString.Reveal(),
		WebSockets:       s.Transport == config.TransportWebSockets,
		DialContext:      dialer.DialContext,
		TLSConfig:        dialer.TLSConfig,
	}
}

// newSupport is the support channel as configured (support.servicebus.*), or nil when it is
// off. src says where its answers come from; the doctor report is filled in here.
func newSupport(cfg config.Config, dialer *wan.Dialer, db *storage.DB, src support.Sources, log *slog.Logger) (*support.Worker, error) {
	s := cfg.Support.ServiceBus
	if !s.Enabled {
		return nil, nil
	}
	key, err := config.ParseSupportKey(s.PublicKey)
	if err != nil {
		return nil, err // Validate has refused it already
	}
	src.Version = buildVersion()
	src.Config = cfg.Redacted
	src.Doctor = func(ctx context.Context) any {
		return doctor.Run(ctx, doctorOptions(cfg, dialer, cfg.File, supportDoctorTimeout)).WithSummary()
	}
	return support.New(support.Options{
		Connection: supportConnection(cfg, dialer),
		Queue:      s.Queue,
		ReplyQueue: s.ReplyQueue,
		Verifier:   support.Verifier{Key: key, Shop: cfg.Shop.ID, Server: cfg.ServerID},
		Allowed: map[string]bool{
			support.KindPing:        s.Allow.Ping,
			support.KindDiagnostics: s.Allow.Diagnostics,
			support.KindResync:      s.Allow.Resync,
			support.KindRetryOutbox: s.Allow.RetryOutbox,
		},
		DB:                db,
		Sources:           src,
		Secrets:           cfg.SecretValues(),
		LockRenewInterval: cfg.ServiceBus.LockRenewInterval,
		Logger:            log,
	}), nil
}

// supportStatus is what the status shows of the support channel: nil (null) when it is off.
func supportStatus(w *support.Worker) func() support.Status {
	if w == nil {
		return nil
	}
	return w.Status
}
