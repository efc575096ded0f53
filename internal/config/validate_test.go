package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func valid() Config {
	c := Default()
	c.Cloud.StoreKey = testKey
	return c
}

func TestValidateDefaultsWithKey(t *testing.T) {
	c := valid()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults plus a store key do not validate: %v", err)
	}
}

func TestValidateAccepts(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(c *Config){
		"http on 127.0.0.1":    func(c *Config) { c.Cloud.URL = "http://127.0.0.1:9000" },
		"http on localhost":    func(c *Config) { c.Cloud.URL = "http://localhost:9000/base" },
		"http on ::1":          func(c *Config) { c.Cloud.URL = "http://[::1]:9000" },
		"https with path":      func(c *Config) { c.Cloud.URL = "https://cloud.example/api/" },
		"proxy direct":         func(c *Config) { c.WAN.Proxy = "direct" },
		"http proxy with auth": func(c *Config) { c.WAN.Proxy = "http://u:p@proxy.lan:3128" },
		"socks5 proxy":         func(c *Config) { c.WAN.Proxy = "socks5://10.0.0.1:1080/" },
		"extra CA file":        func(c *Config) { c.WAN.ExtraCAFile = ca },
		"bind IPv4":            func(c *Config) { c.LAN.Bind = "192.168.1.10" },
		"bind IPv6":            func(c *Config) { c.LAN.Bind = "fe80::1%eth0" },
		"front door off":       func(c *Config) { c.LAN.FrontDoor = 0 },
		"services off":         func(c *Config) { c.LAN.Services = Services{} },
		"two ports off":        func(c *Config) { c.LAN.Services.Media, c.LAN.Services.Admin = 0, 0 },
		"server id set":        func(c *Config) { c.ServerID = "lyon-01.back_office" },
		"edges": func(c *Config) {
			c.Cloud.PageSize, c.Cloud.PollInterval, c.Cloud.RequestTimeout = 10000, time.Second, time.Hour
			c.LAN.MaxBodyBytes, c.LAN.MaxHeaderBytes, c.LAN.ShutdownGrace = 64<<20, 1<<10, 0
			c.LAN.FrontDoor = 65535
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := valid()
			mod(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("rejected: %v", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string // the whole line Validate gives for it
	}{
		{"bad URL", func(c *Config) { c.Cloud.URL = "://nope" },
			`cloud.url: "://nope": not a URL; want e.g. "https://api.server.commerce-hub.io"`},
		{"URL without scheme", func(c *Config) { c.Cloud.URL = "api.example.com" },
			`cloud.url: "api.example.com": want an https:// URL`},
		{"http to a non-loopback host", func(c *Config) { c.Cloud.URL = "http://api.example.com" },
			`cloud.url: "http://api.example.com": http is allowed only for a loopback host (a local test cloud); use https`},
		{"empty URL", func(c *Config) { c.Cloud.URL = "" },
			`cloud.url: "": empty; want the https:// address of the cloud API`},
		{"URL without host", func(c *Config) { c.Cloud.URL = "https:///v1" },
			`cloud.url: "https:///v1": has no host name`},
		{"URL with query", func(c *Config) { c.Cloud.URL = "https://x.example/?a=1" },
			`cloud.url: "https://x.example/?a=1": must not have a "?query" or "#fragment"`},
		{"URL with bad port", func(c *Config) { c.Cloud.URL = "https://x.example:99999" },
			`cloud.url: "https://x.example:99999": port must be a number between 1 and 65535`},
		{"page_size 0", func(c *Config) { c.Cloud.PageSize = 0 },
			`cloud.page_size: 0: must be between 1 and 10000`},
		{"page_size 20000", func(c *Config) { c.Cloud.PageSize = 20000 },
			`cloud.page_size: 20000: must be between 1 and 10000`},
		{"poll_interval too short", func(c *Config) { c.Cloud.PollInterval = 500 * time.Millisecond },
			`cloud.poll_interval: "500ms": must be between "1s" and "1h"`},
		{"request_timeout too long", func(c *Config) { c.Cloud.RequestTimeout = 2 * time.Hour },
			`cloud.request_timeout: "2h": must be between "1s" and "1h"`},
		{"negative duration", func(c *Config) { c.LAN.ShutdownGrace = -time.Second },
			`lan.shutdown_grace: "-1s": must be between "0s" and "5m"`},
		{"connect_timeout 0", func(c *Config) { c.WAN.ConnectTimeout = 0 },
			`wan.connect_timeout: "0s": must be between "1s" and "5m"`},
		{"missing store_key", func(c *Config) { c.Cloud.StoreKey = "" },
			`cloud.store_key: "": missing; the vendor gives each shop a store key: put it in the file, or set STOREEDGE_CLOUD_STORE_KEY`},
		{"store_key with a newline", func(c *Config) { c.Cloud.StoreKey = "abc\n" },
			`cloud.store_key: "xxxxx": contains spaces, line breaks or control characters (a copy-paste slip?)`},
		{"store_key placeholder", func(c *Config) { c.Cloud.StoreKey = "xxxxx" },
			`cloud.store_key: "xxxxx": is the placeholder shown by "storeedge config", not the key; put the real store key`},
		{"port collision front door", func(c *Config) { c.LAN.Services.Catalog = 80 },
			`lan.services.catalog: 80: same port as lan.front_door; give each listener its own port, or 0 to turn it off`},
		{"port collision services", func(c *Config) { c.LAN.Services.Admin = 8001 },
			`lan.services.admin: 8001: same port as lan.services.media; give each listener its own port, or 0 to turn it off`},
		{"port out of range", func(c *Config) { c.LAN.FrontDoor = 70000 },
			`lan.front_door: 70000: must be a port between 1 and 65535, or 0 to turn the listener off`},
		{"negative port", func(c *Config) { c.LAN.Services.Events = -1 },
			`lan.services.events: -1: must be a port between 1 and 65535, or 0 to turn the listener off`},
		{"every listener off", func(c *Config) { c.LAN.FrontDoor, c.LAN.Services = 0, Services{} },
			`lan.front_door: 0: every LAN listener is off (lan.front_door and all lan.services); devices could not reach the server`},
		{"bad level", func(c *Config) { c.Log.Level = "verbose" },
			`log.level: "verbose": want "debug", "info", "warn" or "error"`},
		{"level in capitals", func(c *Config) { c.Log.Level = "INFO" },
			`log.level: "INFO": want "debug", "info", "warn" or "error"`},
		{"bad format", func(c *Config) { c.Log.Format = "xml" },
			`log.format: "xml": want "text" or "json"`},
		{"bad proxy scheme", func(c *Config) { c.WAN.Proxy = "ftp://proxy.lan:21" },
			`wan.proxy: "ftp://proxy.lan:21": unsupported scheme "ftp"; want "direct", http://host:port, socks5://host:port (with user:password@ before the host if the proxy needs it), or "" to follow the proxy environment variables`},
		{"https proxy", func(c *Config) { c.WAN.Proxy = "https://proxy.lan:443" },
			`wan.proxy: "https://proxy.lan:443": a TLS connection to the proxy is not supported; use http:// (the connection through it to the cloud is still TLS) or socks5://`},
		{"proxy without port", func(c *Config) { c.WAN.Proxy = "http://proxy.lan" },
			`wan.proxy: "http://proxy.lan": want the proxy's port too, a number between 1 and 65535, e.g. http://proxy.lan:3128`},
		{"proxy without scheme", func(c *Config) { c.WAN.Proxy = "proxy.lan:3128" },
			`wan.proxy: "proxy.lan:3128": not a proxy URL; want "direct"`},
		{"proxy with path", func(c *Config) { c.WAN.Proxy = "http://proxy.lan:3128/x" },
			`wan.proxy: "http://proxy.lan:3128/x": want only scheme, credentials, host and port, no path or query`},
		{"extra CA missing", func(c *Config) { c.WAN.ExtraCAFile = filepath.Join(dir, "none.pem") },
			`wan.extra_ca_file: "` + filepath.Join(dir, "none.pem") + `": no such file`},
		{"extra CA is a directory", func(c *Config) { c.WAN.ExtraCAFile = dir },
			`wan.extra_ca_file: "` + dir + `": is a directory; want a PEM file of certificates`},
		{"extra CA relative", func(c *Config) { c.WAN.ExtraCAFile = "ca.pem" },
			`wan.extra_ca_file: "ca.pem": want an absolute path (a service's working directory is not predictable)`},
		{"data_dir relative", func(c *Config) { c.DataDir = "data" },
			`data_dir: "data": want an absolute path (a service's working directory is not predictable)`},
		{"data_dir empty", func(c *Config) { c.DataDir = "" },
			`data_dir: "": empty; want the directory for the database and media cache`},
		{"bind a host name", func(c *Config) { c.LAN.Bind = "shop-server" },
			`lan.bind: "shop-server": want an IP address of this machine, e.g. "192.168.1.10", or "" for every interface`},
		{"server_id with spaces", func(c *Config) { c.ServerID = "back office" },
			`server_id: "back office": want 1 to 64 letters, digits, '.', '_' or '-'; or leave it empty to derive it from the host name`},
		{"shop name empty", func(c *Config) { c.Shop.Name = "  " },
			`shop.name: "  ": empty; devices and the status page show this name`},
		{"shop name too long", func(c *Config) { c.Shop.Name = strings.Repeat("é", 101) },
			`want at most 100 characters, without control characters`},
		{"shop id with space", func(c *Config) { c.Shop.ID = "a b" },
			`shop.id: "a b": want at most 128 characters, without spaces or control characters`},
		{"body limit too small", func(c *Config) { c.LAN.MaxBodyBytes = 1000 },
			`lan.max_body_bytes: 1000: must be between 1024 (1 KiB) and 67108864 (64 MiB)`},
		{"body limit too large", func(c *Config) { c.LAN.MaxBodyBytes = 65 << 20 },
			`lan.max_body_bytes: 68157440: must be between 1024 (1 KiB) and 67108864 (64 MiB)`},
		{"header limit", func(c *Config) { c.LAN.MaxHeaderBytes = 2 << 20 },
			`lan.max_header_bytes: 2097152: must be between 1024 (1 KiB) and 1048576 (1 MiB)`},
		{"header timeout over read timeout", func(c *Config) { c.LAN.ReadHeaderTimeout, c.LAN.ReadTimeout = time.Minute, 10*time.Second },
			`lan.read_header_timeout: "1m": longer than lan.read_timeout ("10s"), which covers the headers too`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("accepted; want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			found := false
			for _, l := range lines {
				found = found || strings.Contains(l, tc.want)
			}
			if !found {
				t.Errorf("got\n%s\nwant a line with\n%s", err, tc.want)
			}
			if len(lines) != 1 {
				t.Errorf("one bad value gave %d problems:\n%s", len(lines), err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Key == "" || e.Source != "" {
				t.Errorf("not an *Error with a key: %#v", err)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := Default() // no store key
	c.Cloud.PageSize = 0
	c.Log.Level = "loud"
	c.LAN.Services.Orders = 8000
	err := c.Validate()
	want := []string{"cloud.store_key", "cloud.page_size", "lan.services.orders", "log.level"}
	wantErr(t, err, want)
	if n := len(strings.Split(err.Error(), "\n")); n != len(want) {
		t.Errorf("%d problems reported, want %d:\n%s", n, len(want), err)
	}
	// In document order, so the list reads like the file.
	msg := err.Error()
	for i := 1; i < len(want); i++ {
		if strings.Index(msg, want[i-1]) > strings.Index(msg, want[i]) {
			t.Errorf("%s reported before %s", want[i], want[i-1])
		}
	}
	if !errors.Is(err, ErrMissingStoreKey) {
		t.Error("missing store key is not ErrMissingStoreKey")
	}
	rest := WithoutKeys(err, "cloud.store_key")
	wantErr(t, rest, want[1:], "cloud.store_key")
	if errors.Is(rest, ErrMissingStoreKey) {
		t.Error("WithoutKeys kept the store key problem")
	}
	only := Default()
	if err := WithoutKeys(only.Validate(), "cloud.store_key"); err != nil {
		t.Errorf("defaults without a store key, store key ignored: %v", err)
	}
}
