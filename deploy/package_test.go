// Package deploy holds the service unit, the package configuration and the Windows files; its
// test builds the packages with scripts/package.sh and checks them as a shop's machine would
// see them.
package deploy

import (
	"archive/zip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/tools/testenv"
)

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The packages of version 9.8.7, built once for the tests that read them.
var built struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// packages runs scripts/package.sh 9.8.7 once and returns its dist folder.
func packages(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "storeedge-dist-"); built.err != nil {
			return
		}
		cmd := exec.Command("../scripts/package.sh", "9.8.7")
		cmd.Env = append(os.Environ(), "DIST="+built.dir)
		built.out, built.err = cmd.CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("package.sh: %v\n%s", built.err, built.out)
	}
	return built.dir
}

func TestPackagesInstallAndRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	dpkg := testenv.Require(t, "dpkg")
	rpm := testenv.Require(t, "rpm")
	dist := packages(t)
	deb := filepath.Join(dist, "storeedge_9.8.7_amd64.deb")
	info := sh(t, "dpkg-deb", "--info", deb)
	contents := sh(t, "dpkg-deb", "--contents", deb)
	for _, want := range []string{"Package: storeedge", "Version: 9.8.7", "Architecture: amd64", "conffiles", "preinst", "postinst", "Depends: systemd (>= 236)"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	for _, want := range []string{"./usr/bin/storeedge", "./usr/lib/systemd/system/storeedge.service", "./etc/storeedge/storeedge.yaml", "./var/lib/storeedge/"} {
		if !strings.Contains(contents, want) {
			t.Errorf("dpkg-deb --contents lacks %s:\n%s", want, contents)
		}
	}
	if cf := sh(t, "dpkg-deb", "-f", deb, "Package"); !strings.Contains(sh(t, "sh", "-c", "dpkg-deb -e "+deb+" "+filepath.Join(dist, "ctl")+" && cat "+filepath.Join(dist, "ctl", "conffiles")), "/etc/storeedge/storeedge.yaml") {
		t.Errorf("%s: the configuration is not a conffile an upgrade keeps", cf)
	}

	// Install into a scratch root: the maintainer scripts run chrooted-less against it, and
	// configure (postinst) leaves this machine's folders, users and services alone.
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
	// The scratch root has no systemd, which the package depends on.
	sh(t, dpkg, "--root="+root, "--force-script-chrootless", "--force-not-root", "--force-depends", "--no-triggers", "--install", deb)
	if out := sh(t, filepath.Join(root, "usr/bin/storeedge"), "version"); !strings.Contains(out, "storeedge 9.8.7") {
		t.Errorf("installed binary says %q, want version 9.8.7", out)
	}
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/storeedge.service"))
	if err != nil || !strings.Contains(string(unit), "Type=notify") || !strings.Contains(string(unit), "WatchdogSec=") || !strings.Contains(string(unit), "CAP_NET_BIND_SERVICE") {
		t.Errorf("installed unit: %v\n%s", err, unit)
	}
	// A configuration mistake (storeedge run exits 78, EX_CONFIG) stops the unit as failed
	// instead of restarting it every 2 s for ever; a crash (Go exits 2) or any other failure is
	// restarted until it passes, whatever systemd's default start limit.
	if !strings.Contains(string(unit), "\nRestartPreventExitStatus=78\n") || !strings.Contains(string(unit), "\nStartLimitIntervalSec=0\n") ||
		strings.Contains(string(unit), "StartLimitBurst") {
		t.Errorf("installed unit restarts on a configuration error, or gives up on other failures:\n%s", unit)
	}
	// The start after an upgrade copies and converts the database: install.md allows it 15 minutes.
	if !strings.Contains(string(unit), "\nTimeoutStartSec=15min\n") {
		t.Errorf("installed unit's start timeout is not the 15 minutes install.md gives:\n%s", unit)
	}
	// A stop gets the default grace and the 30 s the Windows service gives beyond it: killed
	// sooner, the next start would jump the order numbers.
	if !strings.Contains(string(unit), "\nTimeoutStopSec=40s\n") {
		t.Errorf("installed unit's stop timeout is not the 40 s install.md gives:\n%s", unit)
	}
	// The service takes every setting from its configuration file and storeedge.env: a
	// STOREEDGE_ variable in the unit would beat the file (data_dir moved to a larger disk, say).
	for _, line := range strings.Split(string(unit), "\n") {
		if strings.HasPrefix(line, "Environment=") && strings.Contains(line, "STOREEDGE_") {
			t.Errorf("the unit overrides the configuration file: %s", line)
		}
	}

	rpmFile := filepath.Join(dist, "storeedge-9.8.7-1.x86_64.rpm")
	q := sh(t, rpm, "-qip", rpmFile)
	for _, want := range []string{"Name        : storeedge", "Version     : 9.8.7"} {
		if !strings.Contains(q, want) {
			t.Errorf("rpm -qip lacks %q:\n%s", want, q)
		}
	}
	req := sh(t, rpm, "-qpR", rpmFile)
	if !strings.Contains(req, "systemd >= 236") {
		t.Errorf("rpm requires no systemd 236 or later (install.md):\n%s", req)
	}
	// The preinstall script's tools, absent from a minimal image (ubi-minimal).
	for _, tool := range []string{"/usr/sbin/groupadd", "/usr/sbin/useradd"} {
		if !strings.Contains(req, tool) {
			t.Errorf("rpm does not require %s, which its preinstall script runs:\n%s", tool, req)
		}
	}
	if cfg := sh(t, rpm, "-qpc", rpmFile); !strings.Contains(cfg, "/etc/storeedge/storeedge.yaml") {
		t.Errorf("rpm config files: %s", cfg)
	}
	rroot := t.TempDir()
	sh(t, rpm, "--root", rroot, "--initdb")
	sh(t, rpm, "--root", rroot, "-i", "--nodeps", "--noscripts", rpmFile)
	if out := sh(t, filepath.Join(rroot, "usr/bin/storeedge"), "version"); !strings.Contains(out, "storeedge 9.8.7") {
		t.Errorf("binary from the rpm says %q", out)
	}
	zip := filepath.Join(dist, "storeedge_9.8.7_windows_amd64.zip")
	if fi, err := os.Stat(zip); err != nil || fi.Size() < 1<<20 {
		t.Errorf("windows zip: %v", err)
	}
	checkWindowsExample(t, zip)
}

// checkWindowsExample reads the example configuration of the Windows zip: copied as install.md
// says, with the store key set, it must load, and keep its data in C:\ProgramData\storeedge
// (the Linux example's /var/lib/storeedge is not an absolute path on Windows, and is refused).
func checkWindowsExample(t *testing.T, zipPath string) {
	t.Helper()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	f, err := zr.Open("storeedge/storeedge.example.yaml")
	if err != nil {
		t.Fatalf("windows zip: %v", err)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		DataDir string `yaml:"data_dir"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.DataDir != config.DefaultDataDirWindows {
		t.Errorf("the Windows example's data_dir is %q (%v), want %q", doc.DataDir, err, config.DefaultDataDirWindows)
	}
	linux, err := os.ReadFile("storeedge.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := strings.Count(string(data), "\n"), strings.Count(string(linux), "\n"); a != b {
		t.Errorf("the Windows example has %d lines, the Linux one %d: it should differ only in data_dir", a, b)
	}
	// The rest loads (on this system, with a data_dir of its own: the Windows path is not
	// absolute here).
	path := filepath.Join(t.TempDir(), "storeedge.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, []string{"STOREEDGE_CLOUD_STORE_KEY=sk_test_0123456789"}, []string{"data_dir=" + t.TempDir()}); err != nil {
		t.Errorf("the Windows example does not load: %v", err)
	}
}
