// Package logbudget bounds a log line that outside input can repeat at will (a wrong
// credential, a forged datagram): so many lines a minute, then a count of those left out.
package logbudget

import (
	"sync"
	"time"
)

// Budget lets PerMinute lines a minute through and counts the others. The zero value lets
// none through; it is safe for concurrent use.
type Budget struct {
	PerMinute int

	mu      sync.Mutex // protects the fields below
	since   time.Time
	n       int
	dropped int
}

// Allow says whether a line may be logged now, and how many were left out in the minute that
// just ended (once, at the first line after it, for the caller to log).
func (b *Budget) Allow(now time.Time) (ok bool, dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.since) >= time.Minute {
		dropped, b.since, b.n, b.dropped = b.dropped, now, 0, 0
	}
	if b.n < b.PerMinute {
		b.n++
		return true, dropped
	}
	b.dropped++
	return false, dropped
}
