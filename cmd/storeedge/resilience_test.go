package main

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/tools/testenv"
)

func rows(st status, collection string) int64 {
	for _, c := range st.Collections {
		if c.Name == collection {
			return c.Rows
		}
	}
	return -1
}

// TestKilledDuringFirstSync kills the daemon with SIGKILL at random moments of its first sync and
// restarts it each time: in the end the shop holds exactly the cloud's catalog and the database is
// sound.
func TestKilledDuringFirstSync(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	// Each page of the streamed feed takes 10 ms more, so the first sync (about 1,000 pages) lasts
	// longer than ten lives on a quiet, fast machine too: the kills land in the middle of it.
	cloud := startCloud(t, "-products", "60000", "-seed", "9", "-page-delay", "10ms")
	dir := t.TempDir()
	opts := shopOptions{dataDir: dir, cloud: cloud.url, sets: []string{"cloud.page_size=200"}}
	kills := 0
	var last int64
	for kills < 10 {
		s := startShop(t, opts)
		// Wait until this life has applied something, then let it run a random moment more.
		waitFor(t, s, "sync progress", 2*time.Minute, func() bool {
			st := s.status(t)
			n := rows(st, cloudapi.Products) + rows(st, cloudapi.Prices) + rows(st, cloudapi.Stock)
			return n > last || st.WAN.State == "ok"
		})
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
		if s.caughtUp(t) {
			t.Fatalf("first sync finished after %d kills; the catalog is too small to kill it 10 times", kills)
		}
		s.kill()
		kills++
		db, err := storage.Open(context.Background(), filepath.Join(dir, "storeedge.db"))
		if err != nil {
			t.Fatalf("after kill %d: %v", kills, err)
		}
		n, _ := db.Count(context.Background(), cloudapi.Products)
		m, _ := db.Count(context.Background(), cloudapi.Prices)
		o, _ := db.Count(context.Background(), cloudapi.Stock)
		db.Close()
		last = n + m + o
		t.Logf("kill %d: %d products, %d prices, %d stock rows stored", kills, n, m, o)
	}
	s := startShop(t, opts)
	waitFor(t, s, "first sync after the kills", 5*time.Minute, func() bool { return s.caughtUp(t) })
	assertSameCatalog(t, s, cloud)
	s.stop(t)
	db, err := storage.Open(context.Background(), filepath.Join(dir, "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.IntegrityCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Search(context.Background(), "a", 0, 1)
	if len(got) == 0 {
		t.Fatal("search index empty after the interrupted first sync")
	}
}

// TestConvergesUnderCloudFaults runs the sync against a cloud that fails often in every way the
// contract allows.
func TestConvergesUnderCloudFaults(t *testing.T) {
	cloud := startCloud(t, "-products", "5000", "-seed", "3", "-error-rate", "0.3", "-rate-limit-rate", "0.05",
		"-retry-after", "1", "-cut-rate", "0.3", "-malformed-rate", "0.005")
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: []string{"cloud.page_size=250"}})
	// The cloud keeps failing a third of the requests, so the WAN is seldom "ok" at any instant:
	// wait for the data instead, every collection synced to the end of its feed.
	waitFor(t, s, "every collection caught up through the faults", 5*time.Minute, func() bool {
		for _, c := range s.status(t).Collections {
			if c.LastSuccess == nil || c.Remaining != 0 || c.Cursor == "" || c.Cursor[0] != 'd' {
				return false
			}
		}
		return true
	})
	st := s.status(t)
	quarantined := map[string]int64{}
	for _, c := range st.Collections {
		quarantined[c.Name] = c.Quarantined
	}
	for _, coll := range []string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock} {
		want := cloud.export(t, coll)
		got := s.readAll(t, coll)
		var corrupted int64
		for id, w := range want {
			if w.Corrupted {
				corrupted++
				if g, ok := got[id]; ok && g.Rev >= w.Rev {
					t.Errorf("%s %s: malformed revision served", coll, id)
				}
				continue
			}
			if g, ok := got[id]; !ok || g.Rev != w.Rev {
				t.Errorf("%s %s: shop has rev %d, cloud %d", coll, id, g.Rev, w.Rev)
			}
		}
		if corrupted == 0 || quarantined[coll] != corrupted {
			t.Errorf("%s: status reports %d quarantined, the cloud sent %d malformed", coll, quarantined[coll], corrupted)
		}
	}
	var q struct {
		Quarantine []struct {
			Collection string `json:"collection"`
			ID         string `json:"id"`
			Reason     string `json:"reason"`
		} `json:"quarantine"`
	}
	s.get(t, "/api/v1/status", &q)
	if len(q.Quarantine) == 0 || q.Quarantine[0].Reason == "" {
		t.Fatalf("status lists no quarantined document with its reason: %+v", q.Quarantine)
	}
}

// TestSyncThroughProxies syncs through a real HTTP CONNECT proxy and a real SOCKS5 proxy, and
// reports a refusing proxy clearly.
func TestSyncThroughProxies(t *testing.T) {
	cloud := startCloud(t, "-products", "500")
	cloudPort := cloud.url[strings.LastIndex(cloud.url, ":")+1:]
	logFile := filepath.Join(t.TempDir(), "tinyproxy.log")
	for _, tc := range []struct {
		name, proxy string
		evidence    func() bool
	}{
		{"http-connect", "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{LogFile: logFile}), func() bool {
			b, _ := os.ReadFile(logFile)
			return strings.Contains(string(b), "CONNECT 127.0.0.1:"+cloudPort)
		}},
		{"http-connect-auth", "http://shop:s3cret@" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{BasicAuthUser: "shop", BasicAuthPass: "s3cret"}), nil},
		{"socks5", "socks5://" + testenv.StartDante(t), nil},
		{"socks5-auth", "socks5://shop:s3cret@" + testenv.StartMicrosocks(t, "shop", "s3cret"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: []string{"wan.proxy=" + tc.proxy}})
			waitFor(t, s, "sync through the proxy", time.Minute, func() bool { return s.caughtUp(t) })
			if st := s.status(t); !strings.Contains(st.WAN.Route, "via") {
				t.Errorf("status route %q does not name the proxy", st.WAN.Route)
			}
			if tc.evidence != nil && !tc.evidence() {
				t.Error("the proxy's log shows no tunnel to the cloud")
			}
			assertSameCatalog(t, s, cloud)
			if strings.Contains(s.log.String(), "s3cret") {
				t.Error("the proxy password appears in the log")
			}
			s.stop(t)
		})
	}
	for _, tc := range []struct{ name, proxy, want string }{
		{"connect-refused", "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{ConnectPorts: []int{443}}), "403"},
		{"wrong-password", "http://shop:wrong@" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{BasicAuthUser: "shop", BasicAuthPass: "s3cret"}), "authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: []string{"wan.proxy=" + tc.proxy}})
			waitFor(t, s, "the proxy failure in status", time.Minute, func() bool { return s.status(t).WAN.State == "proxy_error" })
			st := s.status(t)
			if !strings.Contains(st.WAN.LastError, tc.want) || !strings.Contains(st.WAN.LastError, "proxy") {
				t.Errorf("status error %q should name the proxy and %s", st.WAN.LastError, tc.want)
			}
			if strings.Contains(st.WAN.LastError, "wrong") || strings.Contains(s.log.String(), "shop:wrong") {
				t.Error("the proxy password leaks")
			}
		})
	}
}

// TestServesOfflineWithDataAge starts the daemon with the cloud gone: it serves the last synced
// catalog and tells its age.
func TestServesOfflineWithDataAge(t *testing.T) {
	cloud := startCloud(t, "-products", "300")
	dir := t.TempDir()
	s := startShop(t, shopOptions{dataDir: dir, cloud: cloud.url})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	s.stop(t)
	cloud.stop()

	s = startShop(t, shopOptions{dataDir: dir, cloud: cloud.url})
	var p lanItem
	resp := s.get(t, "/api/v1/catalog/products/P0000001", &p)
	if p.ID != "P0000001" {
		t.Fatalf("offline: product P0000001 not served: %+v", p)
	}
	if resp.Header.Get("Storeedge-Synced-At") == "" || resp.Header.Get("Storeedge-Synced-At") == "never" || resp.Header.Get("Storeedge-Data-Age") == "" {
		t.Fatalf("offline answer does not tell the data age: %v", resp.Header)
	}
	waitFor(t, s, "the WAN failure in status", time.Minute, func() bool { return s.status(t).WAN.State == "unreachable" })
	for _, c := range s.status(t).Collections {
		if c.LastSuccess == nil || c.DataAgeSeconds == nil {
			t.Errorf("offline status of %s lacks the data age", c.Name)
		}
	}
	s.stop(t)
}

// TestInvalidConfigurationIsRefused checks that bad values stop the process before it starts,
// with exit code 78 (EX_CONFIG: the unit does not restart it; a crash exits 2) and the key and
// the reason.
func TestInvalidConfigurationIsRefused(t *testing.T) {
	bin, _ := binaries(t)
	badFile := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(badFile, []byte("cloud:\n  url: https://api.example.com\n  store_key: k\n  page_sise: 10\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"page size", []string{"--set", "cloud.store_key=k", "--set", "cloud.page_size=0"}, []string{"cloud.page_size", "0"}},
		{"url scheme", []string{"--set", "cloud.store_key=k", "--set", "cloud.url=ftp://cloud"}, []string{"cloud.url"}},
		{"missing key", nil, []string{"cloud.store_key"}},
		{"port", []string{"--set", "cloud.store_key=k", "--set", "lan.front_door=70000"}, []string{"lan.front_door", "70000"}},
		{"proxy scheme", []string{"--set", "cloud.store_key=k", "--set", "wan.proxy=ftp://user:hunter2@proxy:21"}, []string{"wan.proxy"}},
		{"unknown file key", []string{"--config", badFile}, []string{"bad.yaml:4", "cloud.page_sise", "did you mean cloud.page_size"}},
		{"unknown flag key", []string{"--set", "cloud.store_key=k", "--set", "cloud.nope=1"}, []string{"cloud.nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"run", "--set", "data_dir=" + t.TempDir()}, tc.args...)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitCodeConfig {
				t.Fatalf("exit %v, want %d\n%s", err, exitCodeConfig, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("message lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "hunter2") {
				t.Errorf("a password is printed:\n%s", out)
			}
		})
	}
}

// TestPortInUseIsExplained starts the daemon on a port another program holds.
func TestPortInUseIsExplained(t *testing.T) {
	bin, _ := binaries(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	cmd := exec.Command(bin, "run", "--set", "data_dir="+t.TempDir(), "--set", "cloud.store_key=k", "--set", "cloud.sync=false",
		"--set", "lan.bind=127.0.0.1", "--set", "lan.front_door="+port,
		"--set", "lan.services.catalog="+strconv.Itoa(testenv.FreePort(t)), "--set", "lan.services.admin="+strconv.Itoa(testenv.FreePort(t)))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1\n%s", err, out)
	}
	for _, w := range []string{"lan.front_door", port, "already"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("message lacks %q:\n%s", w, out)
		}
	}
}

// TestGoingToProductionIsLogged restarts a shop in production mode after test mode.
func TestGoingToProductionIsLogged(t *testing.T) {
	dir := t.TempDir()
	s := startShop(t, shopOptions{dataDir: dir, cloud: "http://127.0.0.1:1", sets: []string{"cloud.sync=false"}})
	var st struct {
		Mode string `json:"mode"`
	}
	s.get(t, "/api/v1/status", &st)
	if st.Mode != "test" {
		t.Fatalf("a new shop runs in %q mode, want test", st.Mode)
	}
	s.stop(t)
	s = startShop(t, shopOptions{dataDir: dir, cloud: "http://127.0.0.1:1", sets: []string{"cloud.sync=false", "shop.mode=production"}})
	s.get(t, "/api/v1/status", &st)
	s.stop(t)
	if st.Mode != "production" || !strings.Contains(s.log.String(), `msg="shop mode changed by configuration" from=test to=production`) {
		t.Fatalf("mode %q; log:\n%s", st.Mode, s.log)
	}
}

// After a kill (as after a power cut) the server says at start that the order numbers and event
// ids jump past the last ones given out (configuration.md, "Numbers after a power cut"); after
// a clean stop it has nothing to say.
func TestNumbersJumpSaidAfterAKill(t *testing.T) {
	const said = "order numbers and event ids go on past the last ones given out"
	dir := t.TempDir()
	opts := shopOptions{dataDir: dir, cloud: "http://127.0.0.1:1", sets: []string{"cloud.sync=false"}}
	s := startShop(t, opts)
	s.stop(t)
	s = startShop(t, opts)
	s.waitLog(t, "storeedge: serving", 30*time.Second)
	if strings.Contains(s.log.String(), said) {
		t.Fatalf("after a clean stop the server says the numbers jump:\n%s", s.log)
	}
	s.kill()
	s = startShop(t, opts)
	s.waitLog(t, "storeedge: serving", 30*time.Second)
	if !strings.Contains(s.log.String(), said) {
		t.Fatalf("after a kill the server does not say the numbers jump:\n%s", s.log)
	}
	s.stop(t)
}
