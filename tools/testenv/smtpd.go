package testenv

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// debianPython is the interpreter that has Debian's python3-* modules; the python3 on PATH may
// be another build without them.
const debianPython = "/usr/bin/python3"

// SMTPOptions configure StartSMTPServer. The zero value is plain SMTP without AUTH.
type SMTPOptions struct {
	// Security is "none" (default), "starttls" (offered and required before MAIL) or "tls"
	// (implicit TLS, as on port 465).
	Security string
	// CertFile and KeyFile are the server's certificate and key (PEM), for starttls and tls.
	CertFile, KeyFile string
	// User and Password, when set, make the server require AUTH (PLAIN or LOGIN) with exactly
	// these credentials before MAIL, and answer 535 to others.
	User, Password string
	// EchoRefusedLogin makes the 535 answer to wrong credentials repeat them, as some servers do.
	EchoRefusedLogin bool
}

// SMTPServer is a running tools/smtpd/smtpd.py: a real SMTP server (Debian's aiosmtpd) on
// 127.0.0.1 that keeps every message it accepts. Stop and Start take it down and bring it back
// on the same port with the same mailbox, as a mail server that restarts.
type SMTPServer struct {
	Host string // "127.0.0.1"
	Port int

	t     testing.TB
	spool string
	args  []string

	mu   sync.Mutex // protects the fields below
	proc *smtpProc  // nil while stopped
}

type smtpProc struct {
	cmd    *exec.Cmd
	exited chan error
	stdin  *os.File
	out    *Buffer
}

// SMTPMessage is one message the server accepted.
type SMTPMessage struct {
	From            string   // envelope sender
	To              []string // envelope recipients
	AuthenticatedAs string   // the AUTH user, or ""
	Header          mail.Header
	Body            string // decoded from its Content-Transfer-Encoding
}

// smtpdStartTimeout bounds the server's start (it is ready in well under a second).
const smtpdStartTimeout = 15 * time.Second

// StartSMTPServer starts tools/smtpd/smtpd.py with Debian's python3 on a free port of 127.0.0.1
// and stops it when the test ends. Without python3-aiosmtpd (scripts/install-test-deps.sh) the
// test is skipped, or failed under CI=true.
func StartSMTPServer(t testing.TB, o SMTPOptions) *SMTPServer {
	t.Helper()
	requireAiosmtpd(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: smtpd: %v", err)
	}
	security := o.Security
	if security == "" {
		security = "none"
	}
	s := &SMTPServer{Host: "127.0.0.1", t: t, spool: filepath.Join(t.TempDir(), "spool")}
	s.args = []string{filepath.Join(root, "tools", "smtpd", "smtpd.py"), "--spool", s.spool, "--security", security}
	if o.CertFile != "" {
		s.args = append(s.args, "--cert", o.CertFile, "--key", o.KeyFile)
	}
	if o.User != "" || o.Password != "" {
		s.args = append(s.args, "--user", o.User, "--password", o.Password)
	}
	if o.EchoRefusedLogin {
		s.args = append(s.args, "--echo-refused-login")
	}
	t.Cleanup(s.Stop)
	var lastErr error
	for range 3 {
		s.Port = PortOutsideEphemeral(t) // stopped and started again on it
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		if !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("testenv: smtpd: %v", lastErr)
	return nil
}

func requireAiosmtpd(t testing.TB) {
	t.Helper()
	msg := "testenv: python3-aiosmtpd not installed: run scripts/install-test-deps.sh"
	if err := exec.Command(debianPython, "-c", "import aiosmtpd").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// Addr is "127.0.0.1:port".
func (s *SMTPServer) Addr() string { return s.Host + ":" + strconv.Itoa(s.Port) }

// Start brings a stopped server back on the same port, with the messages it had.
func (s *SMTPServer) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("testenv: smtpd: %v", err)
	}
}

func (s *SMTPServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	// stdin is a pipe this process holds: should the test binary die before its cleanup, the
	// pipe closes and the server exits rather than linger.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return err
	}
	out := &Buffer{}
	first := &firstLine{ch: make(chan string, 1), rest: out}
	cmd := exec.Command(debianPython, append(s.args, "--port", strconv.Itoa(s.Port))...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, first, out
	cmd.WaitDelay = 2 * time.Second
	setProcessGroup(cmd)
	err = cmd.Start()
	stdinR.Close()
	if err != nil {
		stdinW.Close()
		return err
	}
	p := &smtpProc{cmd: cmd, exited: make(chan error, 1), stdin: stdinW, out: out}
	go func() { p.exited <- cmd.Wait() }()
	timer := time.NewTimer(smtpdStartTimeout)
	defer timer.Stop()
	select {
	case <-first.ch:
		s.proc = p
		return nil
	case err := <-p.exited:
		stdinW.Close()
		return fmt.Errorf("exited before listening on %s: %v\n--- output ---\n%s", s.Addr(), err, out.String())
	case <-timer.C:
		p.stop()
		return fmt.Errorf("not listening on %s within %v\n--- output ---\n%s", s.Addr(), smtpdStartTimeout, out.String())
	}
}

// Stop takes the server down; connections to its port are refused until Start.
func (s *SMTPServer) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.stop()
	if s.t.Failed() {
		s.t.Logf("testenv: smtpd output:\n%s", p.out.String())
	}
}

func (p *smtpProc) stop() {
	stopProcess(p.cmd, p.exited)
	p.stdin.Close()
}

// Messages returns the messages accepted so far, in the order they came. A message is there as
// soon as the server has answered 250 to its data.
func (s *SMTPServer) Messages() []SMTPMessage {
	s.t.Helper()
	names, err := filepath.Glob(filepath.Join(s.spool, "*.eml"))
	if err != nil {
		s.t.Fatalf("testenv: smtpd: %v", err)
	}
	sort.Strings(names)
	out := make([]SMTPMessage, 0, len(names))
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			s.t.Fatalf("testenv: smtpd: %v", err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			s.t.Fatalf("testenv: smtpd: %s: %v", filepath.Base(name), err)
		}
		body, err := decodeBody(m)
		if err != nil {
			s.t.Fatalf("testenv: smtpd: %s: %v", filepath.Base(name), err)
		}
		out = append(out, SMTPMessage{
			From:            m.Header.Get("X-Envelope-From"),
			To:              m.Header["X-Envelope-To"],
			AuthenticatedAs: m.Header.Get("X-Authenticated-As"),
			Header:          m.Header,
			Body:            body,
		})
	}
	return out
}

// decodeBody reads a single-part message's body, undoing quoted-printable or base64.
func decodeBody(m *mail.Message) (string, error) {
	var r io.Reader = m.Body
	switch strings.ToLower(m.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r)
	}
	b, err := io.ReadAll(r)
	return string(b), err
}
