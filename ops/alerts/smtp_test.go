package alerts

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/tools/testenv"
)

const smtpPassword = "Corr3ct horse battery"

// An alert reaches a real mail server in each way shops set theirs up: plain on the shop
// network, STARTTLS with a login (587), implicit TLS with a login (465). The TLS server's
// certificate is checked against the CA the server is given (wan.extra_ca_file in the daemon).
func TestSMTPDeliversInEachSecurityMode(t *testing.T) {
	cert, key, roots := testenv.TestCert(t)
	for _, tc := range []struct {
		name, security, user, password string
	}{
		{"plain", config.SMTPSecurityNone, "", ""},
		{"STARTTLS with AUTH", config.SMTPSecurityStartTLS, "storeedge@shop.example", smtpPassword},
		{"implicit TLS with AUTH", config.SMTPSecurityTLS, "storeedge@shop.example", smtpPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.StartSMTPServer(t, testenv.SMTPOptions{Security: tc.security, CertFile: cert, KeyFile: key, User: tc.user, Password: tc.password})
			mailer := mailerFor(t, srv, tc.security, tc.user, tc.password, &tls.Config{RootCAs: roots})
			if err := mailer.Check(context.Background()); err != nil {
				t.Fatalf("check: %v", err)
			}
			r := newRig(t, nil, mailer, nil)
			r.facts.set(func(f *Facts) { f.Quarantined = map[string]int64{"prices": 2} })
			r.check(t)
			r.flush(t)
			ms := wantSubjects(t, srv, "[storeedge] Lyon Part-Dieu: ALERT catalog documents quarantined")
			m := ms[0]
			if m.AuthenticatedAs != tc.user {
				t.Errorf("logged in as %q, want %q", m.AuthenticatedAs, tc.user)
			}
			if m.From != "storeedge@shop.example" || strings.Join(m.To, ",") != "it@shop.example,support@vendor.example" {
				t.Errorf("envelope from %q to %q", m.From, m.To)
			}
			if !strings.Contains(m.Body, "2 catalog document(s) quarantined (prices: 2)") {
				t.Errorf("body:\n%s", m.Body)
			}
			if st := r.status(t); st.Mail != MailOK || st.QueuedMails != 0 || st.LastSentAt == nil || st.LastError != "" {
				t.Errorf("status: %+v", st)
			}
		})
	}
}

// A wrong password is refused by the server; the status says so in words that name the keys
// to fix, with the server's answer, and never shows the password, even where that answer
// repeats it (the queue's record of the failure neither). The mail stays queued and goes once
// the password is right.
func TestWrongPasswordShownInStatus(t *testing.T) {
	cert, key, roots := testenv.TestCert(t)
	srv := testenv.StartSMTPServer(t, testenv.SMTPOptions{Security: config.SMTPSecurityStartTLS, CertFile: cert, KeyFile: key,
		User: "storeedge@shop.example", Password: smtpPassword, EchoRefusedLogin: true})
	const wrong = "hunter2-wrong-pass"
	db := openDB(t, "")
	r := newRig(t, db, mailerFor(t, srv, config.SMTPSecurityStartTLS, "storeedge@shop.example", wrong, &tls.Config{RootCAs: roots}), nil)
	r.a.o.Redact = func(s string) string { return strings.ReplaceAll(s, wrong, "xxxxx") } // as the daemon's

	// At start, before any alert, the login is tried.
	r.a.checkMailer(context.Background())
	st := r.status(t)
	const want = "the mail server refused the login: check smtp.user and smtp.password"
	if st.Mail != MailFailing || !strings.Contains(st.LastError, want) || !strings.Contains(st.LastError, "535") {
		t.Fatalf("status after the login check: %+v", st)
	}

	r.facts.set(func(f *Facts) { f.Quarantined = map[string]int64{"products": 1} })
	r.check(t)
	if _, err := r.a.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("flush: %v", err)
	}
	st = r.status(t)
	if st.Mail != MailFailing || !strings.Contains(st.LastError, want) || st.LastErrorAt == nil || st.QueuedMails != 1 || st.NextAttemptAt == nil {
		t.Errorf("status: %+v", st)
	}
	if strings.Contains(st.LastError, wrong) || strings.Contains(st.LastError, smtpPassword) || !strings.Contains(st.LastError, "xxxxx") {
		t.Errorf("the status shows a password, or the server did not repeat it: %s", st.LastError)
	}
	if ms, err := db.QueuedAlertMails(context.Background(), 10); err != nil || len(ms) != 1 || strings.Contains(ms[0].LastError, wrong) || ms[0].LastError == "" {
		t.Errorf("queued mails %+v (%v): want one, its failure recorded without the password", ms, err)
	}
	wantSubjects(t, srv)

	// After a restart, before any try, the status shows the failure the queue remembers, hidden
	// as it is shown, even if an earlier version kept it whole.
	ms, _ := db.QueuedAlertMails(context.Background(), 10)
	if err := db.AlertMailsFailed(context.Background(), []int64{ms[0].ID}, "535 refused "+wrong); err != nil {
		t.Fatal(err)
	}
	restarted := newRig(t, db, mailerFor(t, srv, config.SMTPSecurityStartTLS, "storeedge@shop.example", wrong, &tls.Config{RootCAs: roots}), nil)
	restarted.a.o.Redact = r.a.o.Redact
	if st := restarted.status(t); st.Mail != MailUnknown || st.LastError != "535 refused xxxxx" {
		t.Errorf("status after a restart: %+v", st)
	}

	// The password corrected (a restart with the right one): the queued mail goes.
	fixed := newRig(t, db, mailerFor(t, srv, config.SMTPSecurityStartTLS, "storeedge@shop.example", smtpPassword, &tls.Config{RootCAs: roots}), nil)
	fixed.facts.set(func(f *Facts) { f.Quarantined = map[string]int64{"products": 1} })
	fixed.clock.Advance(time.Minute)
	fixed.check(t)
	fixed.flush(t)
	wantSubjects(t, srv, "[storeedge] Lyon Part-Dieu: ALERT catalog documents quarantined")
	if st := fixed.status(t); st.Mail != MailOK || st.QueuedMails != 0 || st.LastError != "" {
		t.Errorf("status once fixed: %+v", st)
	}
}

// Mistakes in smtp.* are told apart, each with the key to change.
func TestSMTPMistakesExplained(t *testing.T) {
	cert, key, roots := testenv.TestCert(t)
	starttls := testenv.StartSMTPServer(t, testenv.SMTPOptions{Security: config.SMTPSecurityStartTLS, CertFile: cert, KeyFile: key})
	implicit := testenv.StartSMTPServer(t, testenv.SMTPOptions{Security: config.SMTPSecurityTLS, CertFile: cert, KeyFile: key})
	plain := testenv.StartSMTPServer(t, testenv.SMTPOptions{})
	trusted := &tls.Config{RootCAs: roots}
	for _, tc := range []struct {
		name   string
		mailer *SMTP
		want   string
	}{
		{"none where STARTTLS is required", mailerFor(t, starttls, config.SMTPSecurityNone, "", "", nil),
			`the mail server wants STARTTLS first: set smtp.security to "starttls"`},
		{"tls on a STARTTLS port", mailerFor(t, starttls, config.SMTPSecurityTLS, "", "", trusted),
			`the mail server did not answer with TLS`},
		{"starttls where STARTTLS is not offered", mailerFor(t, plain, config.SMTPSecurityStartTLS, "", "", trusted),
			`the mail server does not offer STARTTLS`},
		{"a login where none is offered", mailerFor(t, plain, config.SMTPSecurityStartTLS, "u", "p", trusted),
			`the mail server does not offer STARTTLS`},
		{"an untrusted certificate", mailerFor(t, implicit, config.SMTPSecurityTLS, "", "", nil),
			`the mail server's certificate is not trusted for 127.0.0.1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.mailer.Send(context.Background(), testIdentity.TestMessage(t0, tc.mailer.String()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %q", err, tc.want)
			}
		})
	}
	// Nothing listens: the server is down, or the port is wrong.
	down := testenv.StartSMTPServer(t, testenv.SMTPOptions{})
	m := mailerFor(t, down, config.SMTPSecurityNone, "", "", nil)
	down.Stop()
	if err := m.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot connect to the mail server: check smtp.host, smtp.port and the firewall") {
		t.Errorf("server down: %v", err)
	}
}

// A shop's name in any language reaches the mailbox intact, in the subject and the body.
func TestShopNameInUTF8(t *testing.T) {
	srv, mailer := plainServer(t)
	id := Identity{ShopName: "Pâtisserie Čapek – Brno", ServerID: "storeedge-brno"}
	if err := mailer.Send(context.Background(), id.TestMessage(t0, mailer.String())); err != nil {
		t.Fatal(err)
	}
	ms := srv.Messages()
	subject, err := new(mime.WordDecoder).DecodeHeader(ms[0].Header.Get("Subject"))
	if err != nil || subject != "[storeedge] Pâtisserie Čapek – Brno: test message" || !strings.Contains(ms[0].Body, "Shop: Pâtisserie Čapek – Brno") {
		t.Errorf("subject %q (%v), body:\n%s", subject, err, ms[0].Body)
	}
}

// "storeedge alert test" sends this; it says where it went through.
func TestTestMessage(t *testing.T) {
	srv, mailer := plainServer(t)
	if err := mailer.Send(context.Background(), testIdentity.TestMessage(t0, mailer.String())); err != nil {
		t.Fatal(err)
	}
	ms := wantSubjects(t, srv, "[storeedge] Lyon Part-Dieu: test message")
	if !strings.Contains(ms[0].Body, "through "+srv.Addr()+" (none)") || !strings.Contains(ms[0].Body, "Server: storeedge-lyon") {
		t.Errorf("body:\n%s", ms[0].Body)
	}
}

// A mail server that stops answering in the middle of a mail holds the server's stop no longer
// than the stop itself: Send returns when its context ends, not after smtp.timeout (up to 5
// minutes, past the 40 s systemd gives a stop before it kills the service).
func TestStalledMailServerDoesNotHoldTheStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stalled := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		fmt.Fprint(c, "220 mail.shop.example ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(strings.ToUpper(line), "MAIL FROM") {
				close(stalled) // and never answer
				io.Copy(io.Discard, r)
				return
			}
			fmt.Fprint(c, "250 ok\r\n")
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	m, err := NewSMTP(config.SMTP{Host: "127.0.0.1", Port: port, Security: config.SMTPSecurityNone,
		From: "storeedge@shop.example", Recipients: []string{"it@shop.example"}, Timeout: 5 * time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	sent := make(chan error, 1)
	go func() { sent <- m.Send(ctx, testIdentity.TestMessage(t0, m.String())) }()
	<-stalled
	stop()
	select {
	case err := <-sent:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Send after the stop: %v, want the stop's error", err)
		}
	case <-time.After(time.Minute): // a guard only: the mail client's own timeout is 5 minutes
		t.Fatal("Send still waits for the stalled mail server a minute after the stop")
	}
}
