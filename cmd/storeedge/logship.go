package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/logship"
)

// newLogShipper is log shipping as configured (logs.ship.*), or nil when it is off. Its disk
// buffer is data_dir/logship; it reaches the intake through the WAN dialer. log takes its own
// messages, which are not shipped.
func newLogShipper(cfg config.Config, dialer *wan.Dialer, log *slog.Logger) (*logship.Shipper, error) {
	s := cfg.Logs.Ship
	if !s.Enabled {
		return nil, nil
	}
	dir := filepath.Join(cfg.DataDir, "logship")
	sh, err := logship.Open(logship.Options{
		Dir:           dir,
		URL:           s.URL,
		APIKey:        s.APIKey.Reveal(),
		Level:         s.SlogLevel(),
		BufferBytes:   int64(s.BufferMB) << 20,
		BatchSize:     s.BatchSize,
		BatchInterval: s.BatchInterval,
		Client:        dialer.HTTPClient(0),
		Route:         dialer.Describe(logship.IntakeAddr(s.URL)),
		Secrets:       cfg.SecretValues(),
		Meta:          logship.Meta{ServerID: cfg.ServerID, ShopID: cfg.Shop.ID, Version: buildVersion()},
		UserAgent:     "storeedge/" + buildVersion(),
		Logger:        log,
	})
	if err != nil {
		// The server does not start without the buffer it was told to ship through: say how
		// to start it again.
		return nil, fmt.Errorf("%w; the log shipping buffer is %s: give the service's account access to it, or delete it (the records waiting there are lost), or set logs.ship.enabled: false", err, dir)
	}
	return sh, nil
}

// logShippingStatus is what the status shows of shipping: nil (null) when it is off.
func logShippingStatus(s *logship.Shipper) func() logship.Status {
	if s == nil {
		return nil
	}
	return s.Status
}
