package alerts

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

var t0 = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

var testIdentity = Identity{ShopName: "Lyon Part-Dieu", ShopID: "shop-42", ServerID: "storeedge-lyon"}

func openDB(t *testing.T, path string) *storage.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "storeedge.db")
	}
	db, err := storage.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// facts is what the daemon would gather, set by the test.
type facts struct {
	mu  sync.Mutex // protects the fields below
	f   Facts
	err error
}

func (x *facts) set(mod func(f *Facts)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	mod(&x.f)
}

func (x *facts) get(ctx context.Context) (Facts, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	f := x.f
	f.Quarantined = make(map[string]int64, len(x.f.Quarantined))
	for k, v := range x.f.Quarantined {
		f.Quarantined[k] = v
	}
	f.Devices = append([]Device(nil), x.f.Devices...)
	return f, x.err
}

// wanDownFacts is a WAN that the syncer cannot reach.
func wanDownFacts(f *Facts) {
	f.WAN = &WAN{State: "unreachable", LastError: "dial tcp 203.0.113.7:443: connect: connection refused", Route: "direct"}
}

func wanUpFacts(f *Facts) { f.WAN = &WAN{Up: true, State: "ok", Route: "direct"} }

// rig is one Alerts on a real database, with facts and a clock the test moves.
type rig struct {
	db    *storage.DB
	facts *facts
	clock *testenv.Clock
	a     *Alerts
}

func newRig(t *testing.T, db *storage.DB, mailer Mailer, mod func(c *config.Alerts)) *rig {
	t.Helper()
	if db == nil {
		db = openDB(t, "")
	}
	c := config.Default().Alerts
	if mod != nil {
		mod(&c)
	}
	r := &rig{db: db, facts: &facts{f: Facts{WAN: &WAN{Up: true, State: "ok", Route: "direct"}}}, clock: testenv.NewClock(t0)}
	a, err := New(Options{DB: db, Facts: r.facts.get, Config: c, Mailer: mailer, Identity: testIdentity, Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	return r
}

// check runs one check of the rules and fails the test on error.
func (r *rig) check(t *testing.T) {
	t.Helper()
	if err := r.a.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// flush sends what is queued and fails the test on error.
func (r *rig) flush(t *testing.T) {
	t.Helper()
	if _, err := r.a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) status(t *testing.T) Status {
	t.Helper()
	st, err := r.a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// plainServer is a real SMTP server without TLS or login, and the mailer for it.
func plainServer(t *testing.T) (*testenv.SMTPServer, *SMTP) {
	t.Helper()
	srv := testenv.StartSMTPServer(t, testenv.SMTPOptions{})
	return srv, mailerFor(t, srv, config.SMTPSecurityNone, "", "", nil)
}

func mailerFor(t *testing.T, srv *testenv.SMTPServer, security, user, password string, tc *tls.Config) *SMTP {
	t.Helper()
	m, err := NewSMTP(config.SMTP{
		Host: srv.Host, Port: srv.Port, Security: security, User: user, Password: config.Secret(password),
		From: "storeedge@shop.example", Recipients: []string{"it@shop.example", "support@vendor.example"},
		Timeout: 10 * time.Second,
	}, tc)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func subjects(ms []testenv.SMTPMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Header.Get("Subject"))
	}
	return out
}

func wantSubjects(t *testing.T, srv *testenv.SMTPServer, want ...string) []testenv.SMTPMessage {
	t.Helper()
	ms := srv.Messages()
	got := subjects(ms)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("mails received:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	return ms
}
