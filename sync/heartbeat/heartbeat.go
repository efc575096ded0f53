// Package heartbeat tells the cloud, at a fixed interval, that this server is alive and how far
// each collection's sync has got, so the vendor sees a shop going quiet before the shop calls.
package heartbeat

import (
	"context"
	"log/slog"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Sender posts heartbeats.
type Sender struct {
	Client    *cloud.Client
	DB        *storage.DB
	ServerID  string
	Version   string
	StartedAt time.Time
	Interval  time.Duration // default 60s
	WAN       func() string // the current WAN state, for the report
	Logger    *slog.Logger  // nil discards
	sent      func(error)   // tests observe each attempt
}

// Run sends a heartbeat now and then every Interval until ctx ends. A failed heartbeat is not
// retried: the next one carries newer facts anyway.
func (s *Sender) Run(ctx context.Context) error {
	interval := s.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	failing := false
	for {
		err := s.Client.Heartbeat(ctx, s.report(ctx))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err != nil && !failing:
			log.Warn("heartbeat: not delivered, will send the next one", slog.Any("error", err))
		case err == nil && failing:
			log.Info("heartbeat: delivered again")
		}
		failing = err != nil
		if s.sent != nil {
			s.sent(err)
		}
		// A cloud that asks the shop to wait (429 or 503 with Retry-After) gets no heartbeat before
		// that time (cloud-api.md).
		t.Reset(max(interval, cloud.RetryAfter(err)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Sender) report(ctx context.Context) cloudapi.Heartbeat {
	hb := cloudapi.Heartbeat{ServerID: s.ServerID, Version: s.Version, StartedAt: s.StartedAt.UTC().Format(time.RFC3339),
		Collections: make(map[string]cloudapi.CollectionState)}
	if s.WAN != nil {
		hb.WAN = s.WAN()
	}
	for _, st := range s.DB.FeedStates() {
		cs := cloudapi.CollectionState{Cursor: st.Cursor, Quarantined: st.Quarantined}
		if !st.LastSuccess.IsZero() {
			cs.LastSuccess = st.LastSuccess.UTC().Format(time.RFC3339)
		}
		cs.Rows, _ = s.DB.Count(ctx, st.Collection)
		hb.Collections[st.Collection] = cs
	}
	return hb
}
