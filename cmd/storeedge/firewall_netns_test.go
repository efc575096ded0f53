package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

// TestNFTablesRulesLetTheShopInAndNothingElse applies "storeedge firewall --format nftables" in
// the server's network namespace: from the shop's LAN (the other namespace) the server's ports
// answer, another program's port does not, and the server still syncs with outbound traffic
// limited to the rules, and a device's broadcast probe is answered.
func TestNFTablesRulesLetTheShopInAndNothingElse(t *testing.T) {
	srv, lan := testenv.NetNSPair(t)
	testenv.Require(t, "nft")
	curl := testenv.Require(t, "curl")
	bin, cloudBin := binaries(t)
	start := func(ns testenv.NetNS, name string, args ...string) *bufio.Reader {
		cmd := ns.Command(name, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		log := &testenv.Buffer{}
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", filepath.Base(name), log)
			}
		})
		return bufio.NewReader(out)
	}
	line, err := start(srv, cloudBin, "-listen", "127.0.0.1:0", "-store-key", "e2e-key", "-products", "5").ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	cloudURL := strings.TrimSpace(strings.TrimPrefix(line, "cloudsim listening on "))
	// Another program on the server, on a port storeedge does not need.
	start(srv, cloudBin, "-listen", "0.0.0.0:9000", "-store-key", "x", "-products", "1")

	sets := []string{"--set", "data_dir=" + t.TempDir(), "--set", "cloud.url=" + cloudURL, "--set", "cloud.store_key=e2e-key",
		"--set", "admin.token=" + e2eAdminToken, "--set", "wan.proxy=direct", "--set", "lan.front_door=8080",
		"--set", "lan.services.catalog=8000", "--set", "lan.services.media=0", "--set", "lan.services.orders=0",
		"--set", "lan.services.devices=0", "--set", "lan.services.events=0", "--set", "lan.services.admin=0",
		"--set", "discovery.mdns.enabled=false", "--set", "cloud.poll_interval=1s"}
	start(srv, bin, append([]string{"run"}, sets...)...)

	host := srv.Addr.Addr().String()
	get := func(port, path string, timeout time.Duration) (string, error) {
		out, err := lan.Command(curl, "-sS", "-m", strings.TrimSuffix(timeout.String(), "s"), "-H", "Authorization: Bearer "+e2eAdminToken,
			"http://"+host+":"+port+path).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := get("8080", "/healthz", 2*time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("storeedge did not answer from the LAN before the firewall was applied")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := get("9000", "/_sim/stats", 2*time.Second); err != nil {
		t.Fatalf("the other program is not reachable even without the firewall: %v %s", err, out)
	}

	rules, code := cli(t, append([]string{"firewall", "--format", "nftables", "--outbound-drop", "--admin-port", ""}, sets...)...)
	if code != 0 {
		t.Fatalf("storeedge firewall: exit %d\n%s", code, rules)
	}
	file := filepath.Join(t.TempDir(), "storeedge.nft")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.Command("nft", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s\n%s", err, out, rules)
	}
	// With mDNS on, the rules name its group; nft checks them without applying.
	mdns, code := cli(t, append(append([]string{"firewall", "--format", "nftables", "--outbound-drop"}, sets...), "--set", "discovery.mdns.enabled=true")...)
	if code != 0 || !strings.Contains(mdns, "224.0.0.251") {
		t.Fatalf("storeedge firewall with mDNS: exit %d\n%s", code, mdns)
	}
	mdnsFile := filepath.Join(t.TempDir(), "mdns.nft")
	if err := os.WriteFile(mdnsFile, []byte(mdns), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.Command("nft", "-c", "-f", mdnsFile).CombinedOutput(); err != nil {
		t.Errorf("nft -c -f (mDNS on): %v\n%s\n%s", err, out, mdns)
	}

	for _, port := range []string{"8080", "8000"} {
		if out, err := get(port, "/healthz", 3*time.Second); err != nil || !strings.Contains(out, "ok") {
			t.Errorf("port %s from the LAN through the firewall: %v %s", port, err, out)
		}
	}
	if out, err := get("9000", "/_sim/stats", 2*time.Second); err == nil {
		t.Errorf("a port the rules do not open answered through the firewall: %s", out)
	}
	// A device on the LAN still finds the server by a broadcast probe: the answer, to the
	// device's own port, belongs to no connection the firewall knows.
	find := lan.Command(os.Args[0], "-test.run=^$")
	find.Env = append(os.Environ(), deviceEnv+"=find")
	var findErr testenv.Buffer
	find.Stderr = &findErr
	if out, err := find.Output(); err != nil || !strings.Contains(string(out), `"url":"http://`+host+`:8080"`) {
		t.Errorf("a device's probe through the firewall: %v %s %s", err, out, findErr.String())
	}
	// The server keeps syncing: a pass after the rules went in still succeeds.
	before := time.Now().UTC()
	deadline = time.Now().Add(20 * time.Second)
	for {
		out, err := get("8080", "/api/v1/status", 3*time.Second)
		if err == nil && strings.Contains(out, `"state":"ok"`) && lastSuccessAfter(out, before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful sync after the firewall went in: %v %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lastSuccessAfter tells whether a status document shows a sync that succeeded after t.
func lastSuccessAfter(status string, t time.Time) bool {
	const key = `"last_success":"`
	for s := status; ; {
		i := strings.Index(s, key)
		if i < 0 {
			return false
		}
		s = s[i+len(key):]
		end := strings.IndexByte(s, '"')
		if end < 0 {
			return false
		}
		if ts, err := time.Parse(time.RFC3339Nano, s[:end]); err == nil && ts.After(t) {
			return true
		}
	}
}
