package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testConn is a Service Bus connection string good enough for Validate.
const testConn Secret = "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=a2V5a2V5a2V5=" // not a real key

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
	if err := os.WriteFile(ca, testCertPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(c *Config){
		"http on 127.0.0.1":                  func(c *Config) { c.Cloud.URL = "http://127.0.0.1:9000" },
		"http on localhost":                  func(c *Config) { c.Cloud.URL = "http://localhost:9000/base" },
		"http on ::1":                        func(c *Config) { c.Cloud.URL = "http://[::1]:9000" },
		"https with path":                    func(c *Config) { c.Cloud.URL = "https://cloud.example/api/" },
		"proxy direct":                       func(c *Config) { c.WAN.Proxy = "direct" },
		"http proxy with auth":               func(c *Config) { c.WAN.Proxy = "http://u:p@proxy.lan:3128" },
		"socks5 proxy":                       func(c *Config) { c.WAN.Proxy = "socks5://10.0.0.1:1080/" },
		"socks5h proxy, as curl writes it":   func(c *Config) { c.WAN.Proxy = "socks5h://proxy.lan:1080" },
		"extra CA file":                      func(c *Config) { c.WAN.ExtraCAFile = ca },
		"bind IPv4":                          func(c *Config) { c.LAN.Bind = "192.168.1.10" },
		"bind IPv6":                          func(c *Config) { c.LAN.Bind = "fe80::1%eth0" },
		"front door off":                     func(c *Config) { c.LAN.FrontDoor = 0 },
		"services off":                       func(c *Config) { c.LAN.Services = Services{} },
		"two ports off":                      func(c *Config) { c.LAN.Services.Media, c.LAN.Services.Admin = 0, 0 },
		"server id set":                      func(c *Config) { c.ServerID = "lyon-01.back_office" },
		"production mode":                    func(c *Config) { c.Shop.Mode, c.Admin.Token = ModeProduction, "adm-0123456789abcdef" },
		"enrollment secret":                  func(c *Config) { c.Devices.EnrollmentSecret = "enroll-0123456789" },
		"admin token of 16 accented letters": func(c *Config) { c.Admin.Token = Secret(strings.Repeat("é", 16)) },
		"scheduled backups": func(c *Config) {
			c.Backup.Dir, c.Backup.Schedule, c.Backup.Keep = "/mnt/backup/storeedge", "@every 6h", 30
		},
		"media container URL": func(c *Config) {
			c.Media.ContainerURL = "https://shop.blob.core.windows.net/media?sv=2023-11-03&sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig=c2ln"
		},
		"media connection string": func(c *Config) {
			c.Media.ConnectionString = "DefaultEndpointsProtocol=https;AccountName=shop;AccountKey=a2V5;EndpointSuffix=core.windows.net"
			c.Media.Container = "shop-media-01"
		},
		"media window across midnight": func(c *Config) { c.Media.LargeFileWindow = "21:30-06:00" },
		"media limits": func(c *Config) {
			c.Media.CacheMaxBytes, c.Media.MaxBandwidth, c.Media.Parallel, c.Media.OnDemandWait = 1<<20, 16<<10, 32, 0
		},
		"service bus on": func(c *Config) {
			c.ServiceBus.Enabled = true
			c.ServiceBus.ConnectionString = testConn
		},
		"service bus, key names in any case, trailing ;": func(c *Config) {
			c.ServiceBus.Enabled = true
			c.ServiceBus.ConnectionString = "endpoint=SB://shop.servicebus.windows.net/;sharedaccesskeyname=listen;sharedaccesskey=a2V5=;"
		},
		"service bus with a shared access signature": func(c *Config) {
			c.ServiceBus.Enabled = true
			c.ServiceBus.ConnectionString = "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=shop.servicebus.windows.net&sig=c2ln&se=1900000000&skn=listen"
		},
		"service bus emulator over amqp": func(c *Config) {
			c.ServiceBus.Enabled, c.ServiceBus.Transport = true, TransportAMQP
			c.ServiceBus.ConnectionString = "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
		},
		"connection string kept while off": func(c *Config) { c.ServiceBus.ConnectionString = testConn },
		"queue names":                      func(c *Config) { c.ServiceBus.Queue = "shops/lyon-01/orders_v2.in" },
		"queue of 260":                     func(c *Config) { c.ServiceBus.Queue = strings.Repeat("q", 260) },
		"schedule @every":                  func(c *Config) { c.BackOffice.Schedule = "@every 1m" },
		"schedule @hourly":                 func(c *Config) { c.BackOffice.Schedule = "@hourly" },
		"schedule with names":              func(c *Config) { c.BackOffice.Schedule = "30 2 * JAN-DEC mon-fri" },
		"schedule on 29 February":          func(c *Config) { c.BackOffice.Schedule = "0 0 29 2 *" },
		"schedule in UTC":                  func(c *Config) { c.BackOffice.Schedule = "CRON_TZ=UTC 0 3 * * *" },
		"back office folders": func(c *Config) {
			c.BackOffice.Export.Dir = filepath.FromSlash("/srv/erp/orders")
			c.BackOffice.Export.TestDir = filepath.FromSlash("/srv/erp/orders-test")
			c.BackOffice.Import.Dir = filepath.FromSlash("/srv/erp/stock")
		},
		"csv and xml": func(c *Config) { c.BackOffice.Export.Format = ExportCSV },
		"webhook": func(c *Config) {
			c.BackOffice.Webhook.URL = "https://erp.example.com:8443/hooks/orders"
			c.BackOffice.Webhook.Secret = "whsec_0123456789abcdef"
		},
		"webhook on loopback http": func(c *Config) { c.BackOffice.Webhook.URL = "http://127.0.0.1:8080/orders" },
		// A container name left beside a container URL, which names its own: harmless, as before.
		"media container beside a container URL": func(c *Config) {
			c.Media.ContainerURL = "https://shop.blob.core.windows.net/media?sv=2024-01-01&sp=rl&sig=abc"
			c.Media.Container = "media"
		},
		"edges": func(c *Config) {
			c.Cloud.PageSize, c.Cloud.PollInterval, c.Cloud.RequestTimeout = 10000, time.Second, time.Hour
			c.LAN.MaxBodyBytes, c.LAN.MaxHeaderBytes, c.LAN.ShutdownGrace = 64<<20, 1<<10, 0
			c.LAN.FrontDoor = 65535
			c.Orders.OutboxBatch = 500
			c.ServiceBus.LockRenewInterval, c.ServiceBus.MaxConcurrent = 5*time.Minute, 64
			c.BackOffice.Webhook.Timeout = time.Second
		},
		"low edges": func(c *Config) {
			c.Orders.OutboxBatch = 1
			c.ServiceBus.LockRenewInterval, c.ServiceBus.MaxConcurrent = time.Second, 1
			c.BackOffice.Webhook.Timeout = 5 * time.Minute
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
	file := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	notPEM := file("notpem.pem", []byte("hello\n"))
	emptyCA := file("empty.pem", nil)
	keyPEM := file("key.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	hugeCA := file("huge.pem", make([]byte, MaxExtraCABytes+1))
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
			`cloud.url: "https://x.example/?xxxxx": must not have a "?query" or "#fragment"`},
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
		{"admin nowhere", func(c *Config) { c.LAN.FrontDoorAdmin, c.LAN.Services.Admin = false, 0 },
			`lan.front_door_admin: false: and lan.services.admin is 0: the admin API and the status page would be on no port; give the admin service its port, or set lan.front_door_admin to true`},
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
		{"extra CA not PEM", func(c *Config) { c.WAN.ExtraCAFile = notPEM },
			`wan.extra_ca_file: "` + notPEM + `": no PEM certificates found`},
		{"extra CA empty", func(c *Config) { c.WAN.ExtraCAFile = emptyCA },
			`wan.extra_ca_file: "` + emptyCA + `": is empty`},
		{"extra CA a key", func(c *Config) { c.WAN.ExtraCAFile = keyPEM },
			`wan.extra_ca_file: "` + keyPEM + `": PEM block 1 is a "PRIVATE KEY", want CERTIFICATE`},
		{"extra CA too large", func(c *Config) { c.WAN.ExtraCAFile = hugeCA },
			`wan.extra_ca_file: "` + hugeCA + `": larger than 4 MiB: not a file of CA certificates`},
		{"proxy password without user", func(c *Config) { c.WAN.Proxy = "http://:secret@proxy.lan:3128" },
			`wan.proxy: "http://:xxxxx@proxy.lan:3128": has a password but no user`},
		{"proxy with an empty user", func(c *Config) { c.WAN.Proxy = "socks5://@proxy.lan:1080" },
			`wan.proxy: "socks5://xxxxx@proxy.lan:1080": has an @ but no user before it: remove the @, or put the user`},
		{"SOCKS5 user too long", func(c *Config) { c.WAN.Proxy = Proxy("socks5h://" + strings.Repeat("u", 256) + ":pw@proxy.lan:1080") },
			`wan.proxy: "socks5h://` + strings.Repeat("u", 200-len("socks5h://")) + `…": SOCKS5 allows a user and a password of at most 255 bytes each`},
		{"SOCKS5 password too long", func(c *Config) { c.WAN.Proxy = Proxy("socks5://u:" + strings.Repeat("p", 256) + "@proxy.lan:1080") },
			`wan.proxy: "socks5://u:xxxxx@proxy.lan:1080": SOCKS5 allows a user and a password of at most 255 bytes each`},
		{"media container without its connection string", func(c *Config) { c.Media.Container = "shop-media" },
			`media.container: "shop-media": set without media.connection_string, which it goes with: set the connection string too, or remove media.container (media.container_url names its container itself)`},
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
			`shop.id: "a b": want at most 128 bytes (UTF-8), without spaces or control characters`},
		{"body limit too small", func(c *Config) { c.LAN.MaxBodyBytes = 1000 },
			`lan.max_body_bytes: 1000: must be between 1024 (1 KiB) and 67108864 (64 MiB)`},
		{"body limit too large", func(c *Config) { c.LAN.MaxBodyBytes = 65 << 20 },
			`lan.max_body_bytes: 68157440: must be between 1024 (1 KiB) and 67108864 (64 MiB)`},
		{"header limit", func(c *Config) { c.LAN.MaxHeaderBytes = 2 << 20 },
			`lan.max_header_bytes: 2097152: must be between 1024 (1 KiB) and 1048576 (1 MiB)`},
		{"read cache negative", func(c *Config) { c.LAN.ReadCacheMB = -1 },
			`lan.read_cache_mb: -1: must be between 0 and 32768`},
		{"read cache over 32 GiB", func(c *Config) { c.LAN.ReadCacheMB = 40000 },
			`lan.read_cache_mb: 40000: must be between 0 and 32768`},
		{"header timeout over read timeout", func(c *Config) { c.LAN.ReadHeaderTimeout, c.LAN.ReadTimeout = time.Minute, 10*time.Second },
			`lan.read_header_timeout: "1m": longer than lan.read_timeout ("10s"), which covers the headers too`},

		{"mode misspelt", func(c *Config) { c.Shop.Mode = "prod" },
			`shop.mode: "prod": want "test" or "production"`},
		{"mode in capitals", func(c *Config) { c.Shop.Mode = "Production" },
			`shop.mode: "Production": want "test" or "production"`},
		{"mode empty", func(c *Config) { c.Shop.Mode = "" },
			`shop.mode: "": want "test" or "production"`},

		{"production without admin token", func(c *Config) { c.Shop.Mode = ModeProduction },
			`admin.token: "": missing; required when shop.mode is "production": choose a long random value (e.g. openssl rand -base64 32) and put it in STOREEDGE_ADMIN_TOKEN`},
		{"admin token short", func(c *Config) { c.Admin.Token = "admin" },
			`admin.token: "xxxxx": shorter than 16 characters; choose a long random value (e.g. openssl rand -base64 32)`},
		{"admin token placeholder", func(c *Config) { c.Admin.Token = Redaction },
			`admin.token: "xxxxx": is the placeholder shown by "storeedge config", not the value; put the real one`},
		{"admin token of 16 bytes but 8 characters", func(c *Config) { c.Admin.Token = Secret(strings.Repeat("é", 8)) },
			`admin.token: "xxxxx": shorter than 16 characters; choose a long random value (e.g. openssl rand -base64 32)`},
		{"admin token over 4096 bytes", func(c *Config) { c.Admin.Token = Secret(strings.Repeat("é", 2049)) },
			`admin.token: "xxxxx": longer than 4096 bytes; is it the right value?`},
		{"metrics token short", func(c *Config) { c.Metrics.Token = "metrics" },
			`metrics.token: "xxxxx": shorter than 16 characters; choose a long random value (e.g. openssl rand -base64 32)`},
		{"enrollment secret with a space", func(c *Config) { c.Devices.EnrollmentSecret = "enroll 0123456789abc" },
			`devices.enrollment_secret: "xxxxx": contains spaces, line breaks or control characters (a copy-paste slip?)`},
		{"pairing code ttl", func(c *Config) { c.Devices.PairingCodeTTL = 30 * time.Second },
			`devices.pairing_code_ttl: "30s": must be between "1m" and "24h"`},
		{"pairing attempts", func(c *Config) { c.Devices.PairingAttempts = 0 },
			`devices.pairing_attempts: 0: must be between 1 and 100`},
		{"push port", func(c *Config) { c.Devices.PushPortDefault = 70000 },
			`devices.push_port_default: 70000: must be between 1 and 65535`},
		{"command ttl", func(c *Config) { c.Devices.CommandTTL = 31 * 24 * time.Hour },
			`devices.command_ttl: "744h": must be between "1m" and "720h"`},
		{"push timeout", func(c *Config) { c.Devices.PushTimeout = 0 },
			`devices.push_timeout: "0s": must be between "1s" and "5m"`},
		{"push protocol version", func(c *Config) { c.Devices.PushMinVersion = 3 },
			`devices.push_min_version: 3: must be between 1 and 2`},

		{"media URL without SAS", func(c *Config) { c.Media.ContainerURL = "https://shop.blob.core.windows.net/media" },
			`media.container_url: "xxxxx": carries no SAS token (no sig= in its query); copy the container's SAS URL, or use media.connection_string`},
		{"media URL over http", func(c *Config) { c.Media.ContainerURL = "http://shop.blob.core.windows.net/media?sig=x" },
			`media.container_url: "xxxxx": want an https:// URL (http:// only for a test store on this machine)`},
		{"media URL without container", func(c *Config) { c.Media.ContainerURL = "https://shop.blob.core.windows.net/?sig=x" },
			`media.container_url: "xxxxx": names no container; want https://<account>.blob.core.windows.net/<container>?<SAS token>`},
		{"media both sources", func(c *Config) {
			c.Media.ContainerURL = "https://shop.blob.core.windows.net/media?sig=x"
			c.Media.ConnectionString, c.Media.Container = "AccountName=a;AccountKey=b", "media"
		}, `media.connection_string: "xxxxx": set together with media.container_url; give one of the two`},
		{"media connection string without container", func(c *Config) { c.Media.ConnectionString = "AccountName=a;AccountKey=b" },
			`media.container: "": missing; required with media.connection_string: the name of the container that holds the media`},
		{"media connection string without key", func(c *Config) { c.Media.ConnectionString, c.Media.Container = "AccountName=a", "media" },
			`media.connection_string: "xxxxx": lacks AccountName and AccountKey`},
		// The Azure SDK reads the names as written, and the scheme is what requests go with.
		{"media connection string in lower case", func(c *Config) {
			c.Media.ConnectionString, c.Media.Container = "accountname=a;accountkey=a2V5", "media"
		}, `media.connection_string: "xxxxx": has "accountname" where Azure reads only "AccountName": the names are exact`},
		{"media connection string over http", func(c *Config) {
			c.Media.ConnectionString, c.Media.Container = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5", "media"
		}, `media.connection_string: "xxxxx": its endpoint is not https: the key or SAS would cross the network in clear`},
		{"media connection string to an http endpoint", func(c *Config) {
			c.Media.ConnectionString, c.Media.Container = "BlobEndpoint=http://shop.example.com/;SharedAccessSignature=sv=1&sig=abc", "media"
		}, `media.connection_string: "xxxxx": its endpoint is not https`},
		{"media container name", func(c *Config) {
			c.Media.ConnectionString = "DefaultEndpointsProtocol=https;AccountName=shop;AccountKey=a2V5;EndpointSuffix=core.windows.net"
			c.Media.Container = "Media_Files"
		},
			`media.container: "Media_Files": want 3 to 63 lower-case letters`},
		{"media quota", func(c *Config) { c.Media.CacheMaxBytes = 1000 },
			`media.cache_max_bytes: 1000: must be at least 1048576 (1 MiB)`},
		{"media bandwidth", func(c *Config) { c.Media.MaxBandwidth = 100 },
			`media.max_bandwidth: 100: must be 0 (no cap) or at least 16384 bytes per second`},
		{"media parallel", func(c *Config) { c.Media.Parallel = 0 },
			`media.parallel: 0: must be between 1 and 32`},
		{"media window", func(c *Config) { c.Media.LargeFileWindow = "22h-6h" },
			`media.large_file_window: "22h-6h": "22h" is not a time of day HH:MM (00:00 to 23:59)`},
		{"media window empty", func(c *Config) { c.Media.LargeFileWindow = "06:00-06:00" },
			`media.large_file_window: "06:00-06:00": starts and ends at the same time; use "" for any time`},
		{"media wait", func(c *Config) { c.Media.OnDemandWait = time.Hour },
			`media.on_demand_wait: "1h": must be between "0s" and "5m"`},

		{"outbox_batch 0", func(c *Config) { c.Orders.OutboxBatch = 0 },
			`orders.outbox_batch: 0: must be between 1 and 500`},
		{"outbox_batch 501", func(c *Config) { c.Orders.OutboxBatch = 501 },
			`orders.outbox_batch: 501: must be between 1 and 500`},

		{"service bus on without connection string", func(c *Config) { c.ServiceBus.Enabled = true },
			`servicebus.connection_string: "": missing; required when servicebus.enabled is true: copy the connection string of the queue's shared access policy from the Azure portal ("Endpoint=sb://…"), or set STOREEDGE_SERVICEBUS_CONNECTION_STRING`},
		{"connection string placeholder", func(c *Config) { c.ServiceBus.ConnectionString = "xxxxx" },
			`servicebus.connection_string: "xxxxx": is the placeholder shown by "storeedge config", not the connection string; put the real one`},
		{"connection string without endpoint", func(c *Config) {
			c.ServiceBus.ConnectionString = "SharedAccessKeyName=listen;SharedAccessKey=a2V5"
		}, `servicebus.connection_string: "xxxxx": lacks Endpoint; want Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<policy>;SharedAccessKey=<key> (or SharedAccessSignature=<token> in place of the name and key), as the Azure portal shows it under "Shared access policies"`},
		{"connection string with an https endpoint", func(c *Config) {
			c.ServiceBus.ConnectionString = "Endpoint=https://shop.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=a2V5"
		}, `servicebus.connection_string: "xxxxx": its Endpoint is not sb://<host>; want Endpoint=sb://`},
		{"connection string with an endpoint without host", func(c *Config) {
			c.ServiceBus.ConnectionString = "Endpoint=sb:///;SharedAccessKeyName=listen;SharedAccessKey=a2V5"
		}, `servicebus.connection_string: "xxxxx": its Endpoint is not sb://<host>; want`},
		{"connection string without key name", func(c *Config) {
			c.ServiceBus.ConnectionString = "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKey=a2V5"
		}, `servicebus.connection_string: "xxxxx": lacks SharedAccessKeyName; want`},
		{"connection string without key", func(c *Config) {
			c.ServiceBus.ConnectionString = "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey="
		}, `servicebus.connection_string: "xxxxx": lacks SharedAccessKey (or SharedAccessSignature); want`},
		{"connection string of only an endpoint", func(c *Config) {
			c.ServiceBus.ConnectionString = "Endpoint=sb://shop.servicebus.windows.net/"
		}, `servicebus.connection_string: "xxxxx": lacks SharedAccessKeyName and SharedAccessKey (or SharedAccessSignature); want`},
		{"connection string all wrong", func(c *Config) {
			c.ServiceBus.Enabled = true
			c.ServiceBus.ConnectionString = "Endpoint=shop.servicebus.windows.net"
		}, `servicebus.connection_string: "xxxxx": its Endpoint is not sb://<host> and lacks SharedAccessKeyName and SharedAccessKey (or SharedAccessSignature); want`},
		{"connection string is only the key", func(c *Config) { c.ServiceBus.ConnectionString = "a2V5bm90YWNvbm5lY3Rpb24" },
			`servicebus.connection_string: "xxxxx": has a part without "="; want Endpoint=sb://`},
		{"connection string with a line break", func(c *Config) { c.ServiceBus.ConnectionString = testConn + "\n" },
			`servicebus.connection_string: "xxxxx": contains line breaks or control characters, or starts or ends with a space (a copy-paste slip?)`},
		{"connection string with a leading space", func(c *Config) { c.ServiceBus.ConnectionString = " " + testConn },
			`servicebus.connection_string: "xxxxx": contains line breaks or control characters, or starts or ends with a space (a copy-paste slip?)`},
		{"connection string too long", func(c *Config) { c.ServiceBus.ConnectionString = testConn + Secret(strings.Repeat("a", 4096)) },
			`servicebus.connection_string: "xxxxx": longer than 4096 bytes; is it the right value?`},
		{"queue with a space", func(c *Config) { c.ServiceBus.Queue = "shop orders" },
			`servicebus.queue: "shop orders": want 1 to 260 letters, digits, '.', '_', '/' or '-'; or "" for the queue the cloud's remote configuration names`},
		{"queue too long", func(c *Config) { c.ServiceBus.Queue = strings.Repeat("q", 261) },
			`want 1 to 260 letters, digits, '.', '_', '/' or '-'`},
		{"bad transport", func(c *Config) { c.ServiceBus.Transport = "https" },
			`servicebus.transport: "https": want "websockets" (port 443, through wan.proxy) or "amqp" (ports 5671/5672, no proxy; for local testing only)`},
		{"transport in capitals", func(c *Config) { c.ServiceBus.Transport = "AMQP" },
			`servicebus.transport: "AMQP": want "websockets"`},
		{"lock renew too often", func(c *Config) { c.ServiceBus.LockRenewInterval = 500 * time.Millisecond },
			`servicebus.lock_renew_interval: "500ms": must be between "1s" and "5m"`},
		{"lock renew too rare", func(c *Config) { c.ServiceBus.LockRenewInterval = 6 * time.Minute },
			`servicebus.lock_renew_interval: "6m": must be between "1s" and "5m"`},
		{"max_concurrent 0", func(c *Config) { c.ServiceBus.MaxConcurrent = 0 },
			`servicebus.max_concurrent: 0: must be between 1 and 64`},
		{"max_concurrent 65", func(c *Config) { c.ServiceBus.MaxConcurrent = 65 },
			`servicebus.max_concurrent: 65: must be between 1 and 64`},

		{"schedule empty", func(c *Config) { c.BackOffice.Schedule = " " },
			`backoffice.schedule: " ": empty; want 5 fields, "minute hour day-of-month month day-of-week", e.g. "*/5 * * * *" or "30 2 * * 1-5", or "@every 10m", "@hourly", "@daily"`},
		{"schedule with seconds", func(c *Config) { c.BackOffice.Schedule = "0 */5 * * * *" },
			`backoffice.schedule: "0 */5 * * * *": not a schedule: expected exactly 5 fields, found 6: [0 */5 * * * *]; want 5 fields`},
		{"schedule out of range", func(c *Config) { c.BackOffice.Schedule = "*/5 25 * * *" },
			`backoffice.schedule: "*/5 25 * * *": not a schedule: end of range (25) above maximum (23): 25; want 5 fields`},
		{"schedule every without unit", func(c *Config) { c.BackOffice.Schedule = "@every 5" },
			`backoffice.schedule: "@every 5": not a schedule: failed to parse duration @every 5: time: missing unit in duration "5"; want`},
		{"schedule unknown descriptor", func(c *Config) { c.BackOffice.Schedule = "@often" },
			`backoffice.schedule: "@often": not a schedule: unrecognized descriptor: @often; want`},
		{"schedule time zone only", func(c *Config) { c.BackOffice.Schedule = "CRON_TZ=UTC" },
			`backoffice.schedule: "CRON_TZ=UTC": not a schedule: a time zone with no schedule after it; want`},
		{"schedule every 0s", func(c *Config) { c.BackOffice.Schedule = "@every 0s" },
			`backoffice.schedule: "@every 0s": not a schedule: @every needs an interval of at least 1s; want`},
		{"schedule every 500ms", func(c *Config) { c.BackOffice.Schedule = "CRON_TZ=UTC @every 500ms" },
			`backoffice.schedule: "CRON_TZ=UTC @every 500ms": not a schedule: @every needs an interval of at least 1s; want`},
		{"schedule every 1500ms", func(c *Config) { c.BackOffice.Schedule = "@every 1500ms" },
			`backoffice.schedule: "@every 1500ms": not a schedule: @every needs a whole number of seconds, not 1.5s; want`},
		{"schedule sunday as 7", func(c *Config) { c.BackOffice.Schedule = "0 0 * * 7" },
			`backoffice.schedule: "0 0 * * 7": not a schedule: end of range (7) above maximum (6): 7; want`},
		{"schedule unknown time zone", func(c *Config) { c.BackOffice.Schedule = "CRON_TZ=Mars/Olympus 0 3 * * *" },
			`backoffice.schedule: "CRON_TZ=Mars/Olympus 0 3 * * *": not a schedule: provided bad location Mars/Olympus:`},
		{"schedule on 30 February", func(c *Config) { c.BackOffice.Schedule = "0 0 30 2 *" },
			`backoffice.schedule: "0 0 30 2 *": never runs (no such date); check the day-of-month and month fields`},
		{"export dir relative", func(c *Config) { c.BackOffice.Export.Dir = "orders" },
			`backoffice.export.dir: "orders": want an absolute path (a service's working directory is not predictable)`},
		{"export dir with a control character", func(c *Config) { c.BackOffice.Export.Dir = "/srv/or\x00ders" },
			`backoffice.export.dir: "/srv/or\x00ders": contains control characters or invalid UTF-8`},
		{"test dir relative", func(c *Config) { c.BackOffice.Export.TestDir = "test" },
			`backoffice.export.test_dir: "test": want an absolute path (a service's working directory is not predictable)`},
		{"test dir same as export dir", func(c *Config) {
			c.BackOffice.Export.Dir, c.BackOffice.Export.TestDir = filepath.Join(dir, "orders"), filepath.Join(dir, "orders")+string(filepath.Separator)
		}, `backoffice.export.test_dir: "` + filepath.Join(dir, "orders") + string(filepath.Separator) + `": same folder as backoffice.export.dir; test orders need a folder of their own, away from the production orders`},
		{"bad export format", func(c *Config) { c.BackOffice.Export.Format = "xlsx" },
			`backoffice.export.format: "xlsx": want "json", "csv" or "xml"`},
		{"webhook over http", func(c *Config) { c.BackOffice.Webhook.URL = "http://erp.example.com/orders" },
			`backoffice.webhook.url: "http://erp.example.com/orders": http is allowed only for a loopback host (a receiver on this machine); use https`},
		{"webhook not a URL", func(c *Config) { c.BackOffice.Webhook.URL = "erp.example.com/orders" },
			`backoffice.webhook.url: "erp.example.com/orders": want an https:// URL`},
		{"webhook unparsable", func(c *Config) { c.BackOffice.Webhook.URL = "://erp" },
			`backoffice.webhook.url: "://erp": not a URL; want e.g. "https://erp.example.com/orders"`},
		{"webhook without host", func(c *Config) { c.BackOffice.Webhook.URL = "https:///orders" },
			`backoffice.webhook.url: "https:///orders": has no host name`},
		{"webhook with credentials", func(c *Config) { c.BackOffice.Webhook.URL = "https://erp:pw@erp.example.com/orders" },
			`backoffice.webhook.url: "https://erp:xxxxx@erp.example.com/orders": must not hold a user name or password; sign the requests with backoffice.webhook.secret instead`},
		{"webhook with a token in the query", func(c *Config) { c.BackOffice.Webhook.URL = "https://erp.example.com/orders?code=tok" },
			`backoffice.webhook.url: "https://erp.example.com/orders?xxxxx": must not have a "?query" or "#fragment"; a token there would show in the log and the configuration view; sign the requests with backoffice.webhook.secret instead`},
		{"webhook with a bad port", func(c *Config) { c.BackOffice.Webhook.URL = "https://erp.example.com:0/orders" },
			`backoffice.webhook.url: "https://erp.example.com:0/orders": port must be a number between 1 and 65535`},
		{"webhook secret placeholder", func(c *Config) { c.BackOffice.Webhook.Secret = "xxxxx" },
			`backoffice.webhook.secret: "xxxxx": is the placeholder shown by "storeedge config", not the secret; put the real one`},
		{"webhook secret with a space", func(c *Config) { c.BackOffice.Webhook.Secret = "whsec 123" },
			`backoffice.webhook.secret: "xxxxx": contains spaces, line breaks or control characters (a copy-paste slip?)`},
		{"webhook secret too long", func(c *Config) { c.BackOffice.Webhook.Secret = Secret(strings.Repeat("s", 4097)) },
			`backoffice.webhook.secret: "xxxxx": longer than 4096 bytes; is it the right value?`},
		{"webhook timeout 0", func(c *Config) { c.BackOffice.Webhook.Timeout = 0 },
			`backoffice.webhook.timeout: "0s": must be between "1s" and "5m"`},
		{"webhook timeout 10m", func(c *Config) { c.BackOffice.Webhook.Timeout = 10 * time.Minute },
			`backoffice.webhook.timeout: "10m": must be between "1s" and "5m"`},
		{"import dir relative", func(c *Config) { c.BackOffice.Import.Dir = `stock` },
			`backoffice.import.dir: "stock": want an absolute path (a service's working directory is not predictable)`},
		{"import dir same as export dir", func(c *Config) {
			c.BackOffice.Export.Dir, c.BackOffice.Import.Dir = dir, filepath.Join(dir, "x", "..")
		}, `backoffice.import.dir: "` + filepath.Join(dir, "x", "..") + `": same folder as backoffice.export.dir; the ERP's files and storeedge's order files need separate folders`},
		{"import dir same as test dir", func(c *Config) {
			c.BackOffice.Export.TestDir, c.BackOffice.Import.Dir = dir, dir
		}, `backoffice.import.dir: "` + dir + `": same folder as backoffice.export.test_dir; the ERP's files and storeedge's order files need separate folders`},
		{"backup dir relative", func(c *Config) { c.Backup.Dir = "backups" },
			`backup.dir: "backups": want an absolute path (a service's working directory is not predictable)`},
		{"backup dir is the data dir", func(c *Config) { c.DataDir, c.Backup.Dir = dir, dir+string(filepath.Separator) },
			`backup.dir: "` + dir + string(filepath.Separator) + `": same folder as data_dir; a backup there is lost with the disk it should protect against`},
		{"backup schedule empty", func(c *Config) { c.Backup.Schedule = "" },
			`backup.schedule: "": empty; want 5 fields`},
		{"backup schedule bad", func(c *Config) { c.Backup.Schedule = "every night" },
			`backup.schedule: "every night": not a schedule`},
		{"backup keep 0", func(c *Config) { c.Backup.Keep = 0 },
			`backup.keep: 0: must be between 1 and 1000`},
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

// TestValidateReportsEveryKeyInOrder: a malformed media secret does not hide the other media
// problems, and a problem a later section finds about an earlier key (support wants shop.id) is
// listed at its key's place, as configuration.md promises.
func TestValidateReportsEveryKeyInOrder(t *testing.T) {
	c := valid()
	c.Media.ContainerURL = "https://a.blob.core.windows.net/m?sig=x "
	c.Media.ConnectionString = "AccountName=a;AccountKey=b\n"
	c.Media.Parallel = 99
	c.Log.Level = "loud"
	c.Support.ServiceBus.Enabled = true
	err := c.Validate()
	wantErr(t, err, []string{"shop.id", "media.container_url", "media.connection_string", "media.parallel", "log.level"})
	var keys []string
	for _, line := range strings.Split(err.Error(), "\n") {
		k, _, _ := strings.Cut(line, ":")
		keys = append(keys, k)
	}
	rank := map[string]int{}
	for i, k := range Keys() {
		rank[k] = i
	}
	for i := 1; i < len(keys); i++ {
		if rank[keys[i-1]] > rank[keys[i]] {
			t.Errorf("%s reported after %s:\n%s", keys[i], keys[i-1], err)
		}
	}
}

// TestUnknownEnvWithAMissingFile: the file's error is reported alone, and a misspelt variable is
// still known, so that the warning can go beside it.
func TestUnknownEnvWithAMissingFile(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), []string{"STOREEDGE_CLOUD_STOREKEY=x"}, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v", err)
	}
	if !slices.Equal(c.UnknownEnv, []string{"STOREEDGE_CLOUD_STOREKEY"}) {
		t.Fatalf("UnknownEnv %v, want the misspelt variable", c.UnknownEnv)
	}
}

// A configuration file that cannot be read at all gives one line of its own, starting "read
// config file:", that names the file and why (configuration.md, Errors).
func TestUnreadableFileIsOneLine(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, make([]byte, maxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.yaml"), dir, huge} {
		_, err := Load(path, nil, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "read config file: ") || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line starting read config file: that names it", path, err)
		}
	}
}
