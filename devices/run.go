package devices

import (
	"context"
	"sync"
	"time"
)

// sweepInterval is how often commands whose time ran out are marked expired.
const sweepInterval = time.Second

// Finished commands are kept for the admin view for keepCommands, and pruned every pruneEvery.
const (
	keepCommands = 7 * 24 * time.Hour
	pruneEvery   = time.Hour
)

// Run keeps a push link to every paired device, queues new orders for the devices that handle
// them and catalog notices for those that keep a copy of the catalog, and expires old commands,
// until ctx ends; it returns nil then.
func (m *Manager) Run(ctx context.Context) error {
	// The writer stops last, once the links have handed it the acknowledgements they read.
	var writing sync.WaitGroup
	defer writing.Wait()
	wctx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriter()
	writing.Go(func() { m.writer.run(wctx) })
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { m.followOrders(ctx) })
	wg.Go(func() { m.followCatalog(ctx) })
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	defer m.stopLinks()
	m.reconcile(ctx, &wg)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.changed:
			// Only pairing and revocation change the set of devices; reconciling takes the
			// registry's write lock, which every device request's authentication waits for.
			m.reconcile(ctx, &wg)
		case <-sweep.C:
			m.expire(ctx)
		case <-prune.C:
			m.prune(ctx)
		}
	}
}

// reconcile starts a link for each live device that has none.
func (m *Manager) reconcile(ctx context.Context, wg *sync.WaitGroup) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, e := range m.devs {
		if !e.dev.RevokedAt.IsZero() || m.links[id] != nil || m.revoking[id] > 0 {
			continue
		}
		l := newLink(m, id)
		lctx, cancel := context.WithCancel(ctx)
		l.cancel = cancel
		m.links[id] = l
		wg.Go(func() { l.run(lctx) })
	}
}

func (m *Manager) stopLinks() {
	m.mu.Lock()
	links := m.links
	m.links = map[string]*link{}
	m.mu.Unlock()
	for _, l := range links {
		l.stop()
	}
}
