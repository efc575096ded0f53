package discovery

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per source address, in a map of bounded size: when it is full one
// source is forgotten (a flood from many spoofed addresses is what the global bucket is for).
type limiter struct {
	every  rate.Limit
	burst  int
	max    int
	global *rate.Limiter

	mu      sync.Mutex // protects the fields below
	sources map[netip.Addr]*rate.Limiter
}

// newLimiter allows each source one datagram per interval with bursts of burst, holds at most
// max sources, and allows globalPerSecond datagrams a second from all sources together.
func newLimiter(interval time.Duration, burst, max int, globalPerSecond int) *limiter {
	return &limiter{
		every:   rate.Every(interval),
		burst:   burst,
		max:     max,
		global:  rate.NewLimiter(rate.Limit(globalPerSecond), globalPerSecond),
		sources: make(map[netip.Addr]*rate.Limiter),
	}
}

// allow reports whether one more datagram from addr may be handled at now.
func (l *limiter) allow(addr netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sources[addr]
	if s == nil {
		if len(l.sources) >= l.max {
			l.evictLocked()
		}
		s = rate.NewLimiter(l.every, l.burst)
		l.sources[addr] = s
	}
	if !s.AllowN(now, 1) {
		return false
	}
	return l.global.AllowN(now, 1)
}

// evictLocked forgets one source, whichever the map yields first. A full map means a flood from
// many (likely spoofed) addresses: walking it for the least recent one on every new source would
// make each datagram of the flood cost the whole map, and the global bucket bounds the flood
// anyway.
func (l *limiter) evictLocked() {
	for a := range l.sources {
		delete(l.sources, a)
		return
	}
}
