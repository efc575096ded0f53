package devices

import (
	"slices"
	"sync"
	"time"
)

// throttle limits failed pairing attempts: at most perSource failures per window from one
// address, and ten times that from all addresses together, so that guessing a code or the
// enrollment secret is hopeless within a code's lifetime even from many addresses.
type throttle struct {
	perSource int
	window    time.Duration

	mu       sync.Mutex // protects the fields below
	failures map[string][]time.Time
}

// maxSources bounds the memory of the throttle; beyond it, records of other sources are dropped
// (those with no recent failure first). The record of all sources together is never dropped, so
// many addresses cannot flush the overall limit.
const maxSources = 10000

const allSources = "*"

func newThrottle(perSource int, window time.Duration) *throttle {
	return &throttle{perSource: perSource, window: window, failures: map[string][]time.Time{}}
}

// allow reports whether source may try now; when not, wait says for how long it must wait, and
// shared whether that is for the failures of all sources together (the longer wait, when both).
func (t *throttle) allow(source string, now time.Time) (ok bool, wait time.Duration, shared bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ok, wait = t.allowLocked(source, now)
	if !ok {
		shared = t.waitLocked(source, t.perSource, now) < wait
	}
	return ok, wait, shared
}

// take is allow, and when it allows, fail, in one step: callers at once cannot all pass.
func (t *throttle) take(source string, now time.Time) (ok bool, wait time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok, wait = t.allowLocked(source, now); ok {
		t.failLocked(source, now)
	}
	return ok, wait
}

// giveBack undoes a take of source at at, for an attempt that did not happen after all.
func (t *throttle) giveBack(source string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, key := range []string{source, allSources} {
		fs := t.failures[key]
		if i := slices.IndexFunc(fs, func(f time.Time) bool { return f.Equal(at) }); i >= 0 {
			t.failures[key] = slices.Delete(fs, i, i+1)
		}
	}
}

func (t *throttle) allowLocked(source string, now time.Time) (ok bool, wait time.Duration) {
	wait = max(t.waitLocked(source, t.perSource, now), t.waitLocked(allSources, 10*t.perSource, now))
	return wait <= 0, wait
}

// waitLocked is how long key must wait for its failures in the window to fall under limit.
func (t *throttle) waitLocked(key string, limit int, now time.Time) time.Duration {
	fs := t.recentLocked(key, now)
	if len(fs) < limit {
		return 0
	}
	return fs[len(fs)-limit].Add(t.window).Sub(now)
}

// fail records a failed attempt of source.
func (t *throttle) fail(source string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failLocked(source, now)
}

func (t *throttle) failLocked(source string, now time.Time) {
	if len(t.failures) >= maxSources {
		for k := range t.failures {
			if k == allSources {
				continue
			}
			if len(t.recentLocked(k, now)) == 0 || len(t.failures) >= maxSources {
				delete(t.failures, k)
			}
		}
	}
	for _, key := range []string{source, allSources} {
		t.failures[key] = append(t.recentLocked(key, now), now)
	}
}

// recentLocked drops the failures of key older than the window and returns the rest.
func (t *throttle) recentLocked(key string, now time.Time) []time.Time {
	fs := t.failures[key]
	i := 0
	for i < len(fs) && !fs[i].After(now.Add(-t.window)) {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(t.failures, key)
		return nil
	}
	t.failures[key] = fs
	return fs
}
