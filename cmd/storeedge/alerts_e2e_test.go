package main

// End-to-end tests of the alerts by e-mail: the storeedge binary against a real SMTP server.

import (
	"bytes"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

const (
	e2eMailUser     = "storeedge@shop.example"
	e2eMailPassword = "e2e-Mail-pass-8472"
	e2eWrongPass    = "e2e-Wrong-pass-1234"
)

// mailSets are the settings of a shop that mails its alerts through srv with STARTTLS and a
// login, trusting the test CA through wan.extra_ca_file.
func mailSets(srv *testenv.SMTPServer, caFile, password string) []string {
	return []string{
		"smtp.host=" + srv.Host, "smtp.port=" + strconv.Itoa(srv.Port), "smtp.security=starttls",
		"smtp.user=" + e2eMailUser, "smtp.password=" + password,
		"smtp.from=" + e2eMailUser, "smtp.recipients=it@shop.example,support@vendor.example",
		"wan.extra_ca_file=" + caFile,
	}
}

type alertsStatus struct {
	Alerts *struct {
		Mail string `json:"mail"`
		Open []struct {
			Rule string `json:"rule"`
		} `json:"open"`
		QueuedMails int64  `json:"queued_mails"`
		LastError   string `json:"last_error"`
	} `json:"alerts"`
}

func (s *shop) alerts(t *testing.T) alertsStatus {
	var st alertsStatus
	s.get(t, "/api/v1/status", &st)
	if st.Alerts == nil {
		t.Fatalf("status without alerts\n%s", s.log)
	}
	return st
}

// A running server whose disk is "almost full" (a threshold above any disk) opens the alert
// at its first check. With a wrong mail password the status says the login was refused and
// the mail waits; restarted with the right password, the server delivers it, once.
func TestAlertMailedByTheDaemon(t *testing.T) {
	cert, key, caFile, _ := testenv.TestCertWithCAFile(t)
	srv := testenv.StartSMTPServer(t, testenv.SMTPOptions{Security: "starttls", CertFile: cert, KeyFile: key, User: e2eMailUser, Password: e2eMailPassword})
	dir := t.TempDir()
	sets := []string{"cloud.sync=false", "alerts.check_interval=5s", "alerts.disk_low.free_mb=1048576"}

	s := startShop(t, shopOptions{dataDir: dir, cloud: "http://127.0.0.1:1", sets: append(sets, mailSets(srv, caFile, e2eWrongPass)...)})
	waitFor(t, s, "the refused login in the status", 30*time.Second, func() bool {
		st := s.alerts(t)
		return st.Alerts.Mail == "failing" && len(st.Alerts.Open) == 1 && st.Alerts.QueuedMails == 1
	})
	st := s.alerts(t)
	if st.Alerts.Open[0].Rule != "disk_low" || !strings.Contains(st.Alerts.LastError, "refused the login: check smtp.user and smtp.password") {
		t.Errorf("status: %+v", st.Alerts)
	}
	s.stop(t)
	if got := srv.Messages(); len(got) != 0 {
		t.Fatalf("%d mails went with a wrong password", len(got))
	}

	s = startShop(t, shopOptions{dataDir: dir, cloud: "http://127.0.0.1:1", sets: append(sets, mailSets(srv, caFile, e2eMailPassword)...)})
	waitFor(t, s, "the alert mail sent", 30*time.Second, func() bool {
		st := s.alerts(t)
		return st.Alerts.Mail == "ok" && st.Alerts.QueuedMails == 0
	})
	s.stop(t)
	ms := srv.Messages()
	if len(ms) != 1 || ms[0].Header.Get("Subject") != "[storeedge] My shop: ALERT disk almost full" || ms[0].AuthenticatedAs != e2eMailUser {
		t.Fatalf("mails: %+v", ms)
	}
	if !strings.Contains(ms[0].Body, "free on the disk of "+dir) {
		t.Errorf("body:\n%s", ms[0].Body)
	}
	for _, pw := range []string{e2eMailPassword, e2eWrongPass} {
		if strings.Contains(s.log.String(), pw) {
			t.Errorf("the log shows a mail password:\n%s", s.log)
		}
	}
}

// "storeedge alert test" sends a test message at once, or says why it cannot.
func TestAlertTestCommand(t *testing.T) {
	bin, _ := binaries(t)
	cert, key, caFile, _ := testenv.TestCertWithCAFile(t)
	// The server repeats refused credentials in its answer, as some do: the command must not.
	srv := testenv.StartSMTPServer(t, testenv.SMTPOptions{Security: "starttls", CertFile: cert, KeyFile: key, User: e2eMailUser, Password: e2eMailPassword, EchoRefusedLogin: true})
	run := func(sets ...string) (string, string, int) {
		args := []string{"alert", "test"}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr, cmd.Env = &stdout, &stderr, []string{"PATH=/usr/bin:/bin"}
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}

	// No mail server configured: a configuration error, exit 2 (docs/configuration.md).
	if _, errOut, code := run("wan.extra_ca_file=" + caFile); code != 2 || !strings.Contains(errOut, "smtp.host is empty") {
		t.Errorf("without smtp.host: exit %d, stderr: %s", code, errOut)
	}
	out, errOut, code := run(mailSets(srv, caFile, e2eMailPassword)...)
	if code != 0 || !strings.Contains(out, "sent a test message to it@shop.example, support@vendor.example through 127.0.0.1:"+strconv.Itoa(srv.Port)+" (starttls, as storeedge@shop.example)") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	ms := srv.Messages()
	if len(ms) != 1 || ms[0].Header.Get("Subject") != "[storeedge] My shop: test message" {
		t.Errorf("mails: %+v", ms)
	}

	_, errOut, code = run(mailSets(srv, caFile, e2eWrongPass)...)
	if code != 1 || !strings.Contains(errOut, "the mail server refused the login: check smtp.user and smtp.password") || strings.Contains(errOut, e2eWrongPass) {
		t.Errorf("wrong password: exit %d, stderr: %s", code, errOut)
	}

	_, errOut, code = run()
	if code != 2 || !strings.Contains(errOut, "smtp.host is empty") {
		t.Errorf("no mail server: exit %d, stderr: %s", code, errOut)
	}
	if _, errOut, code = run("smtp.host=mail.example.com"); code != 2 || !strings.Contains(errOut, "smtp.recipients") {
		t.Errorf("no recipients: exit %d, stderr: %s", code, errOut)
	}
}
