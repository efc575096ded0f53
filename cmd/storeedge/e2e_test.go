package main

// End-to-end tests with real processes: the storeedge binary against the cloudsim binary over
// real HTTP, read back through the LAN API like a device would.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/tools/testenv"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds storeedge and cloudsim once per test run.
func binaries(t *testing.T) (storeedge, cloudsim string) {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "storeedge-e2e-")
		if binErr != nil {
			return
		}
		for _, pkg := range []string{"storeedge", "cloudsim"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, pkg), "../"+pkg).CombinedOutput()
			if err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "storeedge"), filepath.Join(binDir, "cloudsim")
}

func TestMain(m *testing.M) {
	if role := os.Getenv(deviceEnv); role != "" {
		os.Exit(device(role)) // this binary plays a device, in a network namespace
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// cloudProc is a running cloudsim.
type cloudProc struct {
	url string
	cmd *exec.Cmd
	log *testenv.Buffer
}

func startCloud(t *testing.T, args ...string) *cloudProc {
	t.Helper()
	_, bin := binaries(t)
	c := &cloudProc{log: &testenv.Buffer{}}
	c.cmd = exec.Command(bin, append([]string{"-listen", "127.0.0.1:0", "-store-key", "e2e-key"}, args...)...)
	c.cmd.Stderr = c.log
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("cloudsim did not say where it listens: %v\n%s", err, c.log)
	}
	c.url = strings.TrimSpace(strings.TrimPrefix(line, "cloudsim listening on "))
	if u, err := url.Parse(c.url); err == nil {
		if port, err := strconv.Atoi(u.Port()); err == nil {
			testenv.MarkTaken(port) // stopped, it must not become a daemon's own port
		}
	}
	go io.Copy(io.Discard, out)
	return c
}

func (c *cloudProc) stop() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

func (c *cloudProc) post(t *testing.T, path string, body any, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(c.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: %s %s", path, resp.Status, msg)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

// simStats is what cloudsim counts of the requests it received.
type simStats struct {
	Requests int64 `json:"requests"`        // /v1 requests
	Configs  int64 `json:"config_requests"` // readings of the remote configuration
}

func (c *cloudProc) stats(t *testing.T) simStats {
	t.Helper()
	var stats simStats
	resp, err := http.Get(c.url + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	return stats
}

// configRequests is how many times the shop has read the cloud's remote configuration.
func (c *cloudProc) configRequests(t *testing.T) int64 { return c.stats(t).Configs }

type exportedItem struct {
	ID        string          `json:"id"`
	Rev       int64           `json:"rev"`
	Doc       json.RawMessage `json:"doc"`
	Corrupted bool            `json:"corrupted"`
}

// export is the cloud's current live items of a collection.
func (c *cloudProc) export(t *testing.T, collection string) map[string]exportedItem {
	t.Helper()
	resp, err := http.Get(c.url + "/_sim/export/" + collection)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]exportedItem{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var x exportedItem
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			t.Fatal(err)
		}
		out[x.ID] = x
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// shop is a running storeedge daemon.
type shop struct {
	base    string // front door URL
	admin   string // admin port URL
	dataDir string
	cmd     *exec.Cmd
	log     *testenv.Buffer
	done    chan struct{}
}

type shopOptions struct {
	dataDir string
	cloud   string
	sets    []string
	config  string // a configuration file, given with --config
}

func startShop(t *testing.T, o shopOptions) *shop {
	t.Helper()
	bin, _ := binaries(t)
	front, admin := testenv.FreePort(t), testenv.FreePort(t)
	args := []string{"run",
		"--set", "data_dir=" + o.dataDir,
		"--set", "cloud.url=" + o.cloud,
		"--set", "cloud.store_key=e2e-key",
		"--set", "admin.token=" + e2eAdminToken,
		"--set", "devices.enrollment_secret=" + e2eEnrollment,
		"--set", "cloud.poll_interval=1s",
		"--set", "wan.proxy=direct",
		"--set", "lan.bind=127.0.0.1",
		"--set", "lan.front_door=" + strconv.Itoa(front),
		"--set", "lan.services.catalog=" + strconv.Itoa(testenv.FreePort(t)),
		"--set", "lan.services.admin=" + strconv.Itoa(admin),
		"--set", "lan.services.media=0", "--set", "lan.services.orders=0", "--set", "lan.services.devices=0", "--set", "lan.services.events=0",
	}
	for _, s := range o.sets {
		args = append(args, "--set", s)
	}
	if o.config != "" {
		args = append(args, "--config", o.config)
	}
	s := &shop{base: "http://127.0.0.1:" + strconv.Itoa(front), admin: "http://127.0.0.1:" + strconv.Itoa(admin), dataDir: o.dataDir, log: &testenv.Buffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.kill() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testenv.WaitListening(ctx, "127.0.0.1:"+strconv.Itoa(front)); err != nil {
		t.Fatalf("storeedge did not start listening: %v\n%s", err, s.log)
	}
	return s
}

func (s *shop) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// stop sends SIGTERM and waits for a clean exit.
func (s *shop) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("storeedge did not stop within 30s of SIGTERM\n%s", s.log)
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("storeedge exited %d after SIGTERM\n%s", code, s.log)
	}
}

// Credentials of the e2e shops.
const (
	e2eAdminToken = "e2e-admin-token-0123456789"
	e2eEnrollment = "e2e-enrollment-secret-0123"
)

// e2eDevices holds the tokens of the devices the tests paired, by data directory and device
// name, so that a restarted shop's devices keep theirs.
var e2eDevices sync.Map

// deviceToken returns the token of the device with that name, pairing it with the enrollment
// secret on first use.
func (s *shop) deviceToken(name string) (string, error) {
	key := s.dataDir + "\x00" + name
	if v, ok := e2eDevices.Load(key); ok {
		return v.(string), nil
	}
	body := fmt.Sprintf(`{"enrollment_secret":%q,"kind":"pos","name":%q}`, e2eEnrollment, name)
	resp, err := http.Post(s.base+"/api/v1/devices/pair", "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var creds struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &creds) != nil {
		return "", fmt.Errorf("pair %s: %s %s", name, resp.Status, b)
	}
	v, _ := e2eDevices.LoadOrStore(key, creds.Token)
	return v.(string), nil
}

// request makes a request with the credential its route wants: the admin token on admin
// routes, else the token of the device "e2e".
func (s *shop) request(t *testing.T, method, path string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	token := e2eAdminToken
	if path != "/api/v1/status" && !strings.HasPrefix(path, "/api/v1/admin/") {
		if token, err = s.deviceToken("e2e"); err != nil {
			t.Fatalf("%v\n%s", err, s.log)
		}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

func (s *shop) get(t *testing.T, path string, out any) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(s.request(t, http.MethodGet, path, nil))
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, s.log)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s %s", path, resp.Status, body)
		}
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return resp
}

type status struct {
	WAN struct {
		State     string `json:"state"`
		LastError string `json:"last_error"`
		Route     string `json:"route"`
	} `json:"wan"`
	Collections []struct {
		Name           string  `json:"name"`
		Cursor         string  `json:"cursor"`
		LastSuccess    *string `json:"last_success"`
		DataAgeSeconds *int64  `json:"data_age_seconds"`
		Remaining      int64   `json:"remaining"`
		Rows           int64   `json:"rows"`
		Quarantined    int64   `json:"quarantined"`
		LastError      string  `json:"last_error"`
	} `json:"collections"`
}

func (s *shop) status(t *testing.T) status {
	var st status
	s.get(t, "/api/v1/status", &st)
	return st
}

// waitFor polls cond until it holds. Another process is observed, so polling its status is the
// signal; the deadline only bounds a failure.
func waitFor(t *testing.T, s *shop, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-s.done:
			t.Fatalf("storeedge exited while waiting for %s\n%s", what, s.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; status %+v\n%s", timeout, what, s.status(t), s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLog waits until storeedge's output holds text.
func (s *shop) waitLog(t *testing.T, text string, timeout time.Duration) {
	t.Helper()
	if !s.log.WaitFor(text, timeout, s.done) {
		select {
		case <-s.done:
			t.Fatalf("storeedge exited before it said %q\n%s", text, s.log)
		default:
			t.Fatalf("storeedge did not say %q within %v\n%s", text, timeout, s.log)
		}
	}
}

// caughtUp reports whether the last pass reached the cloud and every collection is current.
func (s *shop) caughtUp(t *testing.T) bool {
	st := s.status(t)
	if st.WAN.State != "ok" {
		return false
	}
	for _, c := range st.Collections {
		if c.LastSuccess == nil || c.Remaining != 0 {
			return false
		}
	}
	return true
}

type lanItem struct {
	ID  string          `json:"id"`
	Rev int64           `json:"rev"`
	Doc json.RawMessage `json:"doc"`
}

// readAll pages through a collection on the LAN API like a device would.
func (s *shop) readAll(t *testing.T, collection string) map[string]lanItem {
	t.Helper()
	out := map[string]lanItem{}
	after := ""
	for {
		var page struct {
			Items []lanItem `json:"items"`
			Next  string    `json:"next"`
		}
		s.get(t, "/api/v1/catalog/"+collection+"?limit=1000&after="+url.QueryEscape(after), &page)
		for _, it := range page.Items {
			if _, dup := out[it.ID]; dup {
				t.Fatalf("%s %s served twice while paging", collection, it.ID)
			}
			out[it.ID] = it
		}
		if page.Next == "" {
			return out
		}
		after = page.Next
	}
}

// assertSameCatalog checks that the LAN API serves exactly the cloud's products, prices and stock.
func assertSameCatalog(t *testing.T, s *shop, c *cloudProc) {
	t.Helper()
	for _, coll := range []string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock} {
		want := c.export(t, coll)
		got := s.readAll(t, coll)
		bad := 0
		for id, w := range want {
			g, ok := got[id]
			switch {
			case !ok:
				t.Errorf("%s %s: in the cloud, not served by the shop", coll, id)
			case g.Rev != w.Rev || !bytes.Equal(g.Doc, w.Doc):
				t.Errorf("%s %s: shop has rev %d, cloud rev %d", coll, id, g.Rev, w.Rev)
			default:
				continue
			}
			if bad++; bad > 10 {
				t.FailNow()
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				t.Errorf("%s %s: served by the shop, gone from the cloud", coll, id)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: shop serves %d, cloud has %d", coll, len(got), len(want))
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

func TestEndToEndSyncAndChanges(t *testing.T) {
	cloud := startCloud(t, "-products", "20000", "-seed", "42")
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url})
	waitFor(t, s, "first sync", 3*time.Minute, func() bool { return s.caughtUp(t) })
	assertSameCatalog(t, s, cloud)

	// Barcode and search find what the catalog holds.
	products := cloud.export(t, cloudapi.Products)
	var p cloudapi.Product
	if err := json.Unmarshal(products["P0000123"].Doc, &p); err != nil {
		t.Fatal(err)
	}
	var byCode lanItem
	s.get(t, "/api/v1/catalog/barcodes/"+p.Barcodes[0], &byCode)
	if byCode.ID != "P0000123" {
		t.Fatalf("barcode %s gave %s", p.Barcodes[0], byCode.ID)
	}

	var changes struct {
		Items []struct {
			Seq int64 `json:"seq"`
		} `json:"items"`
	}
	// Where the device's delta feed stands now: the newest change.
	seq := int64(0)
	for since := int64(0); ; {
		s.get(t, fmt.Sprintf("/api/v1/catalog/changes?since=%d&limit=1000", since), &changes)
		if len(changes.Items) == 0 {
			break
		}
		since = changes.Items[len(changes.Items)-1].Seq
		seq = since
	}

	var res struct {
		Upserted map[string][]string `json:"upserted"`
		Deleted  map[string][]string `json:"deleted"`
	}
	cloud.post(t, "/_sim/mutate", map[string]int{"price_changes": 150, "deletes": 40}, &res)
	want := map[string]string{}
	for coll, ids := range res.Upserted {
		for _, id := range ids {
			want[coll+"/"+id] = "upsert"
		}
	}
	for coll, ids := range res.Deleted {
		for _, id := range ids {
			want[coll+"/"+id] = "delete"
		}
	}
	got := map[string]string{}
	waitFor(t, s, "the cloud's changes in the delta feed", time.Minute, func() bool {
		var d struct {
			Items []struct {
				Collection string `json:"collection"`
				ID         string `json:"id"`
				Op         string `json:"op"`
			} `json:"items"`
		}
		s.get(t, fmt.Sprintf("/api/v1/catalog/changes?since=%d&limit=1000", seq), &d)
		got = map[string]string{}
		for _, it := range d.Items {
			got[it.Collection+"/"+it.ID] = it.Op
		}
		return len(got) >= len(want)
	})
	for k, op := range want {
		if got[k] != op {
			t.Errorf("delta feed: %s is %q, want %q", k, got[k], op)
		}
	}
	if len(got) != len(want) {
		t.Errorf("delta feed has %d changes, the cloud made %d", len(got), len(want))
	}
	waitFor(t, s, "caught up after changes", time.Minute, func() bool { return s.caughtUp(t) })
	assertSameCatalog(t, s, cloud)
	for _, id := range res.Deleted[cloudapi.Products][:5] {
		if resp := s.get(t, "/api/v1/catalog/products/"+id, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("deleted product %s: %s", id, resp.Status)
		}
	}
	s.stop(t)
}
