package alerts

import (
	"strings"
	"testing"
	"time"
)

const (
	subjWANOpen     = "[storeedge] Lyon Part-Dieu: ALERT WAN down"
	subjWANResolved = "[storeedge] Lyon Part-Dieu: RESOLVED WAN down"
)

// The WAN down for 10 minutes opens the alert: one mail, to every recipient, that says what,
// since when, which shop and what to do. Further checks while it lasts send nothing; the WAN
// back resolves it with one more mail, and then nothing again.
func TestWANDownMailedOnceWhenOpenOnceWhenResolved(t *testing.T) {
	srv, mailer := plainServer(t)
	r := newRig(t, nil, mailer, nil)

	r.facts.set(wanDownFacts)
	for _, at := range []time.Duration{0, 5 * time.Minute, 9*time.Minute + 59*time.Second} {
		r.clock.Advance(at - r.clock.Now().Sub(t0))
		r.check(t)
		r.flush(t)
	}
	wantSubjects(t, srv)
	if st := r.status(t); len(st.Open) != 0 {
		t.Fatalf("open before 10 minutes: %+v", st.Open)
	}

	r.clock.Advance(time.Second) // 10 minutes down
	r.check(t)
	r.flush(t)
	ms := wantSubjects(t, srv, subjWANOpen)
	m := ms[0]
	if m.From != "storeedge@shop.example" || strings.Join(m.To, ",") != "it@shop.example,support@vendor.example" {
		t.Errorf("envelope from %q to %q", m.From, m.To)
	}
	for _, want := range []string{"ALERT: WAN down", "The cloud cannot be reached (unreachable)", "connection refused",
		"Since: " + when(t0), "storeedge doctor", "Shop: Lyon Part-Dieu (id shop-42)", "Server: storeedge-lyon", `"wan_down"`} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("the mail lacks %q:\n%s", want, m.Body)
		}
	}
	if m.Header.Get("Auto-Submitted") != "auto-generated" || !strings.HasPrefix(m.Header.Get("Message-Id"), "<alert-") {
		t.Errorf("headers: %v", m.Header)
	}
	st := r.status(t)
	if len(st.Open) != 1 || st.Open[0].Rule != RuleWANDown || !st.Open[0].Since.Equal(t0) || st.QueuedMails != 0 || st.Mail != MailOK {
		t.Errorf("status: %+v", st)
	}

	for range 3 {
		r.clock.Advance(time.Minute)
		r.check(t)
		r.flush(t)
	}
	wantSubjects(t, srv, subjWANOpen)

	r.facts.set(wanUpFacts)
	r.clock.Advance(2 * time.Minute)
	r.check(t)
	r.flush(t)
	ms = wantSubjects(t, srv, subjWANOpen, subjWANResolved)
	if !strings.Contains(ms[1].Body, "has resolved, after 5m") {
		t.Errorf("the resolved mail:\n%s", ms[1].Body)
	}
	for range 3 {
		r.clock.Advance(time.Minute)
		r.check(t)
		r.flush(t)
	}
	wantSubjects(t, srv, subjWANOpen, subjWANResolved)
	if st := r.status(t); len(st.Open) != 0 {
		t.Errorf("still open: %+v", st.Open)
	}
}
