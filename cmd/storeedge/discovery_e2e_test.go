package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/tools/testenv"
)

// deviceEnv makes the test binary play a device (see TestMain): it finds the server, uses what
// it found, and prints JSON on stdout.
const deviceEnv = "STOREEDGE_E2E_DEVICE"

func device(role string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	switch role {
	case "flood":
		return flood(ctx)
	case "seen":
		return printSeen(ctx)
	case "find": // a probe, and what it found
		found, err := discovery.Probe(ctx, discovery.ProbeOptions{First: true})
		if err != nil {
			return fail(err)
		}
		json.NewEncoder(os.Stdout).Encode(found[0])
		return 0
	}
	var found []discovery.Found
	var err error
	switch role {
	case "probe":
		found, err = discovery.Probe(ctx, discovery.ProbeOptions{First: true})
	case "browse":
		found, err = discovery.Browse(ctx, discovery.BrowseOptions{First: true})
	default:
		return fail(fmt.Errorf("unknown role"))
	}
	if err != nil {
		return fail(err)
	}
	f := found[0]
	// Use what was found: say hello to the server, then read the seen list on the admin port it
	// announced.
	if err := discovery.SayHello(discovery.Hello{DeviceID: "e2e-" + role, Kind: "kiosk", PushPort: 8081},
		netip.AddrPortFrom(f.From.Addr(), config.DefaultDiscoveryUDPPort)); err != nil {
		return fail(err)
	}
	var seen []byte
	for !strings.Contains(string(seen), `"e2e-`+role+`"`) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		if seen, err = getSeen(f); err != nil {
			return fail(err)
		}
	}
	json.NewEncoder(os.Stdout).Encode(struct {
		Found discovery.Found
		Seen  json.RawMessage
	}{f, json.RawMessage(seen)})
	return 0
}

// printSeen finds the server by a probe and prints admin's list of the devices seen.
func printSeen(ctx context.Context) int {
	found, err := discovery.Probe(ctx, discovery.ProbeOptions{First: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "seen:", err)
		return 1
	}
	body, err := getSeen(found[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "seen:", err)
		return 1
	}
	os.Stdout.Write(body)
	return 0
}

// getSeen reads admin's list of the devices seen, on the admin port f announced.
func getSeen(f discovery.Found) ([]byte, error) {
	admin := 0
	for _, p := range f.Ports {
		if p.Service == "admin" {
			admin = p.Port
		}
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d/api/v1/admin/discovery/seen", f.From.Addr(), admin), nil)
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s %s", resp.Status, body)
	}
	return body, err
}

// flood sends the server (found first by a probe) garbage of every kind, then a flood of valid
// probes, counts what comes back, and prints that with the server's discovery counters.
func flood(ctx context.Context) int {
	found, err := discovery.Probe(ctx, discovery.ProbeOptions{First: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		return 1
	}
	srv := netip.AddrPortFrom(found[0].From.Addr(), config.DefaultDiscoveryUDPPort)
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(srv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		return 1
	}
	defer c.Close()
	probe, _ := discovery.EncodeProbe(discovery.ProbeRequest{Nonce: [discovery.NonceSize]byte{42}})
	bad := [][]byte{
		[]byte("garbage"), make([]byte, 1100), []byte("GET / HTTP/1.1\r\n\r\n"), // garbage
		[]byte("SEDP"), probe[:12], // truncated
		probe[:100], probe[:1023], // undersized
		make([]byte, 2000), // oversized
	}
	for _, b := range bad {
		c.Write(b)
		time.Sleep(5 * time.Millisecond)
	}
	const probes = 300
	start := time.Now()
	for range probes {
		c.Write(probe)
	}
	answers, others := 0, 0
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		if d, err := discovery.Decode(buf[:n]); err == nil && d.Type == discovery.TypeAnswer && d.Answer.Nonce == [discovery.NonceSize]byte{42} {
			answers++
		} else {
			others++
		}
	}
	elapsed := time.Since(start)
	req, _ := http.NewRequest(http.MethodGet, found[0].URL+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		return 1
	}
	defer resp.Body.Close()
	var st struct {
		Discovery discovery.Status `json:"discovery"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Discovery.UDP == nil {
		fmt.Fprintln(os.Stderr, "flood: status:", err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(struct {
		Answers, Others int
		Elapsed         time.Duration
		UDP             discovery.UDPStatus
	}{answers, others, elapsed, *st.Discovery.UDP})
	return 0
}

// TestDaemonIsDiscoveredAcrossNamespaces runs the storeedge binary in one network namespace and a
// device in another: the device finds it by UDP probe and by mDNS, reaches the admin port it
// announces, and shows in the seen list; "storeedge discovery" on the server reports all well;
// the daemon stops cleanly.
func TestDaemonIsDiscoveredAcrossNamespaces(t *testing.T) {
	srvNS, devNS := testenv.NetNSPair(t)
	bin, _ := binaries(t)
	sets := []string{
		"data_dir=" + t.TempDir(), "cloud.store_key=k", "admin.token=" + e2eAdminToken, "cloud.sync=false", "server_id=shop-e2e", "shop.name=E2E shop",
		"lan.front_door=8080", "lan.services.catalog=8000", "lan.services.admin=8005",
		"lan.services.media=0", "lan.services.orders=0", "lan.services.devices=0", "lan.services.events=0",
		"discovery.announce_interval=1s",
	}
	srv := startNetnsShop(t, srvNS, sets)
	log := srv.log

	type result struct {
		Found discovery.Found
		Seen  struct{ Items []discovery.SeenDevice }
	}
	wantURL := "http://" + srvNS.Addr.Addr().String() + ":8080"
	for _, role := range []string{"probe", "browse"} {
		c := devNS.Command(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), deviceEnv+"="+role)
		var stderr testenv.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("device %s: %v\n%s\nserver:\n%s", role, err, stderr.String(), log)
		}
		var r result
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("device %s: %v: %s", role, err, out)
		}
		if r.Found.ServerID != "shop-e2e" || r.Found.Name != "E2E shop" || r.Found.URL != wantURL || r.Found.After > 2*time.Second {
			t.Errorf("device %s found %+v, want %s within 2s", role, r.Found, wantURL)
		}
		ports := map[string]int{}
		for _, p := range r.Found.Ports {
			ports[p.Service] = p.Port
		}
		if len(ports) != 3 || ports["front_door"] != 8080 || ports["catalog"] != 8000 || ports["admin"] != 8005 {
			t.Errorf("device %s: ports %v, want the three open ones", role, r.Found.Ports)
		}
		ok := false
		for _, d := range r.Seen.Items {
			ok = ok || d.DeviceID == "e2e-"+role && d.Addr == devNS.Addr.Addr().String()
		}
		if !ok {
			t.Errorf("device %s not in the seen list: %+v", role, r.Seen.Items)
		}
	}

	// Garbage and a flood from a device: no answer to garbage, each drop counted by cause, the
	// flood held to the per-source rate (burst 5, one per 500 ms).
	c := devNS.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), deviceEnv+"=flood")
	var floodErr testenv.Buffer
	c.Stderr = &floodErr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("flood: %v\n%s", err, floodErr.String())
	}
	var fl struct {
		Answers, Others int
		Elapsed         time.Duration
		UDP             discovery.UDPStatus
	}
	if err := json.Unmarshal(out, &fl); err != nil {
		t.Fatalf("flood: %v: %s", err, out)
	}
	u := fl.UDP
	if allowed := 5 + int(fl.Elapsed/(500*time.Millisecond)) + 1; fl.Answers == 0 || fl.Answers > allowed || fl.Others != 0 {
		t.Errorf("flood: %d answers (want 1 to %d) and %d other datagrams back", fl.Answers, allowed, fl.Others)
	}
	if u.Garbage != 3 || u.Truncated != 2 || u.Undersized != 2 || u.Oversized != 1 || u.RateLimited == 0 {
		t.Errorf("flood: counters %+v", u)
	}

	// The check shop IT runs on the server.
	check := srvNS.Command(bin, append([]string{"discovery"}, setArgs(sets)...)...)
	out, err = check.CombinedOutput()
	if err != nil {
		t.Errorf("storeedge discovery: %v\n%s", err, out)
	}
	for _, want := range []string{"announcing on " + srvNS.Iface, "bound and answering: shop-e2e", "instance shop-e2e seen at " + wantURL, "lo ", "loopback"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("storeedge discovery output lacks %q:\n%s", want, out)
		}
	}
	// On another port nothing answers: the check fails, and says the port is free.
	out, err = srvNS.Command(bin, append([]string{"discovery", "--timeout", "500ms"}, setArgs(append(sets, "discovery.udp.port=57999"))...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "the port is free") {
		t.Errorf("storeedge discovery on a port nobody holds: %v\n%s", err, out)
	}

	srv.stop(t)
	if strings.Contains(log.String(), "[ERR] zeroconf") {
		t.Errorf("mDNS errors in the log:\n%s", log)
	}
}

// netnsShop is the storeedge binary running in a network namespace.
type netnsShop struct {
	cmd    *exec.Cmd
	log    *testenv.Buffer
	exited chan error
}

// startNetnsShop runs "storeedge run" with sets in ns and waits until its mDNS service is
// registered.
func startNetnsShop(t *testing.T, ns testenv.NetNS, sets []string) *netnsShop {
	t.Helper()
	bin, _ := binaries(t)
	s := &netnsShop{log: &testenv.Buffer{}, exited: make(chan error, 1)}
	s.cmd = ns.Command(bin, append([]string{"run"}, setArgs(sets)...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
	if !s.log.WaitFor("mDNS service registered", 20*time.Second, nil) {
		t.Fatalf("storeedge did not start discovery:\n%s", s.log)
	}
	return s
}

// stop sends SIGTERM and wants a clean exit.
func (s *netnsShop) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("storeedge exit after SIGTERM: %v\n%s", err, s.log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("storeedge did not stop within 30s\n%s", s.log)
	}
}

var (
	simOnce sync.Once
	simBin  string
	simErr  error
)

// devicesimBinary builds cmd/devicesim once per test run, beside the other binaries.
func devicesimBinary(t *testing.T) string {
	t.Helper()
	binaries(t) // makes binDir
	simOnce.Do(func() {
		simBin = filepath.Join(binDir, "devicesim")
		if out, err := exec.Command("go", "build", "-o", simBin, "../devicesim").CombinedOutput(); err != nil {
			simErr = fmt.Errorf("go build devicesim: %v\n%s", err, out)
		}
	})
	if simErr != nil {
		t.Fatal(simErr)
	}
	return simBin
}

// TestDevicesimDiscoversAndPairs runs the reference device in one namespace and storeedge in
// another: devicesim -discover udp and -discover mdns each find the server with no address
// given, say hello, and pair through the URL they found; admin's seen list then shows each as
// paired.
func TestDevicesimDiscoversAndPairs(t *testing.T) {
	srvNS, devNS := testenv.NetNSPair(t)
	sim := devicesimBinary(t)
	srv := startNetnsShop(t, srvNS, []string{
		"data_dir=" + t.TempDir(), "cloud.store_key=k", "cloud.sync=false", "server_id=shop-sim", "shop.name=Sim shop",
		"admin.token=" + e2eAdminToken, "devices.enrollment_secret=" + e2eEnrollment,
		"lan.front_door=8080", "lan.services.admin=8005",
		"lan.services.catalog=0", "lan.services.media=0", "lan.services.orders=0", "lan.services.devices=0", "lan.services.events=0",
	})
	wantURL := "http://" + srvNS.Addr.Addr().String() + ":8080"
	for _, how := range []string{"udp", "mdns"} {
		var out testenv.Buffer
		cmd := devNS.Command(sim, "-discover", how, "-enrollment-secret", e2eEnrollment, "-kind", "kiosk", "-name", "sim-"+how,
			"-discover-timeout", "2s")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var exitErr error
		exited := make(chan struct{})
		go func() { exitErr = cmd.Wait(); close(exited) }()
		if !out.WaitFor("paired as", 15*time.Second, exited) {
			select {
			case <-exited:
				t.Fatalf("devicesim -discover %s exited: %v\n%s\nserver:\n%s", how, exitErr, &out, srv.log)
			default:
			}
		}
		cmd.Process.Kill()
		<-exited
		if !strings.Contains(out.String(), "found shop-sim \"Sim shop\"") || !strings.Contains(out.String(), "at "+wantURL+" by "+how) ||
			!strings.Contains(out.String(), "paired as") {
			t.Errorf("devicesim -discover %s:\n%s", how, &out)
		}
	}

	c := devNS.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), deviceEnv+"=seen")
	var stderr testenv.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("seen: %v\n%s", err, stderr.String())
	}
	var seen struct{ Items []discovery.SeenDevice }
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatalf("seen: %v: %s", err, out)
	}
	paired := map[string]bool{}
	for _, d := range seen.Items {
		paired[d.DeviceID] = d.PairedAs != "" && d.Addr == devNS.Addr.Addr().String() && d.Kind == "kiosk"
	}
	if !paired["sim-udp"] || !paired["sim-mdns"] {
		t.Errorf("seen list %+v, want sim-udp and sim-mdns paired", seen.Items)
	}
	srv.stop(t)
}

func setArgs(sets []string) []string {
	var args []string
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return args
}
