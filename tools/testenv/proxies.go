package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TinyproxyOptions configure StartTinyproxy.
type TinyproxyOptions struct {
	// BasicAuthUser and BasicAuthPass, when set, make tinyproxy demand Basic
	// proxy authentication (407 without or with wrong credentials). Neither
	// may contain spaces or quotes (tinyproxy's config syntax).
	BasicAuthUser, BasicAuthPass string
	// ConnectPorts, when set, are the only ports CONNECT may reach; tinyproxy
	// answers 403 for others. Empty: any port.
	ConnectPorts []int
	// LogFile is where tinyproxy logs, at level Info, which includes a
	// "Request ...: CONNECT host:port" line per tunnel. Default: a file in
	// t.TempDir(), shown if tinyproxy fails to start.
	LogFile string
}

// StartTinyproxy runs tinyproxy (an HTTP proxy that supports CONNECT) and
// returns its "127.0.0.1:port". It accepts clients from 127.0.0.1 only.
func StartTinyproxy(t testing.TB, o TinyproxyOptions) string {
	t.Helper()
	bin := Require(t, "tinyproxy")
	if (o.BasicAuthUser == "") != (o.BasicAuthPass == "") {
		t.Fatalf("testenv: tinyproxy BasicAuth needs both user and password")
	}
	for _, s := range []string{o.BasicAuthUser, o.BasicAuthPass} {
		if strings.ContainsAny(s, " \t\r\n\"#") {
			t.Fatalf("testenv: tinyproxy BasicAuth %q: spaces, quotes and '#' do not survive its config syntax", s)
		}
	}
	if strings.ContainsAny(o.LogFile, "\"\r\n") {
		t.Fatalf("testenv: tinyproxy LogFile %q: quotes and newlines do not survive its config syntax", o.LogFile)
	}
	logFile := func(dir string) string {
		if o.LogFile != "" {
			return o.LogFile
		}
		return filepath.Join(dir, "tinyproxy.log")
	}
	return startProgram(t, spec{
		name:    "tinyproxy",
		bin:     bin,
		logFile: logFile,
		args: func(dir string, port int) ([]string, error) {
			var b strings.Builder
			fmt.Fprintf(&b, "Port %d\n", port)
			b.WriteString("Listen 127.0.0.1\nAllow 127.0.0.1\n")
			b.WriteString("Timeout 60\nMaxClients 100\nDisableViaHeader Yes\n")
			// Info, not Connect: the refusal reasons ("Refused CONNECT method
			// on port ...") are logged at Info.
			b.WriteString("LogLevel Info\n")
			fmt.Fprintf(&b, "LogFile \"%s\"\n", logFile(dir))
			fmt.Fprintf(&b, "PidFile \"%s\"\n", filepath.Join(dir, "tinyproxy.pid"))
			// Run as root (CI), tinyproxy warns that no User is set and keeps
			// running as root; setting User would make it drop privileges and
			// lose access to the temp dir, so none is set.
			if o.BasicAuthUser != "" {
				fmt.Fprintf(&b, "BasicAuth %s %s\n", o.BasicAuthUser, o.BasicAuthPass)
			}
			for _, p := range o.ConnectPorts {
				fmt.Fprintf(&b, "ConnectPort %d\n", p)
			}
			conf := filepath.Join(dir, "tinyproxy.conf")
			if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
				return nil, err
			}
			// -d: stay in the foreground.
			return []string{"-d", "-c", conf}, nil
		},
	})
}

// StartDante runs danted, a SOCKS5 proxy without authentication, and
// returns its "127.0.0.1:port". It accepts clients from 127.0.0.0/8 and
// connects out from 127.0.0.1, so it reaches loopback targets only.
func StartDante(t testing.TB) string {
	t.Helper()
	bin := Require(t, "danted")
	return startProgram(t, spec{
		name:    "danted",
		bin:     bin,
		logFile: func(dir string) string { return filepath.Join(dir, "danted.log") },
		args: func(dir string, port int) ([]string, error) {
			// danted checks the user it switches to for unprivileged work.
			// Run as root (CI), it would otherwise keep root and warn; nobody
			// works because it opens the log before switching. Not root, it
			// runs as the current user and must not name any.
			users := ""
			if os.Geteuid() == 0 {
				users = "user.privileged: root\nuser.unprivileged: nobody\n"
			}
			// Server settings must precede the rules.
			conf := fmt.Sprintf(`logoutput: %s
%sinternal: 127.0.0.1 port = %d
external: 127.0.0.1
socksmethod: none
clientmethod: none
client pass {
	from: 127.0.0.0/8 to: 0.0.0.0/0
	log: error
}
socks pass {
	from: 127.0.0.0/8 to: 0.0.0.0/0
	log: connect error
}
`, filepath.Join(dir, "danted.log"), users, port)
			path := filepath.Join(dir, "danted.conf")
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				return nil, err
			}
			// Without -D danted stays in the foreground; -N 1: one process
			// set is plenty for tests.
			return []string{"-f", path, "-p", filepath.Join(dir, "danted.pid"), "-N", "1"}, nil
		},
	})
}

// StartMicrosocks runs microsocks, a SOCKS5 proxy, and returns its
// "127.0.0.1:port". With user and pass it demands RFC 1929 user/password
// authentication; with both empty it needs none.
func StartMicrosocks(t testing.TB, user, pass string) string {
	t.Helper()
	bin := Require(t, "microsocks")
	if (user == "") != (pass == "") {
		t.Fatalf("testenv: microsocks needs both user and password, or neither")
	}
	return startProgram(t, spec{
		name: "microsocks",
		bin:  bin,
		args: func(dir string, port int) ([]string, error) {
			args := []string{"-i", "127.0.0.1", "-p", strconv.Itoa(port)}
			if user != "" {
				args = append(args, "-u", user, "-P", pass)
			}
			return args, nil
		},
	})
}
