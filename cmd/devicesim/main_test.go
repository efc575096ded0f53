package main

import (
	"bufio"
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
	dm, err := devices.New(context.Background(), devices.Options{DB: db, EnrollmentSecret: secret})
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
	ran := make(chan error, 1)
	go func() {
		ran <- run(ctx, []string{"-server", ts.URL, "-enrollment-secret", secret, "-devices", "3", "-capabilities", "orders,print", "-heartbeat", "1h", "-extra-types", "label.print"}, stdout, io.Discard)
		stdout.Close()
	}()
	lines := bufio.NewScanner(out)
	deadline := time.Now().Add(30 * time.Second)
	var list []devices.Device
	for len(list) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d devices paired", len(list))
		}
		time.Sleep(10 * time.Millisecond) // pairing is the other process's doing: poll the registry
		list, _ = dm.List(ctx)
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
	for n := 0; n < 6 && lines.Scan(); n++ {
		var l struct {
			Device  string          `json:"device"`
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil || string(l.Payload) != `{"text":"hi"}` {
			t.Fatalf("line %q: %v", lines.Text(), err)
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
			if time.Now().After(deadline) {
				t.Fatalf("command %s of an unknown type is %s (%q), want failed: unknown command type", c.ID, got.State, got.Reason)
			}
			time.Sleep(10 * time.Millisecond) // the nack is stored by the manager's writer: poll it
		}
	}
	cancel()
	go io.Copy(io.Discard, out)
	if err := <-ran; err != nil {
		t.Errorf("run: %v", err)
	}
	<-managed
}
