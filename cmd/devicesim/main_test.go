package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/server"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

func TestFlagsAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-code", "1234-5678", "-enrollment-secret", "s"},
		{"-code", "1234-5678", "-devices", "2"},
		{"-enrollment-secret", "s", "-devices", "0"},
		{"-enrollment-secret", "s", "-push-version", "3"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// devicesim -devices 3 pairs three devices with the enrollment secret against a real server,
// and prints each command pushed to them.
func TestRunsManyDevices(t *testing.T) {
	const secret = "test-enrollment-secret-0123"
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	committed := make(chan struct{}, 1) // a command's state was stored
	dm, err := devices.New(context.Background(), devices.Options{DB: db, EnrollmentSecret: secret,
		Committed: func([]storage.CommandUpdate) {
			select {
			case committed <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{DB: db, Devices: dm})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	managed := make(chan error, 1)
	go func() { managed <- dm.Run(ctx) }()

	out, stdout := io.Pipe()
	var stderr testenv.Buffer
	ran, stopped := make(chan error, 1), make(chan struct{})
	go func() {
		ran <- run(ctx, []string{"-server", ts.URL, "-enrollment-secret", secret, "-devices", "3", "-capabilities", "orders,print", "-heartbeat", "1h", "-extra-types", "label.print"}, stdout, &stderr)
		close(stopped)
		stdout.Close()
	}()
	lines := make(chan []byte)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- bytes.Clone(sc.Bytes())
		}
		close(lines)
	}()
	// A test that fails early leaves no reader nor devicesim blocked on the pipe.
	t.Cleanup(func() {
		cancel()
		out.Close()
		for range lines {
		}
	})
	deadline := time.After(30 * time.Second)
	// Each device says when it has paired.
	if !stderr.WaitUntil(func(s string) bool { return strings.Count(s, " paired as ") == 3 }, 30*time.Second, stopped) {
		t.Fatalf("devices paired:\n%s", stderr.String())
	}
	list, err := dm.List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("%d devices in the registry (%v), want 3", len(list), err)
	}
	// A type the devices do not know is refused; one given with -extra-types is done.
	odd, err := dm.Send(ctx, devices.Target{Capability: "print"}, "shelf.blink", json.RawMessage(`{}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"label.print", "print"} {
		if _, err := dm.Send(ctx, devices.Target{Capability: "print"}, typ, json.RawMessage(`{"text":"hi"}`), 0); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string][]string{}
	for range 6 {
		var line []byte
		select {
		case line = <-lines:
		case <-deadline:
			t.Fatalf("commands printed: %v", seen)
		}
		var l struct {
			Device  string          `json:"device"`
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(line, &l); err != nil || string(l.Payload) != `{"text":"hi"}` {
			t.Fatalf("line %q: %v", line, err)
		}
		seen[l.Device] = append(seen[l.Device], l.Type)
	}
	for _, d := range list {
		if got := strings.Join(seen[d.ID], ","); got != "label.print,print" || !strings.HasPrefix(d.Name, "devicesim-") {
			t.Errorf("device %s (%s) printed %q, want label.print,print", d.ID, d.Name, got)
		}
	}
	for _, c := range odd {
		for {
			got, err := dm.Command(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State == storage.CommandFailed && got.Reason == `refused by the device: "unknown command type"` {
				break
			}
			select {
			case <-committed: // the nack is stored by the manager's writer
			case <-deadline:
				t.Fatalf("command %s of an unknown type is %s (%q), want failed: unknown command type", c.ID, got.State, got.Reason)
			}
		}
	}
	cancel()
	go func() {
		for range lines {
		}
	}()
	if err := <-ran; err != nil {
		t.Errorf("run: %v", err)
	}
	<-managed
}
