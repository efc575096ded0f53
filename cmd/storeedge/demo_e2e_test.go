package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

// TestDemoCommand runs the README's first command, storeedge demo, as someone trying the product
// would: in a network namespace of its own (so that its fixed ports, 8080 and 8000–8005, are
// free), then the curl lines of its banner. The catalog syncs, the product, the image and the
// status answer with the credentials the banner prints, a pushed command reaches the demo's
// device, Ctrl-C stops it cleanly, and a second run, its catalog service moved to another port
// with --set, starts from the database the first left.
func TestDemoCommand(t *testing.T) {
	ns, _ := testenv.NetNSPair(t)
	curl := testenv.Require(t, "curl")
	bin, _ := binaries(t)
	dataDir := t.TempDir()

	type demo struct {
		cmd    *os.Process
		done   chan error
		banner map[string]string // DEVICE, ADMIN
		log    chan string       // the log's lines as they come
		all    *testenv.Buffer
	}
	start := func(extra ...string) *demo {
		t.Helper()
		cmd := ns.Command(bin, append([]string{"demo", "--data-dir", dataDir, "--products", "300"}, extra...)...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		d := &demo{cmd: cmd.Process, done: make(chan error, 1), banner: map[string]string{}, log: make(chan string, 4096), all: &testenv.Buffer{}}
		var reading sync.WaitGroup // Wait closes the pipes: it waits for their last lines (an error)
		reading.Add(2)
		go func() {
			defer reading.Done()
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				d.all.Write([]byte(sc.Text() + "\n"))
				select {
				case d.log <- sc.Text():
				default:
				}
			}
			io.Copy(io.Discard, stderr)
		}()
		bannerDone := make(chan struct{})
		go func() {
			defer reading.Done()
			re := regexp.MustCompile(`^\s+(DEVICE|ADMIN)=(\S*)$`)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if m := re.FindStringSubmatch(sc.Text()); m != nil {
					d.banner[m[1]] = m[2]
					if len(d.banner) == 2 {
						break
					}
				}
			}
			close(bannerDone)
			io.Copy(io.Discard, stdout)
		}()
		go func() { reading.Wait(); d.done <- cmd.Wait() }()
		t.Cleanup(func() {
			d.cmd.Kill()
			if t.Failed() {
				t.Logf("demo log:\n%s", d.all)
			}
		})
		select {
		case <-bannerDone:
		case err := <-d.done:
			t.Fatalf("storeedge demo exited before its banner: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatal("no banner with DEVICE= and ADMIN= after 60 s")
		}
		if d.banner["DEVICE"] == "" || d.banner["ADMIN"] == "" {
			t.Fatalf("the banner's credentials: %v", d.banner)
		}
		return d
	}
	getFrom := func(base, token, path string, extra ...string) (int, string) {
		t.Helper()
		args := append([]string{"-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-H", "Authorization: Bearer " + token}, extra...)
		out, err := ns.Command(curl, append(args, base+path)...).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", path, err)
		}
		i := strings.LastIndexByte(string(out), '\n')
		status, err := strconv.Atoi(string(out[i+1:]))
		if i < 0 || err != nil {
			t.Fatalf("curl %s: no status in %q", path, out)
		}
		body := string(out[:i])
		return status, body
	}
	get := func(token, path string, extra ...string) (int, string) {
		t.Helper()
		return getFrom("http://127.0.0.1:8080", token, path, extra...)
	}
	waitLog := func(d *demo, want string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case line := <-d.log:
				if strings.Contains(line, want) {
					return
				}
			case err := <-d.done:
				t.Fatalf("storeedge demo exited (%v) before logging %q", err, want)
			case <-deadline:
				t.Fatalf("no log line with %q after 30 s", want)
			}
		}
	}
	synced := func(d *demo) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, body := get(d.banner["ADMIN"], "/api/v1/status")
			var st struct {
				Collections []struct {
					Name        string  `json:"name"`
					LastSuccess *string `json:"last_success"`
					Rows        int64   `json:"rows"`
				} `json:"collections"`
			}
			if code == 200 && json.Unmarshal([]byte(body), &st) == nil {
				for _, c := range st.Collections {
					if c.Name == "products" && c.LastSuccess != nil && c.Rows == 300 {
						return
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the demo's catalog did not sync in 60 s: %d %s", code, body)
			}
			time.Sleep(200 * time.Millisecond) // the status is what a person would poll
		}
	}

	d := start()
	synced(d)
	if code, body := get("", "/healthz"); code != 200 {
		t.Errorf("healthz: %d %s", code, body)
	}
	if code, body := get(d.banner["DEVICE"], "/api/v1/catalog/products/P0000001"); code != 200 || !strings.Contains(body, `"id":"P0000001"`) {
		t.Errorf("the banner's product line: %d %s", code, body)
	}
	if code, _ := get("", "/api/v1/catalog/products/P0000001"); code != 401 {
		t.Errorf("a product without the device token: %d, want 401", code)
	}
	if code, body := get(d.banner["DEVICE"], "/api/v1/catalog/search?q=chocolate"); code != 200 || !strings.Contains(body, `"items"`) {
		t.Errorf("the banner's search line: %d %s", code, body)
	}
	if code, body := get(d.banner["DEVICE"], "/api/v1/media/M0000001"); code != 200 || len(body) < 100 {
		t.Errorf("the banner's image line: %d, %d bytes", code, len(body))
	}
	if code, body := get(d.banner["ADMIN"], "/api/v1/admin/commands", "-H", "Content-Type: application/json", "-d", `{"target":{"all":true},"type":"ping"}`); code/100 != 2 {
		t.Fatalf("the banner's command line: %d %s", code, body)
	}
	waitLog(d, `demo-pos: pushed command`)

	// Ctrl-C.
	if err := d.cmd.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("storeedge demo after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("storeedge demo still running 30 s after Ctrl-C")
	}
	if !strings.Contains(d.all.String(), "demo: stopped") {
		t.Error("no \"demo: stopped\" line after Ctrl-C")
	}

	// Again: the product is there from the database the first run left, whatever the cloud does.
	// The catalog service moved off port 8000, as someone whose port 8000 is taken would.
	d = start("--set", "lan.services.catalog=9000")
	if code, body := get(d.banner["DEVICE"], "/api/v1/catalog/products/P0000001"); code != 200 {
		t.Errorf("the second run's product before any sync: %d %s", code, body)
	}
	if code, body := getFrom("http://127.0.0.1:9000", d.banner["DEVICE"], "/api/v1/catalog/products/P0000001"); code != 200 {
		t.Errorf("the product on the catalog port moved to 9000: %d %s", code, body)
	}
}
