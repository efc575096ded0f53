package server

import (
	"crypto/rand"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/storeedge/storeedge/devices"
)

// Sessions of the status page. They live in memory only: a restart of the server logs everyone
// out, which is what an admin expects of a box that was restarted, and nothing about a session
// is ever written to disk.
const (
	pageSessionIdle  = 2 * time.Hour  // a session unused this long ends
	pageSessionMax   = 12 * time.Hour // and every session ends this long after its login
	pageMaxSessions  = 64             // the oldest session ends when one more logs in
	pageLoginBudget  = 10             // failed logins per address…
	pagePrefixBudget = 100            // …and per IPv6 /64 for all its addresses together…
	pageLoginWindow  = time.Minute    // …per this window, then 429 until it ends
	pageMaxAddresses = 1024           // addresses whose failures are remembered at once
)

// pageSession is one logged-in browser.
type pageSession struct {
	csrf      string // the token every action must carry
	createdAt time.Time
	usedAt    time.Time
}

// loginFailures counts an address's (or a prefix's) failed logins in the current window.
type loginFailures struct {
	n      int
	since  time.Time
	budget int
}

// pageSessions are the status page's sessions and its login throttle.
type pageSessions struct {
	mu       sync.Mutex // protects the fields below
	byID     map[string]*pageSession
	failures map[string]*loginFailures
	// overflow counts, together, the failures of the addresses that found failures full: so
	// many addresses at once share one budget, and none of those recorded loses its count.
	overflow loginFailures
}

func newPageSessions() *pageSessions {
	return &pageSessions{byID: map[string]*pageSession{}, failures: map[string]*loginFailures{},
		overflow: loginFailures{budget: pageLoginBudget}}
}

// create starts a session and returns its id (the cookie's value) and its CSRF token.
func (p *pageSessions) create(now time.Time) (id, csrf string) {
	id, csrf = rand.Text(), rand.Text()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.byID) >= pageMaxSessions {
		p.evictOldestLocked()
	}
	p.byID[id] = &pageSession{csrf: csrf, createdAt: now, usedAt: now}
	return id, csrf
}

func (p *pageSessions) evictOldestLocked() {
	var oldest string
	var at time.Time
	for id, s := range p.byID {
		if oldest == "" || s.createdAt.Before(at) {
			oldest, at = id, s.createdAt
		}
	}
	delete(p.byID, oldest)
}

// get returns the session of id and marks it used; false when there is none or it expired.
func (p *pageSessions) get(id string, now time.Time) (pageSession, bool) {
	if id == "" {
		return pageSession{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.byID[id]
	if !ok {
		return pageSession{}, false
	}
	if now.Sub(s.usedAt) > pageSessionIdle || now.Sub(s.createdAt) > pageSessionMax {
		delete(p.byID, id)
		return pageSession{}, false
	}
	s.usedAt = now
	return *s, true
}

// end logs a session out.
func (p *pageSessions) end(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byID, id)
}

// tryLogin checks the budgets of wrong admin credentials of addr and, when wrong is set, spends
// one of each, in one step under the lock: requests sent together cannot all pass the check
// before their failures count. It reports false, counting nothing, while a budget is spent, with
// how long until its window ends. An address has pageLoginBudget; an IPv6 address's /64 (where a
// host with privacy extensions takes new addresses at will) has pagePrefixBudget for all of its
// addresses together. This machine (loopback) is never held back.
func (p *pageSessions) tryLogin(addr string, now time.Time, wrong bool) (bool, time.Duration) {
	ip, err := netip.ParseAddr(addr)
	if err == nil && ip.Unmap().IsLoopback() {
		return true, 0 // this machine: shop IT at the server itself is never locked out
	}
	keys := throttleKeys(ip, err, addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	missing := 0
	for _, k := range keys {
		if _, ok := p.failures[k.key]; !ok {
			missing++
		}
	}
	if missing > 0 && len(p.failures)+missing > pageMaxAddresses {
		p.forgetOldFailuresLocked(now, keys, missing)
	}
	var found [2]*loginFailures // nil: none yet, with room for one
	added := 0
	for i, k := range keys {
		f, ok := p.failures[k.key]
		switch {
		case ok:
		case len(p.failures)+added >= pageMaxAddresses:
			f = &p.overflow // no room: counted with the others that found none
		default:
			added++
		}
		found[i] = f
		if f != nil && now.Sub(f.since) < pageLoginWindow && f.n >= f.budget {
			return false, f.since.Add(pageLoginWindow).Sub(now)
		}
	}
	if !wrong {
		return true, 0
	}
	for i, k := range keys {
		switch f := found[i]; {
		case f == nil:
			p.failures[k.key] = &loginFailures{n: 1, since: now, budget: k.budget}
		case f == &p.overflow && i > 0 && found[0] == f:
			// spent once for this guess already
		case now.Sub(f.since) >= pageLoginWindow:
			f.n, f.since = 1, now
		default:
			f.n++
		}
	}
	return true, 0
}

// throttleKey names a budget of wrong credentials.
type throttleKey struct {
	key    string
	budget int
}

// throttleKeys are the budgets a wrong credential from addr counts against: its address's, and
// for an IPv6 address its /64's.
func throttleKeys(ip netip.Addr, parseErr error, addr string) []throttleKey {
	if parseErr != nil {
		return []throttleKey{{addr, pageLoginBudget}}
	}
	if ip = ip.Unmap(); ip.Is4() {
		return []throttleKey{{ip.String(), pageLoginBudget}}
	}
	prefix, _ := ip.WithZone("").Prefix(64)
	key := prefix.String()
	if zone := ip.Zone(); zone != "" {
		key += "%" + zone // link-local: each interface's fe80::/64 is its own
	}
	return []throttleKey{{ip.String(), pageLoginBudget}, {key, pagePrefixBudget}}
}

// forgetOldFailuresLocked makes room for room more entries: it drops the windows that ended, and
// when that is not enough, the counts still within their budget (but keep's, the request's own),
// so that the map stays bounded whatever the number of addresses that try. The refused are kept:
// a wiped count would give them their budget again. Only when every entry on record is refused do
// new ones share one budget.
func (p *pageSessions) forgetOldFailuresLocked(now time.Time, keep []throttleKey, room int) {
	for addr, f := range p.failures {
		if now.Sub(f.since) >= pageLoginWindow {
			delete(p.failures, addr)
		}
	}
	if len(p.failures)+room <= pageMaxAddresses {
		return
	}
	for addr, f := range p.failures {
		if f.n < f.budget && !slices.ContainsFunc(keep, func(k throttleKey) bool { return k.key == addr }) {
			delete(p.failures, addr)
		}
	}
}

// checkCSRF compares an action's token with its session's, in constant time.
func (s pageSession) checkCSRF(token string) bool {
	return token != "" && devices.EqualSecret(token, s.csrf)
}
