//go:build linux

package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
	"github.com/storeedge/storeedge/tools/testenv"
)

// TestContainerImage reads the image scripts/package.sh builds with tools nobody in the project
// wrote (skopeo reads the archive and picks this machine's platform, umoci unpacks it into a
// runtime bundle, runc runs it), and runs it as docs/install.md says: the host's network, the
// settings in STOREEDGE_ variables. The daemon must run as its own account, not root, bind the
// front door on a port under 1024 with no capability but the one the image's binary carries,
// sync the catalog into its data volume, keep the shop's time zone (TZ) with no zone files in
// the image, and stop cleanly on SIGTERM; and fail as install.md says where a runtime takes the
// capability away.
func TestContainerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	testenv.RequireRoot(t)
	skopeo := testenv.Require(t, "skopeo")
	umoci := testenv.Require(t, "umoci")
	runc := testenv.Require(t, "runc")
	archive := "oci-archive:" + filepath.Join(packages(t), "storeedge_9.8.7_oci.tar") + ":9.8.7"

	// One index, both platforms.
	var index struct {
		Manifests []struct {
			Platform struct{ OS, Architecture, Variant string }
		}
	}
	if err := json.Unmarshal([]byte(sh(t, skopeo, "inspect", "--raw", archive)), &index); err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range index.Manifests {
		platforms = append(platforms, strings.TrimSuffix(m.Platform.OS+"/"+m.Platform.Architecture+"/"+m.Platform.Variant, "/"))
	}
	if got := strings.Join(platforms, " "); got != "linux/amd64 linux/arm64/v8" {
		t.Errorf("the image's platforms: %s, want linux/amd64 linux/arm64/v8", got)
	}

	// This machine's image, as a runtime sees it.
	var img struct {
		Architecture string `json:"architecture"`
		Config       struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			Volumes      map[string]any
			ExposedPorts map[string]any
			Labels       map[string]string
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(sh(t, skopeo, "inspect", "--config", archive)), &img); err != nil {
		t.Fatal(err)
	}
	c := img.Config
	if img.Architecture != runtime.GOARCH || c.User != "65532:65532" ||
		strings.Join(c.Entrypoint, " ") != "/usr/bin/storeedge" ||
		strings.Join(c.Cmd, " ") != "run --config /etc/storeedge/storeedge.yaml" ||
		c.Volumes["/var/lib/storeedge"] == nil || c.ExposedPorts["80/tcp"] == nil || c.ExposedPorts["57854/udp"] == nil ||
		c.Labels["org.opencontainers.image.version"] != "9.8.7" {
		t.Errorf("the image's configuration: %+v", img)
	}

	work := t.TempDir()
	sh(t, skopeo, "copy", "--quiet", archive, "oci:"+filepath.Join(work, "oci")+":storeedge")
	bundle := filepath.Join(work, "bundle")
	sh(t, umoci, "unpack", "--image", filepath.Join(work, "oci")+":storeedge", bundle)

	sim := cloudsim.New(cloudsim.Options{Products: 300, StoreKey: "image-key"})
	cloud := httptest.NewServer(sim.Handler())
	defer cloud.Close()
	frontDoor := privilegedPort(t)
	admin := testenv.FreePort(t)
	const token = "image-test-admin-token"
	env := []string{
		"STOREEDGE_CLOUD_URL=" + cloud.URL,
		"STOREEDGE_CLOUD_STORE_KEY=image-key",
		"STOREEDGE_SERVER_ID=image-test",
		"STOREEDGE_ADMIN_TOKEN=" + token,
		"STOREEDGE_WAN_PROXY=direct",
		"STOREEDGE_LAN_BIND=127.0.0.1",
		fmt.Sprintf("STOREEDGE_LAN_FRONT_DOOR=%d", frontDoor),
		fmt.Sprintf("STOREEDGE_LAN_SERVICES_ADMIN=%d", admin),
		"STOREEDGE_LAN_SERVICES_CATALOG=0", "STOREEDGE_LAN_SERVICES_MEDIA=0", "STOREEDGE_LAN_SERVICES_ORDERS=0",
		"STOREEDGE_LAN_SERVICES_DEVICES=0", "STOREEDGE_LAN_SERVICES_EVENTS=0",
		"STOREEDGE_DISCOVERY_UDP_ENABLED=false", "STOREEDGE_DISCOVERY_MDNS_ENABLED=false",
		"STOREEDGE_MEDIA_ENABLED=false",
		"TZ=Europe/Paris", // the image has no zone files: the binary's own must serve
	}
	// The data volume: a folder of the host's, given to the image's account, as install.md says.
	data := filepath.Join(work, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	containerConfig(t, filepath.Join(bundle, "config.json"), env, data)

	id := fmt.Sprintf("storeedge-image-test-%d", os.Getpid())
	var logs testenv.Buffer
	cmd := exec.Command(runc, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		exec.Command(runc, "delete", "--force", id).Run()
	})

	// The front door on a privileged port answers, and the catalog syncs.
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/status", frontDoor)
	deadline := time.Now().Add(90 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for synced := false; !synced; {
		select {
		case err := <-exited:
			t.Fatalf("the container stopped: %v\n%s", err, &logs)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the catalog did not sync in the container in 90 s\n%s", &logs)
		}
		synced = productsSynced(url, token) == 300
	}

	// The daemon runs as storeedge, not root: its database is that account's.
	fi, err := os.Stat(filepath.Join(data, "storeedge.db"))
	if err != nil {
		t.Fatalf("the data volume has no database: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || st.Gid != 65532 {
		t.Errorf("storeedge.db belongs to %d:%d, want 65532:65532 (the image's account)", st.Uid, st.Gid)
	}

	// docker exec storeedge storeedge doctor: what shop IT runs first.
	// Every check passes: the ports are the running service's.
	if out, err := exec.Command(runc, "exec", id, "storeedge", "doctor").CombinedOutput(); err != nil {
		t.Errorf("doctor in the container: %v\n%s", err, out)
	}

	// docker stop: SIGTERM, and a clean exit.
	sh(t, runc, "kill", id, "TERM")
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the container exited with %v after SIGTERM\n%s", err, &logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the container did not stop within 30 s of SIGTERM\n%s", &logs)
	}
	// The log's times are the shop's (Paris: +01:00 in winter, +02:00 in summer), not UTC.
	if !strings.Contains(logs.String(), "+01:00 level=") && !strings.Contains(logs.String(), "+02:00 level=") {
		t.Errorf("TZ=Europe/Paris: the log's times are not Paris time:\n%s", &logs)
	}
	if strings.Contains(logs.String(), "level=ERROR") || strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("the daemon logged warnings or errors:\n%s", &logs)
	}

	// What install.md says of the runtimes that take the capability away.
	dropAll := runToEnd(t, runc, bundle, id+"-cap-drop-all", func(proc map[string]any) {
		proc["capabilities"] = map[string]any{"bounding": []string{}}
	})
	if !strings.Contains(dropAll, "exec /usr/bin/storeedge: operation not permitted") {
		t.Errorf("--cap-drop ALL: want the binary refused with \"operation not permitted\":\n%s", dropAll)
	}
	noNewPrivileges := runToEnd(t, runc, bundle, id+"-no-new-privileges", func(proc map[string]any) {
		proc["noNewPrivileges"] = true
	})
	if want := fmt.Sprintf("lan.front_door: cannot listen on 127.0.0.1:%d: permission denied", frontDoor); !strings.Contains(noNewPrivileges, want) {
		t.Errorf("no-new-privileges: want the front door refused at start (%s):\n%s", want, noNewPrivileges)
	}
}

// runToEnd runs the bundle's container once more as id, its process changed by change, and
// returns what it wrote; the run must fail.
func runToEnd(t *testing.T, runc, bundle, id string, change func(proc map[string]any)) string {
	t.Helper()
	path := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(path, raw, 0o600)
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	change(spec["process"].(map[string]any))
	changed, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command(runc, "delete", "--force", id).Run() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, runc, "run", "--bundle", bundle, id).CombinedOutput()
	if err == nil {
		t.Errorf("container %s ran to a clean end; want it refused:\n%s", id, out)
	}
	return string(out)
}

// containerConfig makes the bundle umoci wrote run as Docker runs an image by default with
// --network host: the host's network namespace, no terminal, no capability in effect but those
// of Docker's bounding set, privileges gainable from a file (no no-new-privileges), and the given
// environment beside the image's, and data, a folder of the host's, as its data volume (-v
// data:/var/lib/storeedge).
func containerConfig(t *testing.T, path string, env []string, data string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["noNewPrivileges"] = false
	for _, e := range env {
		proc["env"] = append(proc["env"].([]any), e)
	}
	// The process starts with no capability (it is not root); the bounding set holds what the
	// image's binary may gain from its file capability.
	proc["capabilities"] = map[string]any{"bounding": []string{"CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_AUDIT_WRITE"}}
	mounts := spec["mounts"].([]any)
	volume := false
	for i, m := range mounts {
		if m.(map[string]any)["destination"] == "/var/lib/storeedge" {
			mounts[i] = map[string]any{"destination": "/var/lib/storeedge", "type": "bind", "source": data,
				"options": []string{"rbind", "rw"}}
			volume = true
		}
	}
	if !volume {
		t.Fatal("the image declares no volume /var/lib/storeedge")
	}
	linux := spec["linux"].(map[string]any)
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	out, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// privilegedPort is a free TCP port on 127.0.0.1 under 1024, which only a process with
// CAP_NET_BIND_SERVICE may bind.
func privilegedPort(t *testing.T) int {
	t.Helper()
	for port := 900; port < 1000; port++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port in 900–999")
	return 0
}

// productsSynced is the products collection's row count the status at url gives, or -1.
func productsSynced(url, token string) int64 {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		Collections []struct {
			Name      string `json:"name"`
			Rows      int64  `json:"rows"`
			Remaining int64  `json:"remaining"`
		} `json:"collections"`
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil || json.Unmarshal(body.Bytes(), &st) != nil {
		return -1
	}
	for _, c := range st.Collections {
		if c.Name == "products" && c.Remaining == 0 {
			return c.Rows
		}
	}
	return -1
}
