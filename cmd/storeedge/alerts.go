package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/disk"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/alerts"
	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/feed"
	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// alertSources are the components the alert rules read their facts from; a nil one is a
// component the daemon does not run.
type alertSources struct {
	db         *storage.DB
	syncer     *feed.Syncer // nil when sync is off
	route      string
	serviceBus func() servicebus.Status // nil when Service Bus is off
	devices    *devices.Manager
	media      *media.Fetcher
	backups    *backup.Scheduler // nil without scheduled backups
	backOffice *backoffice.Agent // nil without a back office; one with nothing configured says nothing
}

// newAlerts builds the alert rules and, when smtp.host is set, their mailer.
func newAlerts(cfg config.Config, dialer *wan.Dialer, src alertSources, log *slog.Logger) (*alerts.Alerts, error) {
	var mailer alerts.Mailer
	if cfg.SMTP.Enabled() {
		m, err := alerts.NewSMTP(cfg.SMTP, dialer.TLSConfig())
		if err != nil {
			return nil, err
		}
		mailer = m
	}
	return alerts.New(alerts.Options{
		DB:       src.db,
		Facts:    src.facts(cfg.DataDir),
		Config:   cfg.Alerts,
		Mailer:   mailer,
		Identity: alertIdentity(cfg),
		Logger:   log,
		// An error echoing another system's answer is quoted without the configuration's
		// secrets, as the local log has it. Not log shipping's whole redaction: that one also
		// takes out what looks like a person's data or a code (a stock file named
		// stock-2026-1207.csv, an ERP's "phone: must be 10 digits"), which the shop's own IT
		// needs to read.
		Redact: logship.NewRedactor(cfg.SecretValues()).Secrets,
	})
}

func alertIdentity(cfg config.Config) alerts.Identity {
	return alerts.Identity{ShopName: cfg.Shop.Name, ShopID: cfg.Shop.ID, ServerID: cfg.ServerID}
}

// facts gathers, at each check, what the rules look at.
func (s alertSources) facts(dataDir string) func(context.Context) (alerts.Facts, error) {
	return func(ctx context.Context) (alerts.Facts, error) {
		var f alerts.Facts
		if s.syncer != nil {
			w := s.syncer.WAN()
			f.WAN = &alerts.WAN{Up: w.State == feed.StateOK, Unknown: w.State == feed.StateNever, State: w.State,
				LastError: w.LastError, Route: s.route, LastContact: w.LastContact}
			pending, rejected, oldest, err := s.db.OutboxBacklog(ctx)
			if err != nil {
				return f, err
			}
			f.UploadsRefused = rejected
			if oldest != nil {
				f.OldestUpload, f.UploadsWaiting = *oldest, pending
			}
		}
		if s.serviceBus != nil {
			sb := s.serviceBus()
			f.ServiceBus = &alerts.ServiceBus{Queue: sb.Queue, DeadLettered: sb.DeadLettered}
		}
		f.Quarantined = map[string]int64{}
		for _, c := range cloudapi.Collections {
			st, _ := s.db.FeedState(c)
			f.Quarantined[c] = st.Quarantined
		}
		if s.media != nil {
			st, err := s.media.Status(ctx)
			if err != nil {
				return f, err
			}
			// Items wait for room only once the cache is full of files that products refer to; with
			// media off, or no container to fetch from, nothing fetches them.
			f.MediaQuotaFull = st.WaitingSpace > 0 && st.State != media.StateDisabled && st.State != media.StateNotConfigured
		}
		if s.backups != nil {
			b := s.backups.Status()
			f.Backup = &alerts.Backup{Dir: b.Dir, Unknown: !b.Ran, Failures: b.Failures, FailingSince: b.FailingSince,
				LastError: b.LastError, LastSuccess: b.LastSuccess, LastFile: b.LastFile, RunningSince: b.RunningSince, LastTook: b.LastTook}
		}
		if s.backOffice != nil && s.backOffice.Configured() {
			b := s.backOffice.Status()
			f.BackOffice = &alerts.BackOffice{Unknown: b.LastRun.IsZero(), LastError: b.LastError, LastSuccess: b.LastSuccess,
				Refused: s.backOffice.Refusals()}
		}
		if free, err := disk.Free(dataDir); err == nil {
			f.Disk = &alerts.Disk{Path: dataDir, Free: free}
		}
		if err := s.db.FlushFailed(); err != nil {
			f.DiskFailed = err.Error()
		}
		list, err := s.devices.List(ctx)
		if err != nil {
			return f, err
		}
		for _, d := range list {
			if d.Revoked {
				continue
			}
			dev := alerts.Device{ID: d.ID, Name: d.Name, Connected: d.Push == devices.PushConnected}
			if d.LastSeen != nil {
				dev.LastSeen = *d.LastSeen
			}
			f.Devices = append(f.Devices, dev)
		}
		return f, nil
	}
}

const alertUsage = `Usage: storeedge alert test [--config PATH] [--set KEY=VALUE ...]

Sends a test message to smtp.recipients through the mail server of the configuration (smtp.*),
as the service would send an alert, and says what went wrong if it cannot.
`

// alertTestTimeout bounds "storeedge alert test" beyond smtp.timeout's conversation.
const alertTestTimeout = 5 * time.Minute

func cmdAlert(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, alertUsage)
			return nil
		}
		fmt.Fprint(stderr, alertUsage)
		if len(args) == 0 {
			return usageError{errors.New("alert: no subcommand given")}
		}
		return usageError{fmt.Errorf("alert: unknown subcommand %q", args[0])}
	}
	cfg, err := loadConfigWith("alert test", alertUsage, args[1:], env, stderr, nil, "cloud.store_key")
	if err != nil {
		return err
	}
	if !cfg.SMTP.Enabled() {
		return usageError{errors.New("alert test: smtp.host is empty: configure the mail server first (docs/configuration.md, \"Alerts by e-mail\")")}
	}
	dialer, err := newWANDialer(cfg)
	if err != nil {
		return usageError{err}
	}
	m, err := alerts.NewSMTP(cfg.SMTP, dialer.TLSConfig())
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, alertTestTimeout)
	defer cancel()
	if err := m.Send(ctx, alertIdentity(cfg).TestMessage(time.Now(), m.String())); err != nil {
		// A mail server's answer may repeat the credentials it refused.
		return fmt.Errorf("alert test: %s", logship.NewRedactor(cfg.SecretValues()).Secrets(err.Error()))
	}
	fmt.Fprintf(stdout, "sent a test message to %s through %s\n", strings.Join(cfg.SMTP.Recipients, ", "), m)
	return nil
}
