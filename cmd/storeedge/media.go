package main

import (
	"context"
	"log/slog"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
	"github.com/storeedge/storeedge/sync/cloud"
	"github.com/storeedge/storeedge/sync/media"
)

// newMedia builds the media fetcher: the cache under data_dir, and the shop's Blob container
// reached through the one WAN dialer. The container is the shop's own when media.container_url
// or media.connection_string is set, else the one the cloud's remote configuration names.
func newMedia(cfg config.Config, db *storage.DB, dialer *wan.Dialer, client *cloud.Client, log *slog.Logger) (*media.Fetcher, error) {
	cache, err := mediacache.Open(cfg.MediaPath())
	if err != nil {
		return nil, err
	}
	m := cfg.Media
	start, end, always, _ := config.ParseWindow(m.LargeFileWindow) // Validate checked it
	o := media.Options{
		DB:               db,
		Cache:            cache,
		Prefetch:         m.Prefetch && m.Enabled, // off, nothing is fetched: plan nothing
		MaxBytes:         m.CacheMaxBytes,
		Bandwidth:        m.MaxBandwidth,
		Parallel:         m.Parallel,
		LargeFile:        m.LargeFileBytes,
		Window:           media.Window{Start: start, End: end, Set: !always},
		OnDemandWait:     m.OnDemandWait,
		StallTimeout:     m.StallTimeout,
		RetryMax:         m.RetryMax,
		ProgressInterval: m.ProgressInterval,
		Logger:           log,
	}
	loc, own, isOwn := media.OwnLocator(m)
	switch {
	case !m.Enabled:
		o.Describe = "off (media.enabled is false)"
	case isOwn:
		o.Describe = own
	case cfg.Cloud.Sync:
		o.Describe = "the cloud's remote configuration"
		loc.Remote = func(ctx context.Context) (string, error) {
			rc, err := client.Config(ctx)
			if err != nil {
				return "", err
			}
			u, err := cloud.RemoteContainerURL(rc)
			if err != nil {
				return "", &media.UnusableError{Err: err}
			}
			return u, nil
		}
	default:
		o.Describe = "none (cloud.sync is off and no container is configured)"
	}
	if m.Enabled {
		// No overall timeout: media.stall_timeout cuts a download that stops moving, or whose
		// answer does not come.
		c := media.NewContainer(loc, dialer.HTTPClient(0))
		c.SetAnswerTimeout(m.StallTimeout)
		o.Source = c
	}
	return media.New(o)
}
