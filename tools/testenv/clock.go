package testenv

import (
	"sync"
	"time"
)

// Clock is a clock for tests that moves only when told to. Its Now can be passed wherever a
// component takes a clock func.
type Clock struct {
	mu  sync.Mutex // protects the field below
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
