package discovery

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per source address, in a map of bounded size: when it is full the
// source seen least recently is forgotten (it would have had a full bucket by now anyway unless
// it is flooding, and a flood from many spoofed addresses is what the global bucket is for).
type limiter struct {
	every  rate.Limit
	burst  int
	max    int
	global *rate.Limiter

	mu      sync.Mutex // protects the fields below
	sources map[netip.Addr]*source
}

type source struct {
	lim  *rate.Limiter
	last time.Time
}

// newLimiter allows each source one datagram per interval with bursts of burst, holds at most
// max sources, and allows globalPerSecond datagrams a second from all sources together.
func newLimiter(interval time.Duration, burst, max int, globalPerSecond int) *limiter {
	return &limiter{
		every:   rate.Every(interval),
		burst:   burst,
		max:     max,
		global:  rate.NewLimiter(rate.Limit(globalPerSecond), globalPerSecond),
		sources: make(map[netip.Addr]*source),
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
		s = &source{lim: rate.NewLimiter(l.every, l.burst)}
		l.sources[addr] = s
	}
	s.last = now
	if !s.lim.AllowN(now, 1) {
		return false
	}
	return l.global.AllowN(now, 1)
}

// evictLocked forgets the source seen least recently. It walks the map: the map is small and a
// full map is already the unusual case.
func (l *limiter) evictLocked() {
	var oldest netip.Addr
	var at time.Time
	for a, s := range l.sources {
		if at.IsZero() || s.last.Before(at) {
			oldest, at = a, s.last
		}
	}
	delete(l.sources, oldest)
}
