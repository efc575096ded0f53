package devices

import "context"

// Prune runs the pruning of finished commands now, as Run does every hour.
func (m *Manager) Prune(ctx context.Context) { m.prune(ctx) }
