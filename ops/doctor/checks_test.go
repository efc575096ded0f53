package doctor

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/dirlock"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F40 0100007F:C350 01 00000000:00000000 00:00000000 00000000   998        0 51234 1 0000000000000000 20 4 30 10 -1
`

func TestParseProcNet(t *testing.T) {
	socks, err := parseProcNet(strings.NewReader(procNetTCP))
	if err != nil {
		t.Fatal(err)
	}
	want := []procSocket{{Port: 80, State: 0x0A, UID: 0, Inode: 41234}, {Port: 8000, State: 0x01, UID: 998, Inode: 51234}}
	if len(socks) != 2 || socks[0] != want[0] || socks[1] != want[1] {
		t.Fatalf("parseProcNet = %+v, want %+v", socks, want)
	}
	for _, bad := range []string{"h\n 0: 0000:XYZ 0:0 0A a b c 0 0 1\n", "h\nshort line\n", "h\n 0: nocolon 0:0 0A a b c 0 0 1\n"} {
		if _, err := parseProcNet(strings.NewReader(bad)); err == nil {
			t.Errorf("parseProcNet(%q) accepted", bad)
		}
	}
}

func FuzzParseProcNet(f *testing.F) {
	f.Add(procNetTCP)
	f.Add("header\n")
	f.Fuzz(func(t *testing.T, s string) {
		socks, _ := parseProcNet(strings.NewReader(s))
		for _, so := range socks {
			if so.Port < 0 || so.Port > 65535 {
				t.Fatalf("port %d", so.Port)
			}
		}
	})
}

func TestBroadAccess(t *testing.T) {
	read, write := broadAccess([]ace{
		{sid: "S-1-5-18", mask: 0x1F01FF},     // SYSTEM: full control, fine
		{sid: "S-1-5-32-544", mask: 0x1F01FF}, // Administrators, fine
		{sid: "S-1-5-32-545", mask: 0x1200A9}, // Users: read and execute
		{sid: "S-1-1-0", mask: genericWrite},  // Everyone: write
		{sid: "S-1-5-11", mask: 0x00100000},   // Authenticated Users: synchronize only
	})
	if strings.Join(read, ",") != "Users" || strings.Join(write, ",") != "Everyone" {
		t.Fatalf("broadAccess: read %q write %q", read, write)
	}
	// Changing the permissions, taking ownership or deleting hands the folder over as surely.
	for _, mask := range []uint32{writeDAC, writeOwner, deleteAccess, fileDeleteChild} {
		if _, write := broadAccess([]ace{{sid: "S-1-5-32-545", mask: mask}}); strings.Join(write, ",") != "Users" {
			t.Errorf("Users with the right %#x: not counted as changing the folder", mask)
		}
	}
}

func TestHolderIsStoreedge(t *testing.T) {
	for name, want := range map[string]bool{"storeedge": true, "storeedge.exe": true, "StoreEdge.EXE": true, "nginx": false, "storeedge-old": false} {
		if got := (Holder{Name: name}).IsStoreedge(); got != want {
			t.Errorf("%q: IsStoreedge %v", name, got)
		}
	}
}

// heldPort listens on a loopback port until the test ends, and puts portHolder back then: the
// test sets who holds the port.
func heldPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	saved := portHolder
	t.Cleanup(func() { portHolder = saved })
	return ln.Addr().(*net.TCPAddr).Port
}

// A port held by a process doctor may not look into passes when the socket is the service
// account's (doctor in the container image, next to the running daemon), and fails otherwise.
func TestPortHeldByTheServiceAccount(t *testing.T) {
	port := heldPort(t)
	for account, want := range map[string]string{"storeedge": "PASS", "www-data": "FAIL", "": "FAIL"} {
		portHolder = func(string, int) (Holder, error) {
			return Holder{Account: account}, fmt.Errorf("%w: a process of user id 65532 holds it", errHolderUnknown)
		}
		r := checkPort("tcp", "127.0.0.1", port, "lan.front_door", "storeedge", 0)
		if got := string(r.Status); got != want {
			t.Errorf("socket of account %q: %s %s, want %s", account, got, r.Detail, want)
		}
	}
}

// A port held by a storeedge passes when it is the one of this configuration's data_dir, and
// fails when it is another (a demo, a server of another data_dir): the service could not start.
// A lock file written on another host or in another PID namespace (a container), or by a version
// that did not say its namespace, cannot tell, and the storeedge passes.
func TestPortHeldByAnotherStoreedge(t *testing.T) {
	port := heldPort(t)
	host, _ := os.Hostname()
	heldBy := func(owner dirlock.Owner) string {
		dir := t.TempDir()
		l, err := dirlock.Acquire(dir, owner)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	ns := dirlock.PIDNamespace()
	here := heldBy(dirlock.Owner{PID: 4242, StartedAt: time.Now(), Host: host, PIDNamespace: ns})
	container := heldBy(dirlock.Owner{PID: 1, StartedAt: time.Now(), Host: "c0ffee", PIDNamespace: "pid:[4026532000]"})
	// A container on the host's network has the host's name, not its process ids.
	hostNetwork := heldBy(dirlock.Owner{PID: 1, StartedAt: time.Now(), Host: host, PIDNamespace: "pid:[4026532000]"})
	older := heldBy(dirlock.Owner{PID: 1, StartedAt: time.Now(), Host: host}) // a version that did not say its namespace
	type heldCase struct {
		dir  string
		pid  int
		want string
	}
	cases := []heldCase{{here, 4242, "PASS"}, {here, 5151, "FAIL"}, {container, 5151, "PASS"}, {hostNetwork, 5151, "PASS"}, {t.TempDir(), 5151, "PASS"}}
	if ns != "" { // where there are namespaces, a lock file that names none cannot tell
		cases = append(cases, heldCase{older, 5151, "PASS"})
	}
	for _, c := range cases {
		portHolder = func(string, int) (Holder, error) { return Holder{PID: c.pid, Name: "storeedge"}, nil }
		r := checkPort("tcp", "127.0.0.1", port, "lan.front_door", "", dataDirHolder(c.dir))
		if got := string(r.Status); got != c.want {
			t.Errorf("port held by storeedge pid %d, data_dir %s: %s %s, want %s", c.pid, c.dir, got, r.Detail, c.want)
		}
	}
}

func TestConfigFileReadableByAllWithASecretFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.yaml")
	os.WriteFile(path, []byte("cloud:\n  store_key: \"sk-123\"\n"), 0o644)
	os.Chmod(path, 0o644)
	res := checkConfigFile(path, config.Default(), "")[0]
	if res.Status != Fail || !strings.Contains(res.Detail, "cloud.store_key") || !strings.Contains(res.Fix, "chmod 0640") {
		t.Fatalf("world-readable file with the store key: %+v", res)
	}
	os.Chmod(path, 0o640)
	if res := checkConfigFile(path, config.Default(), "")[0]; res.Status != Pass {
		t.Fatalf("0640: %+v", res)
	}
	os.WriteFile(path, []byte("shop:\n  name: \"Lyon\"\n"), 0o644)
	os.Chmod(path, 0o644)
	if res := checkConfigFile(path, config.Default(), "")[0]; res.Status != Warn {
		t.Fatalf("world-readable file without secrets: %+v", res)
	}
}

func TestDatabaseChecks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "storeedge.db")
	db, err := storage.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if res := checkDatabase(ctx, path); res.Status != Pass || !strings.Contains(res.Detail, "quick check ok") {
		t.Fatalf("sound database: %+v", res)
	}
	// Damage a page in the middle of the file.
	data, _ := os.ReadFile(path)
	for i := 4096; i < len(data) && i < 4096*3; i++ {
		data[i] = 0xA5
	}
	os.WriteFile(path, data, 0o600)
	if res := checkDatabase(ctx, path); res.Status != Fail || !strings.Contains(res.Fix, "storeedge restore") {
		t.Fatalf("damaged database: %+v", res)
	}
}

func TestDataDirNotWritableByTheService(t *testing.T) {
	testenv.RequireRoot(t) // the service account check runs as root only
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // root's, not nobody's
	fi, _ := os.Stat(dir)
	res, ok := checkServiceCanWrite("data_dir", dir, fi, "nobody")
	if !ok || res.Status != Fail || !strings.Contains(res.Fix, "chown -R nobody") {
		t.Fatalf("folder of root checked for nobody: %+v %v", res, ok)
	}
}

// Every kind of secret in a file anyone may read fails the check, not only the cloud's.
func TestConfigFileEverySecretCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.yaml")
	for key, file := range map[string]string{
		"smtp.password":                        "smtp:\n  password: \"mail-pass\"\n",
		"logs.ship.api_key":                    "logs:\n  ship:\n    api_key: \"lk-1\"\n",
		"metrics.token":                        "metrics:\n  token: \"scrape-token-0123456789abcdef\"\n",
		"media.container_url":                  "media:\n  container_url: \"https://a.blob.core.windows.net/m?sv=1&sig=x\"\n",
		"media.connection_string":              "media:\n  connection_string: \"AccountName=a;AccountKey=k\"\n",
		"support.servicebus.connection_string": "support:\n  servicebus:\n    connection_string: \"Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v\"\n",
		"wan.proxy":                            "wan:\n  proxy: \"http://shop:pw@proxy.lan:3128\"\n",
	} {
		os.WriteFile(path, []byte(file), 0o644)
		os.Chmod(path, 0o644)
		if res := checkConfigFile(path, config.Default(), "")[0]; res.Status != Fail || !strings.Contains(res.Detail, key) {
			t.Errorf("world-readable file holding %s: %+v", key, res)
		}
	}
	os.WriteFile(path, []byte("wan:\n  proxy: \"http://proxy.lan:3128\"\n"), 0o644)
	if res := checkConfigFile(path, config.Default(), "")[0]; res.Status != Warn {
		t.Errorf("a proxy without credentials is no secret: %+v", res)
	}
}

// A connection string signed with a SharedAccessSignature stops working when it expires: doctor
// says so before, and fails once past; a key does not expire.
func TestServiceBusSignatureExpiry(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	cs := func(se time.Time) string {
		return "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=shop.servicebus.windows.net&sig=abc%3D&se=" +
			strconv.FormatInt(se.Unix(), 10) + "&skn=listen"
	}
	for _, tc := range []struct {
		cs     string
		status Status
		detail string
	}{
		{cs(now.Add(-time.Hour)), Fail, "expired on 2026-12-05T11:00:00Z"},
		{cs(now.Add(3 * 24 * time.Hour)), Warn, "in 3 days"},
		{cs(now.Add(90 * 24 * time.Hour)), Pass, "valid until 2027-03-05T12:00:00Z"},
	} {
		r, ok := sasExpiryCheck(tc.cs, "servicebus", "servicebus.connection_string", now)
		if !ok || r.Status != tc.status || !strings.Contains(r.Detail, tc.detail) || r.Check != "servicebus signature" {
			t.Errorf("%s: %+v (%v), want %s with %q", tc.cs, r, ok, tc.status, tc.detail)
		}
		if strings.Contains(r.Detail+r.Fix, "sig=") {
			t.Errorf("the signature is shown: %+v", r)
		}
	}
	if r, ok := sasExpiryCheck("Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=abc=", "servicebus", "k", now); ok {
		t.Errorf("a key, which does not expire: %+v", r)
	}
}

// What the report says never shows a secret of the configuration, as written or percent-encoded,
// whatever a dependency's error echoed; a value too short to look for is left alone.
func TestReportHidesSecrets(t *testing.T) {
	const sig = "sv=2024&sig=Zm9v/YmFy+"
	results := []Result{
		{Check: "blob container a/media", Detail: "GET https://a.blob.core.windows.net/media?" + url.QueryEscape(sig) + ": 403", Fix: "check " + sig},
		{Check: "cloud", Detail: "refused key st0re-k3y-abcdef (ab)"},
	}
	hideSecrets(results, []string{sig, "st0re-k3y-abcdef", "ab", ""})
	for _, r := range results {
		all := r.Check + r.Detail + r.Fix
		if strings.Contains(all, "Zm9v") || strings.Contains(all, "st0re-k3y") {
			t.Errorf("the report shows a secret: %+v", r)
		}
	}
	if results[1].Detail != "refused key xxxxx (ab)" || results[0].Fix != "check xxxxx" {
		t.Errorf("results %+v", results)
	}
}

// The discovery port is checked only where the server opens it: with a loopback lan.bind
// discovery does not run, so another program holding the port is no fault of the service.
func TestDiscoveryPortCheckedOnlyWhenDiscoveryRuns(t *testing.T) {
	held, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg := config.Default()
	cfg.LAN.FrontDoor, cfg.LAN.Services = 0, config.Services{} // the UDP port alone
	cfg.Discovery.UDP.Port = held.LocalAddr().(*net.UDPAddr).Port
	udp := func(rs []Result) []Result {
		var out []Result
		for _, r := range rs {
			if strings.HasPrefix(r.Check, "udp ") {
				out = append(out, r)
			}
		}
		return out
	}
	if rs := udp(checkPorts(cfg, "")); len(rs) != 1 || rs[0].Status != Fail {
		t.Errorf("discovery on, its port held: %+v; want one failed check", rs)
	}
	cfg.LAN.Bind = "127.0.0.1"
	if rs := udp(checkPorts(cfg, "")); len(rs) != 0 {
		t.Errorf("lan.bind on loopback (no discovery): %+v; want no check of the UDP port", rs)
	}
}
