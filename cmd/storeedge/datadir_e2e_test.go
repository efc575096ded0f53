package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

// TestSecondDaemonOnADataDirIsRefused starts a second daemon on the data_dir of a running one, on
// other ports: it must refuse to start and name the running process, as must a restore, while
// commands that only read (config, backup) still run. Once the first is killed with SIGKILL, a
// new one starts.
func TestSecondDaemonOnADataDirIsRefused(t *testing.T) {
	bin, _ := binaries(t)
	dir := t.TempDir()
	opts := shopOptions{dataDir: dir, cloud: "http://127.0.0.1:1", sets: []string{"cloud.sync=false"}}
	first := startShop(t, opts)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, bin, "run", "--set", "data_dir="+dir, "--set", "cloud.store_key=k", "--set", "cloud.sync=false",
		"--set", "lan.bind=127.0.0.1", "--set", "lan.front_door="+strconv.Itoa(testenv.FreePort(t)),
		"--set", "lan.services.catalog="+strconv.Itoa(testenv.FreePort(t)), "--set", "lan.services.admin="+strconv.Itoa(testenv.FreePort(t)),
		"--set", "lan.services.media=0", "--set", "lan.services.orders=0", "--set", "lan.services.devices=0", "--set", "lan.services.events=0")
	out, err := second.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("second daemon on the same data_dir: exit %v, want 1\n%s", err, out)
	}
	msg := string(out)
	for _, want := range []string{"data_dir " + dir + " is in use", "pid " + strconv.Itoa(first.cmd.Process.Pid), "stop it first"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if !regexp.MustCompile(`started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`).MatchString(msg) {
		t.Errorf("message does not say when the running one started:\n%s", msg)
	}
	if strings.Contains(msg, "serving") {
		t.Errorf("the second daemon served before refusing:\n%s", msg)
	}

	if out, code := cli(t, append([]string{"config"}, shopSets(dir)...)...); code != 0 || !strings.Contains(out, dir) {
		t.Fatalf("storeedge config beside a running daemon: exit %d\n%s", code, out)
	}
	// A backup only reads: it runs beside. A restore would write the database: refused, naming
	// the running daemon.
	file := filepath.Join(t.TempDir(), "shop.backup")
	if out, code := cli(t, append([]string{"backup", file}, shopSets(dir)...)...); code != 0 {
		t.Fatalf("storeedge backup beside a running daemon: exit %d\n%s", code, out)
	}
	refused, code := cli(t, append([]string{"restore", file}, shopSets(dir)...)...)
	if code != 1 || !strings.Contains(refused, "pid "+strconv.Itoa(first.cmd.Process.Pid)) || !strings.Contains(refused, "stop the service") {
		t.Fatalf("storeedge restore beside a running daemon: exit %d, want 1 naming it\n%s", code, refused)
	}
	first.status(t) // the running one is undisturbed

	first.kill()
	again := startShop(t, opts)
	again.status(t)
	again.stop(t)
}
