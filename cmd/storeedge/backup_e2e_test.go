package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

// cli runs the storeedge binary with args and returns its output and exit code.
func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin, _ := binaries(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// shopSets are the settings that give the CLI the shop's data folder and store key.
func shopSets(dir string, extra ...string) []string {
	args := []string{"--set", "data_dir=" + dir, "--set", "cloud.store_key=e2e-key"}
	for _, e := range extra {
		args = append(args, "--set", e)
	}
	return args
}

// TestBackupAndRestoreKeepPairingsAndPendingOrders backs up a running shop with orders the cloud
// has not received yet, loses its data folder, restores the backup, and finds the device still
// paired and the orders reaching the cloud.
func TestBackupAndRestoreKeepPairingsAndPendingOrders(t *testing.T) {
	cloud := startCloud(t, "-products", "20")
	link := newWANLink(t, strings.TrimPrefix(cloud.url, "http://"))
	dir := t.TempDir()
	opts := shopOptions{dataDir: dir, cloud: "http://" + link.addr}
	s := startShop(t, opts)
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	link.down()
	made := map[string][]string{}
	for i := range 5 {
		id, _, _, err := s.postOrder("till", fmt.Sprint("order-", i), "P0000001", 1)
		if err != nil {
			t.Fatal(err)
		}
		made[s.deviceID(t, "till")] = append(made[s.deviceID(t, "till")], id)
	}

	file := filepath.Join(t.TempDir(), "shop.backup")
	out, code := cli(t, append([]string{"backup", file}, shopSets(dir)...)...)
	if code != 0 || !strings.Contains(out, "5 order events not yet acknowledged") {
		t.Fatalf("backup of the running shop: exit %d\n%s", code, out)
	}
	out, code = cli(t, append([]string{"restore", file}, shopSets(dir)...)...)
	if code != 1 || !strings.Contains(out, "stop the service") {
		t.Fatalf("restore while the service runs: exit %d, want 1 and advice to stop it\n%s", code, out)
	}

	// The machine dies; a new one gets the configuration and the backup.
	s.stop(t)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	out, code = cli(t, append([]string{"restore", file}, shopSets(dir, "cloud.store_key=another-shops-key")...)...)
	if code != 1 || !strings.Contains(out, "another shop") || !strings.Contains(out, "--force") {
		t.Fatalf("restore into another shop's server: exit %d\n%s", code, out)
	}
	out, code = cli(t, append([]string{"restore", file}, shopSets(dir)...)...)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, out)
	}
	// On the new machine nothing says which devices were revoked since the backup: restore
	// says they must be revoked again.
	if !strings.Contains(out, "the devices revoked after the backup was made are not known") {
		t.Errorf("restore onto a new machine does not warn of the revocations it cannot know:\n%s", out)
	}
	link.up(t)
	s = startShop(t, opts)
	// The till pairs no more: its token from before the loss still opens the catalog.
	token, _ := s.deviceToken("till")
	req, _ := http.NewRequest(http.MethodGet, s.base+"/api/v1/catalog/products/P0000001", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the paired till after the restore: %s", resp.Status)
	}
	waitFor(t, s, "the orders to reach the cloud", time.Minute, func() bool { return s.outboxPending(t) == 0 })
	assertCloudOrders(t, cloud, made)
	s.stop(t)
}

// TestBackupKilledLeavesNoBackupAndHarmsNothing kills "storeedge backup" with SIGKILL while it
// copies the database of a running shop: no file appears under the name asked for, the shop goes
// on serving, and the next backup is complete.
func TestBackupKilledLeavesNoBackupAndHarmsNothing(t *testing.T) {
	cloud := startCloud(t, "-products", "60000")
	dir := t.TempDir()
	s := startShop(t, shopOptions{dataDir: dir, cloud: cloud.url})
	waitFor(t, s, "first sync", 3*time.Minute, func() bool { return s.caughtUp(t) })
	bin, _ := binaries(t)
	out := t.TempDir()
	file := filepath.Join(out, "shop.backup")
	killed := false
	for attempt := 0; attempt < 5 && !killed; attempt++ {
		cmd := exec.Command(bin, append([]string{"backup", file}, shopSets(dir)...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The copy is written under a temporary name: kill as soon as it exists.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if names, _ := filepath.Glob(filepath.Join(out, ".shop.backup"+storage.TempMark+"*")); len(names) > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if _, err := os.Stat(file); err == nil {
			os.Remove(file) // the backup finished before the kill landed: again
			continue
		}
		killed = true
	}
	if !killed {
		t.Fatal("five backups finished before a SIGKILL could land")
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a killed backup left %s: %v", file, err)
	}
	if resp := s.get(t, "/api/v1/catalog/products/P0000001", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the shop after a killed backup: %s", resp.Status)
	}
	if o, code := cli(t, append([]string{"backup", file}, shopSets(dir)...)...); code != 0 {
		t.Fatalf("backup after a killed one: exit %d\n%s", code, o)
	}
	info, err := storage.InspectBackup(context.Background(), file)
	if err != nil || info.Schema != storage.SchemaVersion() {
		t.Fatalf("the backup after a killed one: %+v %v", info, err)
	}
	s.stop(t)
	db, err := storage.Open(context.Background(), filepath.Join(dir, "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.IntegrityCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestOlderBinaryRefusesNewerDatabase starts the server on a database a newer storeedge has
// upgraded: it refuses to start, says why and what to do, and leaves the database alone. It exits
// 78, as for configuration it cannot use: systemd does not restart it over and over.
func TestOlderBinaryRefusesNewerDatabase(t *testing.T) {
	dir := t.TempDir()
	db, err := storage.Open(context.Background(), filepath.Join(dir, "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	// What a newer storeedge's migration leaves: a schema version this one does not know.
	raw, err := sql.Open("sqlite", filepath.Join(dir, "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO schema_migrations VALUES (?, 0)`, storage.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	cloud := startCloud(t, "-products", "5")
	bin, _ := binaries(t)
	cmd := exec.Command(bin, "run", "--set", "data_dir="+dir, "--set", "cloud.url="+cloud.url, "--set", "cloud.store_key=e2e-key",
		"--set", "lan.bind=127.0.0.1", "--set", fmt.Sprint("lan.front_door=", testenv.FreePort(t)), "--set", "lan.services.catalog=0", "--set", "lan.services.media=0",
		"--set", "lan.services.orders=0", "--set", "lan.services.devices=0", "--set", "lan.services.events=0", "--set", "lan.services.admin=0")
	o, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 78 || !strings.Contains(string(o), "newer than this storeedge knows") {
		t.Fatalf("run on a newer database: exit %d\n%s", cmd.ProcessState.ExitCode(), o)
	}
}
