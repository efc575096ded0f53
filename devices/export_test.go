package devices

import "context"

// Prune runs the pruning of finished commands now, as Run does every hour.
func (m *Manager) Prune(ctx context.Context) { m.prune(ctx) }

// HoldPairingTurn takes the pairing turn, as an attempt under way does, until release.
func (m *Manager) HoldPairingTurn() (release func()) {
	m.pairing <- struct{}{}
	return func() { <-m.pairing }
}
