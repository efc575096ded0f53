package alerts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"

	mail "github.com/wneessen/go-mail"

	"github.com/storeedge/storeedge/internal/config"
)

// SMTP sends mail through the configured mail server (smtp.*) with go-mail, a maintained SMTP
// client that does STARTTLS, implicit TLS and the AUTH mechanisms mail servers offer. Each
// mail is one connection: alerts are rare, and a fresh connection never finds a stale one.
type SMTP struct {
	c   config.SMTP
	tls *tls.Config
}

// NewSMTP returns the mailer of c, which Validate accepted with Host set. tlsConfig gives the
// certificates trusted for the server (the system's plus wan.extra_ca_file); nil: the system's.
func NewSMTP(c config.SMTP, tlsConfig *tls.Config) (*SMTP, error) {
	if !c.Enabled() || len(c.Recipients) == 0 || c.From == "" {
		return nil, errors.New("smtp: no mail server, sender or recipients")
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if tlsConfig != nil {
		t = tlsConfig.Clone()
		t.MinVersion = max(t.MinVersion, tls.VersionTLS12)
	}
	t.ServerName = c.Host
	return &SMTP{c: c, tls: t}, nil
}

// String names the server and how it is reached, e.g. "mail.example.com:587 (starttls, as
// storeedge@shop.example)"; never the password.
func (s *SMTP) String() string {
	r := net.JoinHostPort(s.c.Host, strconv.Itoa(s.c.Port)) + " (" + s.c.Security
	if s.c.User != "" {
		r += ", as " + s.c.User
	}
	return r + ")"
}

func (s *SMTP) client() (*mail.Client, error) {
	opts := []mail.Option{mail.WithPort(s.c.Port), mail.WithTimeout(s.c.Timeout), mail.WithTLSConfig(s.tls)}
	switch s.c.Security {
	case config.SMTPSecurityTLS:
		opts = append(opts, mail.WithSSL())
	case config.SMTPSecurityStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	if s.c.User != "" {
		// The strongest mechanism the server offers (SCRAM, then CRAM-MD5, LOGIN, PLAIN).
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(s.c.User), mail.WithPassword(s.c.Password.Reveal()))
	}
	return mail.NewClient(s.c.Host, opts...)
}

// Send delivers m to every recipient.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := mail.NewMsg()
	if err := msg.From(s.c.From); err != nil {
		return fmt.Errorf("smtp: smtp.from %q: %w", s.c.From, err)
	}
	if err := msg.To(s.c.Recipients...); err != nil {
		return fmt.Errorf("smtp: smtp.recipients: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(m.ID)
	msg.SetDateWithValue(m.Date)
	// RFC 3834: an automatic message, which vacation responders must not answer.
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetBodyString(mail.TypeTextPlain, m.Body)
	c, err := s.client()
	if err != nil {
		return s.explain(err)
	}
	if err := untilDone(ctx, func() error { return c.DialAndSendWithContext(ctx, msg) }); err != nil {
		return s.explain(err)
	}
	return nil
}

// untilDone runs f, which the mail client bounds by ctx only while it connects and by
// smtp.timeout (up to 5 minutes) after, and returns its error, or ctx's as soon as ctx ends: a
// server that stalls must not hold the service's stop past its service manager's patience. f's
// connection is then left to smtp.timeout; a mail given up so stays queued and goes again (with
// the same Message-ID) after the restart.
func untilDone(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("given up: %w", context.Cause(ctx))
	}
}

// Check connects, says hello, secures the connection and logs in, then quits.
func (s *SMTP) Check(ctx context.Context) error {
	c, err := s.client()
	if err != nil {
		return s.explain(err)
	}
	err = untilDone(ctx, func() error {
		if err := c.DialWithContext(ctx); err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return s.explain(err)
	}
	return nil
}

// explain words a failure for shop IT: what went wrong, in terms of the configuration keys,
// and the server's own answer. go-mail's errors do not carry the password, but the server's
// answer may repeat it (some servers' refusal of a login does): what keeps or shows the error
// hides the configuration's secrets first (Options.Redact, the log's handler).
func (s *SMTP) explain(err error) error {
	return fmt.Errorf("smtp: %s: %s: %w", net.JoinHostPort(s.c.Host, strconv.Itoa(s.c.Port)), reason(err, s.c), err)
}

// reason is the plain-words part of explain.
func reason(err error, c config.SMTP) string {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	var dnsErr *net.DNSError
	var opErr *net.OpError
	code, text := reply(err)
	msg := err.Error()
	switch {
	case code == 535 || code == 534 || code == 454 && strings.Contains(strings.ToLower(text), "auth"):
		return "the mail server refused the login: check smtp.user and smtp.password"
	case code == 530 && strings.Contains(strings.ToLower(text), "starttls"):
		return "the mail server wants STARTTLS first: set smtp.security to \"starttls\""
	case code == 530:
		return "the mail server wants a login first: set smtp.user and smtp.password"
	case strings.Contains(msg, "does not support SMTP AUTH"):
		return "the mail server offers no login (AUTH) here: leave smtp.user empty, or use smtp.security \"starttls\" if it offers AUTH only after STARTTLS"
	case strings.Contains(msg, "does not support STARTTLS"):
		return "the mail server does not offer STARTTLS: use smtp.security \"tls\" on its TLS port (usually 465), or \"none\" for a relay on the shop network without a login"
	case errors.As(err, &recordErr):
		return "the mail server did not answer with TLS: smtp.security \"tls\" is for an implicit TLS port (usually 465); use \"starttls\" on 25 or 587"
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &certErr):
		return "the mail server's certificate is not trusted for " + c.Host + ": check smtp.host, or add its CA to wan.extra_ca_file"
	case code >= 550 && code <= 554:
		return "the mail server refused the mail: check smtp.from (it may have to be the account's own address) and smtp.recipients"
	case code >= 400 && code < 500:
		return "the mail server cannot take the mail now; it is tried again"
	case errors.As(err, &dnsErr):
		return "the mail server's name does not resolve: check smtp.host and the DNS"
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "i/o timeout"):
		return "no answer from the mail server within smtp.timeout: check smtp.host, smtp.port (and smtp.security) and the firewall"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "cannot connect to the mail server: check smtp.host, smtp.port and the firewall"
	}
	return "the mail could not be sent"
}

// reply finds the mail server's reply code and text in err, or 0.
func reply(err error) (int, string) {
	var tp *textproto.Error
	var se *mail.SendError
	switch {
	case errors.As(err, &tp):
		return tp.Code, tp.Msg
	case errors.As(err, &se):
		return se.ErrorCode(), se.Error()
	}
	return 0, ""
}
