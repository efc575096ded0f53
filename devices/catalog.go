package devices

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/storage"
)

// Defaults of the catalog notices (docs/catalog.md).
const (
	// defaultCatalogNoticeEvery is the least time between two rounds of catalog.changed notices:
	// a catalog that changes every second costs a device one pull every five.
	defaultCatalogNoticeEvery = 5 * time.Second
	// catalogNoticeTTL is how long a notice waits for its device: one that comes back later
	// pulls the changes anyway (docs/catalog.md), so an old notice would tell it nothing.
	catalogNoticeTTL = time.Minute
	// keepCatalogNotices is how long a finished catalog notice stays listed: a shop whose catalog
	// changes at every poll makes one a device every 30 s, and a week of them (keepCommands)
	// would be most of the command list.
	keepCatalogNotices = time.Hour
)

// catalogNotice is the payload of a catalog.changed command the server sends by itself: the
// delta feed's epoch and its latest change number when the notice was made. The device pulls
// GET /api/v1/catalog/changes until more is false, which may take it past latest.
type catalogNotice struct {
	Epoch  string `json:"epoch"`
	Latest int64  `json:"latest"`
}

// followCatalog sends a catalog.changed command to every device with the catalog capability
// when the delta feed has changed, at most once every CatalogNoticeEvery, and not to a device
// that has one queued (not sent yet): that one will make the device pull everything changed
// until it arrives, so a device away gets one notice, not one per change.
func (m *Manager) followCatalog(ctx context.Context) {
	next := m.db.CatalogChanged()
	b := backoff.New(time.Second, time.Minute)
	for {
		select {
		case <-next:
		case <-ctx.Done():
			return
		}
		next = m.db.CatalogChanged() // the changes from now on wait for the next round
		for {
			err := m.noticeCatalog(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			wait := b.Next(0)
			m.log.Warn("devices: cannot queue catalog notices; will retry", slog.Any(keyError, err), slog.Duration("retry_in", wait))
			if backoff.Sleep(ctx, wait) != nil {
				return
			}
		}
		b.Reset()
		if backoff.Sleep(ctx, m.o.CatalogNoticeEvery) != nil {
			return
		}
	}
}

// noticeCatalog queues one round of catalog.changed commands.
func (m *Manager) noticeCatalog(ctx context.Context) error {
	ids := m.devicesWith(CapCatalog)
	if len(ids) == 0 {
		return nil
	}
	now := m.now()
	waiting, err := m.db.DevicesWithQueuedCommand(ctx, CmdCatalogChanged, now)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(catalogNotice{Epoch: m.db.Epoch(), Latest: m.db.Seq()})
	if err != nil {
		return err
	}
	var cmds []storage.Command
	for _, id := range ids {
		if !waiting[id] {
			cmds = append(cmds, m.newCommand(id, CmdCatalogChanged, payload, "", now, catalogNoticeTTL))
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	if err := m.enqueue(ctx, cmds, nil); err != nil {
		return err
	}
	m.log.Debug("devices: catalog notices queued", slog.Int(keyCount, len(cmds)))
	return nil
}
