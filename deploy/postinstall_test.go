package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The package's upgrade restarts the running service only once the new binary accepts the
// configuration it runs with: a value the new version refuses leaves the version before running
// (the shop goes on) and the install says what to mend, where a restart would stop the service
// with status 78. The script runs with its system paths moved into a folder of the test, the
// real storeedge binary checking a real configuration; systemctl and systemd-run, which need a
// running systemd, are stand-ins that record what they were asked and run the check as
// systemd-run would (its EnvironmentFile read, the command run).
func TestUpgradeRestartsOnlyOnAConfigurationTheNewVersionAccepts(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "storeedge")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/storeedge").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	script, err := os.ReadFile("scripts/postinstall.sh")
	if err != nil {
		t.Fatal(err)
	}
	etc, state, systemd, stubs := filepath.Join(root, "etc"), filepath.Join(root, "state"), filepath.Join(root, "run-systemd"), filepath.Join(root, "stubs")
	for _, d := range []string{etc, systemd, stubs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"/etc/storeedge/storeedge.yaml", "/etc/storeedge/storeedge.env", "/var/lib/storeedge", "/run/systemd/system", "/usr/bin/storeedge"} {
		if !strings.Contains(string(script), path) {
			t.Fatalf("postinstall.sh no longer names %s: this test moves it", path)
		}
	}
	moved := strings.NewReplacer("/etc/storeedge/", etc+"/", "/var/lib/storeedge", state, "/run/systemd/system", systemd,
		"/usr/bin/storeedge", bin).Replace(string(script))
	log := filepath.Join(root, "calls")
	stub := func(name, body string) {
		if err := os.WriteFile(filepath.Join(stubs, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// systemctl: show gives the unit's environment as the test sets it in unit.env (Environment=)
	// and unit.files (EnvironmentFiles=), as a unit with a drop-in would have them.
	unitEnv, unitFiles := filepath.Join(root, "unit.env"), filepath.Join(root, "unit.files")
	systemctl := `echo "systemctl $*" >> ` + log + `
case "$*" in
"show --property=Environment --value storeedge.service") cat ` + unitEnv + ` ;;
"show --property=EnvironmentFiles --value storeedge.service") cat ` + unitFiles + ` ;;
show*) echo "systemctl: unexpected $*" >&2; exit 1 ;;
esac
`
	stub("systemctl", systemctl)
	stub("chown", "")
	// systemd-run: the options up to the command, EnvironmentFile= read (its "-" meaning
	// "if it exists") and Environment= set, then the command with its status.
	stub("systemd-run", `echo "systemd-run $*" >> `+log+`
while [ $# -gt 0 ]; do
	case "$1" in
	--property=EnvironmentFile=-*) f=${1#--property=EnvironmentFile=-}; if [ -r "$f" ]; then set -a; . "$f"; set +a; fi ;;
	--property=EnvironmentFile=*) f=${1#--property=EnvironmentFile=}; set -a; . "$f"; set +a ;;
	--property=Environment=*) eval "for a in ${1#--property=Environment=}; do export \"\$a\"; done" ;;
	--*) ;;
	*) break ;;
	esac
	shift
done
exec "$@"
`)
	run := func(yaml string) (calls, stderr string) {
		t.Helper()
		os.Remove(log)
		if err := os.WriteFile(filepath.Join(etc, "storeedge.yaml"), []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", moved, "postinst", "configure", "9.8.6")
		// The environment of the test's caller is not the unit's: no STOREEDGE_ variable of it
		// reaches the check.
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "STOREEDGE_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "PATH="+stubs+":"+os.Getenv("PATH"))
		cmd.Env = append(cmd.Env, "DPKG_ROOT=") // an install into this machine's root
		var errb strings.Builder
		cmd.Stderr = &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("postinstall: %v\n%s", err, errb.String())
		}
		b, _ := os.ReadFile(log)
		return string(b), errb.String()
	}
	// The store key comes from storeedge.env, as the unit gives it; the unit's show names it.
	if err := os.WriteFile(filepath.Join(etc, "storeedge.env"), []byte("STOREEDGE_CLOUD_STORE_KEY=sk_live_0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unit := func(env, files string) {
		t.Helper()
		if err := os.WriteFile(unitEnv, []byte(env), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(unitFiles, []byte(files), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	unit("", filepath.Join(etc, "storeedge.env")+" (ignore_errors=yes)\n")
	good := "data_dir: " + filepath.Join(root, "data") + "\nshop:\n  name: \"Test shop\"\n"
	calls, stderr := run(good)
	if !strings.Contains(calls, "systemd-run ") || !strings.Contains(calls, "systemctl try-restart storeedge.service") {
		t.Errorf("an accepted configuration: the service was not checked and restarted; calls:\n%s\nstderr: %s", calls, stderr)
	}
	if stderr != "" {
		t.Errorf("an accepted configuration: the install said %q", stderr)
	}

	// A value this version refuses (an http endpoint for media that is not loopback).
	refused := good + "media:\n  container: \"media\"\n  connection_string: \"BlobEndpoint=http://blob.example.com/;SharedAccessSignature=sv=2023-01-01&sig=abc\"\n"
	calls, stderr = run(refused)
	if strings.Contains(calls, "try-restart") {
		t.Errorf("a refused configuration: the service was restarted (it would stop with status 78); calls:\n%s", calls)
	}
	for _, want := range []string{"refuses the configuration", "media.connection_string", "systemctl restart storeedge"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("a refused configuration: the install does not say %q; it said:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "sig=abc") {
		t.Errorf("the install printed the secret: %s", stderr)
	}

	// What a drop-in gives the unit counts: production needs admin.token, set there only.
	production := good + "  mode: \"production\"\n" // in the shop: section good ends with
	// Environment= as systemctl show prints it: values with spaces quoted.
	unit(`STOREEDGE_ADMIN_TOKEN=an-admin-token-of-32-characters-x "STOREEDGE_SHOP_NAME=Shop of the square"`+"\n", filepath.Join(etc, "storeedge.env")+" (ignore_errors=yes)\n")
	if calls, stderr = run(production); !strings.Contains(calls, "try-restart") || stderr != "" {
		t.Errorf("admin.token from a drop-in: the service was not restarted; calls:\n%s\nstderr: %s", calls, stderr)
	}
	// Or from a second environment file, one that must exist.
	second := filepath.Join(etc, "admin.env")
	if err := os.WriteFile(second, []byte("STOREEDGE_ADMIN_TOKEN=an-admin-token-of-32-characters-x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unit("", filepath.Join(etc, "storeedge.env")+" (ignore_errors=yes)\n"+second+" (ignore_errors=no)\n")
	if calls, stderr = run(production); !strings.Contains(calls, "try-restart") || stderr != "" {
		t.Errorf("admin.token from a second file: the service was not restarted; calls:\n%s\nstderr: %s", calls, stderr)
	}
	// A unit whose environment files a drop-in cleared does not get storeedge.env: without the
	// store key it holds, the configuration is refused.
	unit("", "")
	if calls, stderr = run(good); strings.Contains(calls, "try-restart") || !strings.Contains(stderr, "store_key") {
		t.Errorf("no environment file: calls:\n%s\nstderr: %s", calls, stderr)
	}
	unit("", filepath.Join(etc, "storeedge.env")+" (ignore_errors=yes)\n")
	if calls, stderr = run(production); strings.Contains(calls, "try-restart") || !strings.Contains(stderr, "admin.token") {
		t.Errorf("production without admin.token: calls:\n%s\nstderr: %s", calls, stderr)
	}

	// A service that is not running is left alone.
	stub("systemctl", systemctl+`case "$1" in is-active) exit 3 ;; esac`+"\n")
	calls, _ = run(refused)
	if strings.Contains(calls, "try-restart") || strings.Contains(calls, "systemd-run") {
		t.Errorf("a stopped service was checked or restarted; calls:\n%s", calls)
	}
}
