package main

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/tools/testenv"
)

// storeedge demo --set changes keys over the demo's configuration, and refuses, with a usage
// error that says what to do instead, the keys the demo owns and anything storeedge run would
// refuse.
func TestDemoSet(t *testing.T) {
	demo := func(args ...string) (config.Config, error) {
		o, err := parseDemoFlags(args, io.Discard)
		if err != nil {
			return config.Config{}, err
		}
		return demoConfig(o, "http://127.0.0.1:1", "key")
	}
	cfg, err := demo("--set", "lan.services.catalog=9000", "--set", "lan.services.media=0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LAN.Services.Catalog != 9000 || cfg.LAN.Services.Media != 0 || cfg.LAN.Services.Orders != 8002 {
		t.Errorf("services %+v, want the catalog on 9000, media off, the rest as in production", cfg.LAN.Services)
	}
	if cfg.Cloud.URL != "http://127.0.0.1:1" || cfg.LAN.FrontDoor != 8080 || cfg.LAN.Bind != "127.0.0.1" {
		t.Errorf("the demo's own settings changed: cloud %s, front door %d, bind %s", cfg.Cloud.URL, cfg.LAN.FrontDoor, cfg.LAN.Bind)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "cloud.url=https://cloud.example"}, "the demo's cloud is built in"},
		{[]string{"--set", "cloud.store_key=abc"}, "the demo's cloud is built in"},
		{[]string{"--set", "lan.front_door=9080"}, "use --port"},
		{[]string{"--set", "lan.bind=0.0.0.0"}, "127.0.0.1 only"},
		{[]string{"--set", "data_dir=/tmp/x"}, "use --data-dir"},
		{[]string{"--set", "lan.services.catalg=9000"}, "did you mean lan.services.catalog"},
		{[]string{"--set", "lan.services.catalog=8080"}, "8080"},
		{[]string{"--set", "lan.services.catalog"}, "KEY=VALUE"},
		{[]string{"--port", "0"}, "--port must be 1..65535"},
		{[]string{"now"}, `unexpected argument "now"`},
	} {
		_, err := demo(tc.args...)
		var usage usageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("demo %s: %v; want a usage error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// When the demo's front door is taken, the demo says to pass --port: the key the server names
// elsewhere, lan.front_door, is one the demo refuses.
func TestDemoFrontDoorTakenSaysPort(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	var stderr testenv.Buffer
	err = cmdDemo(t.Context(), []string{"--data-dir", t.TempDir(), "--products", "10", "--port", port,
		"--set", "lan.services.catalog=0", "--set", "lan.services.orders=0", "--set", "lan.services.events=0",
		"--set", "lan.services.media=0", "--set", "lan.services.devices=0", "--set", "lan.services.admin=0",
		"--set", "lan.front_door_admin=true"},
		nil, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "change --port") || strings.Contains(err.Error(), "lan.front_door") {
		t.Fatalf("the demo with its front door taken: %v", err)
	}
}
