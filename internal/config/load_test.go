package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// key is a store key good enough for Validate; tests that are not about the key pass it.
const testKey = "sk_test_0123456789"

var envKey = []string{"STOREEDGE_CLOUD_STORE_KEY=" + testKey}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "storeedge.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantErr checks that err holds every one of want, and none of avoid.
func wantErr(t *testing.T, err error, want []string, avoid ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one mentioning %q", want)
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error does not mention %q:\n%s", w, msg)
		}
	}
	for _, a := range avoid {
		if strings.Contains(msg, a) {
			t.Errorf("error mentions %q, which it must not:\n%s", a, msg)
		}
	}
}

func TestLoadPrecedence(t *testing.T) {
	path := writeConfig(t, `
shop:
  name: "From file"
cloud:
  store_key: "file-key"
  page_size: 10
  poll_interval: "5s"
  request_timeout: "7s"
log:
  level: warn
`)
	env := []string{
		"PATH=/usr/bin",
		"STOREEDGE_CLOUD_PAGE_SIZE=20",
		"STOREEDGE_CLOUD_POLL_INTERVAL=6s",
		"STOREEDGE_CLOUD_STORE_KEY=env-key",
	}
	flags := []string{"cloud.page_size=30", "lan.services.admin=0"}
	c, err := Load(path, env, flags)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"cloud.page_size (flag over env over file)", c.Cloud.PageSize, 30},
		{"lan.services.admin (flag over default)", c.LAN.Services.Admin, 0},
		{"cloud.poll_interval (env over file)", c.Cloud.PollInterval, 6 * time.Second},
		{"cloud.store_key (env over file)", c.Cloud.StoreKey.Reveal(), "env-key"},
		{"cloud.request_timeout (file over default)", c.Cloud.RequestTimeout, 7 * time.Second},
		{"log.level (file over default)", c.Log.Level, "warn"},
		{"shop.name (file over default)", c.Shop.Name, "From file"},
		{"lan.front_door (default)", c.LAN.FrontDoor, 80},
		{"cloud.url (default)", c.Cloud.URL, "https://api.server.commerce-hub.io"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.key, tc.got, tc.want)
		}
	}
}

func TestLoadNoFile(t *testing.T) {
	c, err := Load("", envKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Cloud.StoreKey = testKey
	want.ServerID = c.ServerID
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load with no file and no flags differs from Default:\n%s\nwant\n%s", c.Redacted(), want.Redacted())
	}
	if !strings.HasPrefix(c.ServerID, "storeedge") || len(c.ServerID) > maxServerIDLen {
		t.Errorf("derived server_id = %q, want storeedge-<hostname>", c.ServerID)
	}
}

func TestLoadEmptyFile(t *testing.T) {
	for name, content := range map[string]string{
		"empty":         "",
		"comments only": "# nothing here\n\n# at all\n",
		"null document": "~\n",
		"empty section": "cloud:\nlan:\n  services:\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(writeConfig(t, content), envKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Cloud.PageSize != DefaultCloudPageSize || c.LAN.Services.Catalog != DefaultLANServicesCatalog {
				t.Errorf("defaults not kept: %+v", c)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		want    []string
	}{
		{"unknown key names key and line",
			"cloud:\n  url: \"https://x.example\"\n  page_sise: 5\n",
			[]string{":3: cloud.page_sise: unknown key", "did you mean cloud.page_size?"}},
		{"unknown top-level section",
			"\n\nclod:\n  url: x\n",
			[]string{":3: clod: unknown key"}},
		{"unknown key inside services",
			"lan:\n  services:\n    kitchen: 8010\n",
			[]string{":3: lan.services.kitchen: unknown key"}},
		{"key without its section",
			"page_size: 5\n",
			[]string{":1: page_size: unknown key (did you mean cloud.page_size?)"}},
		{"type error names key, line and value",
			"cloud:\n  page_size: ten\n",
			[]string{":2: cloud.page_size: \"ten\": want a whole number"}},
		{"hexadecimal number",
			"lan:\n  front_door: 0x50\n",
			[]string{":2: lan.front_door: \"0x50\": want a whole number"}},
		{"octal-looking number",
			"lan:\n  front_door: 0o120\n",
			[]string{":2: lan.front_door: \"0o120\": want a whole number"}},
		{"underscore not between digits",
			"cloud:\n  page_size: 1__000\n",
			[]string{":2: cloud.page_size: \"1__000\": want a whole number"}},
		{"duration without unit",
			"cloud:\n  poll_interval: 30\n",
			[]string{":2: cloud.poll_interval: \"30\": want a duration with a unit"}},
		{"bad duration text",
			"lan:\n  idle_timeout: 2 minutes\n",
			[]string{":2: lan.idle_timeout: \"2 minutes\": want a duration"}},
		{"bad bool",
			"cloud:\n  sync: maybe\n",
			[]string{":2: cloud.sync: \"maybe\": want true or false"}},
		{"empty number",
			"cloud:\n  page_size:\n",
			[]string{":2: cloud.page_size: \"\": empty; want a whole number, or leave the key out"}},
		{"list for a scalar",
			"log:\n  level: [debug, info]\n",
			[]string{":2: log.level: a list: want a single value"}},
		{"value for a section",
			"cloud: https://x.example\n",
			[]string{":1: cloud: is a section; want its keys indented below it, e.g. \"  url: …\""}},
		{"dotted key in the file",
			"cloud.page_size: 5\n",
			[]string{":1: cloud.page_size: dotted keys are for the environment and --set"}},
		{"key given twice",
			"log:\n  level: info\n  level: debug\n",
			[]string{":3: log.level: given twice (first on line 2)"}},
		{"syntax error has a line",
			"cloud:\n  url: \"https://x.example\n  page_size: 5\nlan: [\n",
			[]string{"YAML syntax:"}},
		{"bad indentation",
			"cloud:\n  url: x\n page_size: 5\n",
			[]string{":3: YAML syntax:"}},
		{"top level is a list",
			"- cloud\n- lan\n",
			[]string{":1: want keys like \"cloud:\" and \"lan:\" at the top level, found a list"}},
		{"two documents",
			"cloud:\n  page_size: 5\n---\nlog:\n  level: debug\n",
			[]string{"a second YAML document"}},
		{"a wrong file is cut short",
			strings.Repeat("unknown_thing: 1\n", 1000),
			[]string{":25: unknown_thing: given twice", "too many problems; fix those above first"}},
		{"every problem reported",
			"cloud:\n  page_size: x\n  bogus: 1\nlog:\n  level: [a]\n",
			[]string{":2: cloud.page_size", ":3: cloud.bogus: unknown key", ":5: log.level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.content)
			_, err := Load(path, envKey, nil)
			want := append([]string{path}, tc.want...)
			wantErr(t, err, want)
		})
	}
}

func TestLoadFileErrorsSkipValidate(t *testing.T) {
	// A value that does not parse must not also bring "store key missing" and the like: the
	// person fixes what is listed, and the rest is checked on the next run.
	_, err := Load(writeConfig(t, "cloud:\n  page_size: x\n"), nil, nil)
	wantErr(t, err, []string{"cloud.page_size"}, "cloud.store_key")
}

func TestLoadUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	_, err := Load(missing, envKey, nil)
	wantErr(t, err, []string{missing})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v is not fs.ErrNotExist", err)
	}

	_, err = Load(dir, envKey, nil)
	wantErr(t, err, []string{dir, "is a directory"})

	big := writeConfig(t, "# "+strings.Repeat("x", maxFileSize)+"\n")
	_, err = Load(big, envKey, nil)
	wantErr(t, err, []string{big, "larger than"})

	if os.Geteuid() != 0 { // root reads anything
		locked := writeConfig(t, "log:\n  level: debug\n")
		if err := os.Chmod(locked, 0); err != nil {
			t.Fatal(err)
		}
		_, err = Load(locked, envKey, nil)
		wantErr(t, err, []string{locked, "permission denied"})
	}
}

func TestLoadEnv(t *testing.T) {
	env := []string{
		"STOREEDGE_CLOUD_STORE_KEY=" + testKey,
		"STOREEDGE_LAN_SERVICES_CATALOG=9000",
		"STOREEDGE_WAN_PROXY=socks5://u:p@127.0.0.1:1080",
		"STOREEDGE_CLOUD_SYNC=false",
		"STOREEDGE_SHOP_NAME=Shop: with # odd chars ",
		"STOREEDGE_CONFIG=/somewhere/else.yaml",
		"STOREEDGE_CLOUD_STOREKEY=typo-secret-value",
		"STOREEDGE_NOT_A_KEY=1",
		"STOREEDGE_NOT_A_KEY=2",
		"storeedge_log_level=debug", // lower case is not ours (outside Windows)
		"NOEQUALSIGN",
	}
	c, err := Load("", env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.LAN.Services.Catalog != 9000 || c.Cloud.Sync || c.WAN.Proxy.Reveal() != "socks5://u:p@127.0.0.1:1080" {
		t.Errorf("environment not applied: %+v", c)
	}
	if c.Shop.Name != "Shop: with # odd chars " {
		t.Errorf("shop.name = %q; a text value from the environment must be taken as it is", c.Shop.Name)
	}
	if want := []string{"STOREEDGE_CLOUD_STOREKEY", "STOREEDGE_NOT_A_KEY"}; !slices.Equal(c.UnknownEnv, want) {
		t.Errorf("UnknownEnv = %q, want %q (STOREEDGE_CONFIG is not a key)", c.UnknownEnv, want)
	}
	if got, want := c.EnvWarnings(), []EnvWarning{{"STOREEDGE_CLOUD_STOREKEY", "STOREEDGE_CLOUD_STORE_KEY"}, {"STOREEDGE_NOT_A_KEY", ""}}; !slices.Equal(got, want) {
		t.Errorf("EnvWarnings = %+v, want %+v", got, want)
	}
	if c.Log.Level != "info" && runtime.GOOS != "windows" {
		t.Errorf("log.level = %q from a lower-case variable", c.Log.Level)
	}
}

// The Service Bus and back-office keys, three levels deep for some, load from the file and
// the environment like the others.
func TestLoadOrderKeys(t *testing.T) {
	path := writeConfig(t, `
shop:
  mode: production
orders:
  outbox_batch: 250
servicebus:
  enabled: true
  queue: "orders/lyon-01"
  transport: amqp
  lock_renew_interval: 30s
  max_concurrent: 8
backoffice:
  schedule: "@every 10m"
  export:
    dir: "/srv/erp/orders"
    test_dir: "/srv/erp/orders-test"
    format: csv
  webhook:
    url: "https://erp.example.com/orders"
    timeout: 20s
  import:
    dir: "/srv/erp/stock"
`)
	env := append([]string{
		"STOREEDGE_ADMIN_TOKEN=adm-0123456789abcdef",
		"STOREEDGE_SERVICEBUS_CONNECTION_STRING=" + string(testConn),
		"STOREEDGE_BACKOFFICE_WEBHOOK_SECRET=whsec_123",
		"STOREEDGE_BACKOFFICE_EXPORT_FORMAT=xml",
	}, envKey...)
	var flags []string
	if runtime.GOOS == "windows" { // the file's folders are not absolute there
		flags = []string{`backoffice.export.dir=C:\erp\orders`, `backoffice.export.test_dir=C:\erp\orders-test`, `backoffice.import.dir=C:\erp\stock`}
	}
	c, err := Load(path, env, flags)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.File = path // what the support channel's doctor report checks
	want.Cloud.StoreKey = testKey
	want.ServerID = c.ServerID
	want.Shop.Mode = ModeProduction
	want.Admin.Token = "adm-0123456789abcdef"
	want.Orders.OutboxBatch = 250
	want.ServiceBus = ServiceBus{Enabled: true, ConnectionString: testConn, Queue: "orders/lyon-01", Transport: TransportAMQP,
		LockRenewInterval: 30 * time.Second, MaxConcurrent: 8}
	want.BackOffice = BackOffice{
		Schedule: "@every 10m",
		Export:   BackOfficeExport{Dir: c.BackOffice.Export.Dir, TestDir: c.BackOffice.Export.TestDir, Format: ExportXML},
		Webhook:  BackOfficeWebhook{URL: "https://erp.example.com/orders", Secret: "whsec_123", Timeout: 20 * time.Second},
		Import:   BackOfficeImport{Dir: c.BackOffice.Import.Dir},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%s\nwant\n%s", c.Redacted(), want.Redacted())
	}
	if runtime.GOOS != "windows" && (c.BackOffice.Export.Dir != "/srv/erp/orders" || c.BackOffice.Export.TestDir != "/srv/erp/orders-test" || c.BackOffice.Import.Dir != "/srv/erp/stock") {
		t.Errorf("folders not loaded: %+v", c.BackOffice)
	}
	if c.Shop.IsTest() {
		t.Error("production mode counts as test")
	}

	_, err = Load(writeConfig(t, "backoffice:\n  export:\n    dri: /x\n  webhook: https://erp.example.com\n"), envKey, nil)
	wantErr(t, err, []string{
		":3: backoffice.export.dri: unknown key (did you mean backoffice.export.dir?)",
		`:4: backoffice.webhook: is a section; want its keys indented below it, e.g. "  url: …"`,
	})
}

func TestShopIsTest(t *testing.T) {
	for mode, want := range map[string]bool{ModeTest: true, ModeProduction: false, "": true, "Production": true} {
		if got := (Shop{Mode: mode}).IsTest(); got != want {
			t.Errorf("Shop{Mode: %q}.IsTest() = %v, want %v", mode, got, want)
		}
	}
	if !Default().Shop.IsTest() {
		t.Error("a new installation does not start in test mode")
	}
}

func TestParseSchedule(t *testing.T) {
	from := time.Date(2026, 11, 23, 10, 2, 0, 0, time.UTC)
	for spec, want := range map[string]time.Time{
		"CRON_TZ=UTC */5 * * * *":   time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC),
		"TZ=UTC 30 2 * * 1-5":       time.Date(2026, 11, 24, 2, 30, 0, 0, time.UTC),
		"CRON_TZ=UTC @hourly":       time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC),
		"@every 10m":                from.Add(10 * time.Minute),
		"CRON_TZ=UTC  @every 1h30m": from.Add(90 * time.Minute),
	} {
		s, err := ParseSchedule(spec)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", spec, err)
			continue
		}
		if got := s.Next(from); !got.Equal(want) {
			t.Errorf("ParseSchedule(%q).Next(%s) = %s, want %s", spec, from, got, want)
		}
	}
	for _, spec := range []string{"", "* * * *", "0 */5 * * * *", "CRON_TZ=UTC", "TZ=UTC ", "@every 0s", "@every -1m", "@every 999ms", "@every 1m30.5s", "@every x", "@weekdays", "60 * * * *"} {
		if s, err := ParseSchedule(spec); err == nil {
			t.Errorf("ParseSchedule(%q) = %v, want an error", spec, s)
		}
	}
}

func TestLoadEnvErrors(t *testing.T) {
	_, err := Load("", []string{
		"STOREEDGE_LAN_FRONT_DOOR=eighty",
		"STOREEDGE_CLOUD_PAGE_SIZE=",
	}, nil)
	wantErr(t, err, []string{
		`environment STOREEDGE_LAN_FRONT_DOOR: lan.front_door: "eighty": want a whole number`,
		`environment STOREEDGE_CLOUD_PAGE_SIZE: cloud.page_size: "": empty`,
	})
}

func TestLoadFlags(t *testing.T) {
	c, err := Load("", envKey, []string{"log.level=debug", "lan.bind=127.0.0.1", "cloud.poll_interval=1m30s", "shop.name=a=b"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "debug" || c.LAN.Bind != "127.0.0.1" || c.Cloud.PollInterval != 90*time.Second || c.Shop.Name != "a=b" {
		t.Errorf("flags not applied: %+v", c)
	}

	_, err = Load("", envKey, []string{"cloud.pagesize=5", "cloud.page_size=lots", "lan.front_door", "hunter2-secret"})
	wantErr(t, err, []string{
		"--set: cloud.pagesize: unknown key (did you mean cloud.page_size?)",
		`--set: cloud.page_size: "lots": want a whole number`,
		`--set: lan.front_door: want key=value; "=value" is missing`,
		"--set: argument 4: want key=value",
	}, "hunter2-secret")
}

func TestSet(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		check      func(c Config) bool
	}{
		{"cloud.page_size", "500", func(c Config) bool { return c.Cloud.PageSize == 500 }},
		{"cloud.page_size", "1_000", func(c Config) bool { return c.Cloud.PageSize == 1000 }},
		{"cloud.page_size", "0500", func(c Config) bool { return c.Cloud.PageSize == 500 }}, // not octal
		// Not octal either, though yaml reads them as floats for it.
		{"lan.front_door", "08080", func(c Config) bool { return c.LAN.FrontDoor == 8080 }},
		{"orders.outbox_batch", "09", func(c Config) bool { return c.Orders.OutboxBatch == 9 }},
		{"lan.front_door", "+8080", func(c Config) bool { return c.LAN.FrontDoor == 8080 }},
		{"lan.max_body_bytes", "2097152", func(c Config) bool { return c.LAN.MaxBodyBytes == 2<<20 }},
		{"cloud.sync", "false", func(c Config) bool { return !c.Cloud.Sync }},
		{"cloud.sync", "off", func(c Config) bool { return !c.Cloud.Sync }},
		{"lan.shutdown_grace", "0s", func(c Config) bool { return c.LAN.ShutdownGrace == 0 }},
		{"cloud.request_timeout", "1h", func(c Config) bool { return c.Cloud.RequestTimeout == time.Hour }},
		{"cloud.store_key", "null", func(c Config) bool { return c.Cloud.StoreKey.Reveal() == "null" }},
		{"shop.name", "", func(c Config) bool { return c.Shop.Name == "" }},
		{"shop.id", "123", func(c Config) bool { return c.Shop.ID == "123" }},
		{"wan.proxy", "direct", func(c Config) bool { return c.WAN.Proxy == "direct" }},
	} {
		c := Default()
		if err := c.Set(tc.key, tc.value); err != nil {
			t.Errorf("Set(%q, %q): %v", tc.key, tc.value, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("Set(%q, %q) did not set it", tc.key, tc.value)
		}
	}

	for _, tc := range []struct {
		key, value string
		want       string
	}{
		{"cloud.bogus", "1", "cloud.bogus: unknown key"},
		{"", "1", `"": unknown key`},
		{"cloud", "x", "cloud: is a section, not a key; set one of its keys, e.g. cloud.url"},
		{"lan.services", "x", "lan.services: is a section, not a key; set one of its keys, e.g. lan.services.catalog"},
		{"UnknownEnv", "x", "UnknownEnv: unknown key"},
		{"cloud.page_size", "1.5", `cloud.page_size: "1.5": want a whole number`},
		{"cloud.page_size", "99999999999999999999", `want a whole number`},
		{"lan.front_door", "1e3", `lan.front_door: "1e3": want a whole number`},
		{"cloud.sync", "1", `cloud.sync: "1": want true or false`},
		{"cloud.poll_interval", "30", `cloud.poll_interval: "30": want a duration`},
	} {
		c := Default()
		before := c
		err := c.Set(tc.key, tc.value)
		if err == nil || err.Error() != tc.want && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Set(%q, %q) = %v, want %q", tc.key, tc.value, err, tc.want)
		}
		if !reflect.DeepEqual(c, before) {
			t.Errorf("failed Set(%q, %q) changed the configuration", tc.key, tc.value)
		}
	}
}

func TestKeys(t *testing.T) {
	keys := Keys()
	if keys[0] != "server_id" || keys[len(keys)-1] != "support.servicebus.allow.retry_outbox" {
		t.Errorf("Keys() not in document order: %q", keys)
	}
	want := []string{"server_id", "shop.id", "shop.name", "shop.mode", "data_dir", "cloud.url", "cloud.store_key",
		"cloud.page_size", "cloud.poll_interval", "cloud.request_timeout", "cloud.sync",
		"wan.proxy", "wan.use_environment", "wan.extra_ca_file", "wan.connect_timeout",
		"lan.bind", "lan.front_door", "lan.front_door_admin", "lan.services.catalog", "lan.services.media",
		"lan.services.orders", "lan.services.devices", "lan.services.events", "lan.services.admin",
		"lan.read_header_timeout", "lan.read_timeout", "lan.write_timeout", "lan.idle_timeout",
		"lan.max_body_bytes", "lan.max_header_bytes", "lan.shutdown_grace", "lan.read_cache_mb",
		"discovery.udp.enabled", "discovery.udp.port", "discovery.udp.answer_interval", "discovery.udp.answer_burst",
		"discovery.mdns.enabled", "discovery.interfaces", "discovery.announce_interval",
		"orders.outbox_batch",
		"servicebus.enabled", "servicebus.connection_string", "servicebus.queue", "servicebus.transport",
		"servicebus.lock_renew_interval", "servicebus.max_concurrent",
		"media.enabled", "media.container_url", "media.connection_string", "media.container", "media.prefetch",
		"media.cache_max_bytes", "media.max_bandwidth", "media.parallel", "media.large_file_bytes", "media.large_file_window",
		"media.on_demand_wait", "media.stall_timeout", "media.retry_max", "media.progress_interval",
		"backoffice.schedule", "backoffice.export.dir", "backoffice.export.test_dir", "backoffice.export.format",
		"backoffice.webhook.url", "backoffice.webhook.secret", "backoffice.webhook.timeout", "backoffice.import.dir",
		"admin.token", "metrics.token", "devices.enrollment_secret", "devices.pairing_code_ttl", "devices.pairing_attempts",
		"devices.push_port_default", "devices.command_ttl", "devices.push_retry_max", "devices.push_timeout",
		"devices.push_min_version",
		"backup.dir", "backup.schedule", "backup.keep",
		"smtp.host", "smtp.port", "smtp.security", "smtp.user", "smtp.password", "smtp.from", "smtp.recipients", "smtp.timeout",
		"alerts.check_interval", "alerts.max_mails_per_hour", "alerts.wan_down.enabled", "alerts.wan_down.after",
		"alerts.upload_waiting.enabled", "alerts.upload_waiting.after", "alerts.upload_refused.enabled", "alerts.dead_lettered.enabled",
		"alerts.quarantined.enabled", "alerts.disk_low.enabled", "alerts.disk_low.free_mb", "alerts.disk_failed.enabled",
		"alerts.media_quota_full.enabled", "alerts.devices_offline.enabled", "alerts.devices_offline.after",
		"alerts.backup_failed.enabled", "alerts.backoffice_failing.enabled", "alerts.backoffice_failing.after",
		"alerts.backoffice_refused.enabled",
		"log.level", "log.format",
		"logs.ship.enabled", "logs.ship.url", "logs.ship.api_key", "logs.ship.level", "logs.ship.buffer_mb",
		"logs.ship.batch_size", "logs.ship.batch_interval",
		"support.servicebus.enabled", "support.servicebus.connection_string", "support.servicebus.queue",
		"support.servicebus.reply_queue", "support.servicebus.public_key", "support.servicebus.transport",
		"support.servicebus.allow.ping", "support.servicebus.allow.diagnostics", "support.servicebus.allow.resync",
		"support.servicebus.allow.retry_outbox"}
	if !slices.Equal(keys, want) {
		t.Errorf("Keys() = %q\nwant     %q", keys, want)
	}
	// Every key can be set, and from the environment by its documented name.
	for _, k := range keys {
		c := Default()
		if err := c.Set(k, "0"); err != nil && strings.Contains(err.Error(), "unknown key") {
			t.Errorf("Set(%q): %v", k, err)
		}
	}
	for key, env := range map[string]string{
		"lan.services.catalog":         "STOREEDGE_LAN_SERVICES_CATALOG",
		"servicebus.connection_string": "STOREEDGE_SERVICEBUS_CONNECTION_STRING",
		"backoffice.export.test_dir":   "STOREEDGE_BACKOFFICE_EXPORT_TEST_DIR",
		"backoffice.webhook.secret":    "STOREEDGE_BACKOFFICE_WEBHOOK_SECRET",
	} {
		if got := EnvName(key); got != env {
			t.Errorf("EnvName(%q) = %q, want %q", key, got, env)
		}
	}
}

func TestResolvePath(t *testing.T) {
	if got := ResolvePath("/a.yaml", []string{"STOREEDGE_CONFIG=/b.yaml"}); got != "/a.yaml" {
		t.Errorf("flag must win: %q", got)
	}
	if got := ResolvePath("", []string{"STOREEDGE_CONFIG=/b.yaml"}); got != "/b.yaml" {
		t.Errorf("STOREEDGE_CONFIG must be used: %q", got)
	}
	if _, err := os.Stat(DefaultPath()); errors.Is(err, fs.ErrNotExist) {
		if got := ResolvePath("", nil); got != "" {
			t.Errorf("no file anywhere: got %q, want \"\"", got)
		}
	}
}

func TestDerivedValues(t *testing.T) {
	c := Default()
	c.DataDir = filepath.FromSlash("/srv/se")
	if got, want := c.DatabasePath(), filepath.FromSlash("/srv/se/storeedge.db"); got != want {
		t.Errorf("DatabasePath = %q, want %q", got, want)
	}
	c.LAN.Services.Media = 0
	c.LAN.FrontDoor = 0
	var got []string
	for _, l := range c.LAN.Listeners() {
		got = append(got, l.Name)
	}
	if want := []string{"catalog", "orders", "devices", "events", "admin"}; !slices.Equal(got, want) {
		t.Errorf("Listeners = %q, want %q", got, want)
	}
	if Default().Log.SlogLevel().String() != "INFO" {
		t.Error("default level is not INFO")
	}
	if (Log{Level: "debug"}).SlogLevel().String() != "DEBUG" {
		t.Error("debug level is not DEBUG")
	}
	if !strings.Contains(FlagUsage(), "--set KEY=VALUE") || !strings.Contains(FlagUsage(), "STOREEDGE_CONFIG") {
		t.Errorf("FlagUsage lacks --set or STOREEDGE_CONFIG:\n%s", FlagUsage())
	}
}

func TestRedactedRoundTrip(t *testing.T) {
	c, err := Load("", envKey, []string{"wan.proxy=http://u:p%40ss@proxy.lan:3128", "lan.write_timeout=90s", "shop.name=Café \"Zur Post\" #1: ünïcødé", "lan.services.admin=0",
		"shop.mode=production", "servicebus.enabled=true", "servicebus.connection_string=" + string(testConn), "servicebus.queue=orders/lyon",
		"backoffice.schedule=@every 1m", "backoffice.export.dir=" + filepath.FromSlash("/srv/erp/out"), "backoffice.webhook.url=https://erp.example.com/orders",
		"backoffice.webhook.secret=whsec_123", "admin.token=adm-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(writeConfig(t, c.Redacted()), envKey, []string{"wan.proxy=" + c.WAN.Proxy.Reveal(),
		"servicebus.connection_string=" + c.ServiceBus.ConnectionString.Reveal(), "backoffice.webhook.secret=" + c.BackOffice.Webhook.Secret.Reveal(),
		"admin.token=" + c.Admin.Token.Reveal()})
	if err != nil {
		t.Fatalf("Redacted output does not load: %v\n%s", err, c.Redacted())
	}
	back.File = "" // read from the file written, c from none
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip through Redacted changed the configuration:\n%s\nvs\n%s", back.Redacted(), c.Redacted())
	}
	// Pasting the view back as is does not run with the placeholder as a key.
	_, err = Load(writeConfig(t, c.Redacted()), nil, nil)
	wantErr(t, err, []string{`cloud.store_key: "xxxxx": is the placeholder`, `wan.proxy: "http://u:xxxxx@proxy.lan:3128": the credentials are the placeholder`,
		`servicebus.connection_string: "xxxxx": is the placeholder`, `backoffice.webhook.secret: "xxxxx": is the placeholder`})
}

// A boolean in quotes reads as the same boolean unquoted: the example file quotes its texts, and
// people quote the rest alike.
func TestQuotedBooleans(t *testing.T) {
	for text, want := range map[string]bool{`"true"`: true, `'false'`: false, `"yes"`: true, `"Off"`: false, `true`: true, `no`: false} {
		c, err := Load(writeConfig(t, "cloud:\n  store_key: k\ndiscovery:\n  mdns:\n    enabled: "+text+"\n"), nil, nil)
		if err != nil {
			t.Errorf("enabled: %s: %v", text, err)
			continue
		}
		if c.Discovery.MDNS.Enabled != want {
			t.Errorf("enabled: %s read as %v", text, c.Discovery.MDNS.Enabled)
		}
	}
	_, err := Load(writeConfig(t, "cloud:\n  store_key: k\ndiscovery:\n  mdns:\n    enabled: \"maybe\"\n"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "discovery.mdns.enabled") || !strings.Contains(err.Error(), "true or false") {
		t.Errorf("enabled: \"maybe\": %v", err)
	}
}

// A misspelt key is named, with the key meant, however it is written; a text given as a key
// that looks like a token is not shown.
func TestUnknownKeysNamedUnlessSecret(t *testing.T) {
	_, err := Load(writeConfig(t, "cloud:\n  store_key: k\n  Page_Size: 5\n"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "cloud.Page_Size") || !strings.Contains(err.Error(), "cloud.page_size") {
		t.Errorf("a misspelt key: %v", err)
	}
	// One with a digit is not shown, but the key meant still is.
	_, err = Load(writeConfig(t, "cloud:\n  store_key: k\n  page_size2: 5\n"), nil, nil)
	if err == nil || strings.Contains(err.Error(), "page_size2") || !strings.Contains(err.Error(), "cloud.page_size") {
		t.Errorf("a misspelt key with a digit: %v", err)
	}
	_, err = Load("", nil, []string{"cloud.store_key=k", "sk_live_3f9c0a1b2c3d4e5f6a7b8c9d=x"})
	if err == nil || strings.Contains(err.Error(), "3f9c0a1b") {
		t.Errorf("a token given as a key: %v", err)
	}
}

// An unquoted value starting with "*", "&" or "!" (a pasted password or token) is YAML markup:
// the file is refused at its line, saying to quote it, and the text after the sign, which may
// be the secret, is never shown; markup used as YAML means it is still read.
func TestMarkupInValues(t *testing.T) {
	const secret = "Hunter2SecretLongToken"
	for _, tc := range []struct{ name, content, want string }{
		{"alias", "cloud:\n  store_key: k\nsmtp:\n  host: mail.example\n  password: *" + secret + "\n", `:5: YAML syntax: a value starting with "*" refers to an anchor`},
		{"anchor alone", "cloud:\n  store_key: k\nadmin:\n  token: &" + secret + "\n", `:4: admin.token: the value starts with "&" or "!"`},
		{"anchor on a secret", "cloud:\n  store_key: k\nadmin:\n  token: &" + secret + " Rest1234567890123456789\n", `:4: admin.token: the value starts with "&" or "!"`},
		{"local tag", "cloud:\n  store_key: k\nbackoffice:\n  webhook:\n    url: https://erp.example.com/o\n    secret: !" + secret + "\n", `:6: backoffice.webhook.secret: the value starts with`},
		{"undefined tag", "cloud:\n  store_key: k\nshop:\n  name: !!" + secret + "\n", `:4: shop.name: the value starts with`},
		{"anchor without value", "cloud:\n  store_key: k\nshop:\n  name: &" + secret + "\n", `:4: shop.name: the value starts with`},
		{"alias to an anchor on a secret", "shop:\n  id: &" + secret + " abcdef123456\ncloud:\n  store_key: *" + secret + "\n", `:4: cloud.store_key: the value starts with "*"`},
		{"tag in a list", "cloud:\n  store_key: k\ndiscovery:\n  interfaces:\n    - eth0\n    - !" + secret + "\n", `:4: discovery.interfaces: the value starts with`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.content), nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), secret) {
				t.Fatalf("got %v, want %q without the value", err, tc.want)
			}
		})
	}
	// Anchors and aliases where they mean what YAML says: read. "! " is YAML's mark for text,
	// dropped (configuration.md says to quote such a value).
	c, err := Load(writeConfig(t, "cloud:\n  store_key: k\nshop:\n  name: &n \"Lyon\"\n  id: *n\nlog:\n  level: !!str debug\nsmtp:\n  from: ! a@b.c\n"), nil, nil)
	if err != nil || c.Shop.ID != "Lyon" || c.Log.Level != "debug" || c.SMTP.From != "a@b.c" {
		t.Fatalf("anchors, aliases and standard tags: %v, %+v, from %q", err, c.Shop, c.SMTP.From)
	}
}

// A proxy URL whose host was left out shows no password ("http://user:password"); a URL that
// does not parse for another reason is shown, so that the mistake can be seen.
func TestProxyWithoutHostHidden(t *testing.T) {
	_, err := Load("", nil, []string{"cloud.store_key=k", "wan.proxy=http://user:SuperSecret99"})
	if err == nil || strings.Contains(err.Error(), "SuperSecret99") || !strings.Contains(err.Error(), `wan.proxy: "http://user:xxxxx": not a proxy URL`) {
		t.Fatalf("got %v", err)
	}
	_, err = Load("", nil, []string{"cloud.store_key=k", "wan.proxy=http://user:Super/Secret99"})
	if err == nil || strings.Contains(err.Error(), "Secret99") || !strings.Contains(err.Error(), `wan.proxy: "http://user:xxxxx": not a proxy URL`) {
		t.Fatalf("a password holding a slash: %v", err)
	}
	for _, u := range []string{"https://api.example.com:443 ", "https://[::1]:8443 "} {
		_, err = Load("", nil, []string{"cloud.store_key=k", "cloud.url=" + u})
		if err == nil || !strings.Contains(err.Error(), `cloud.url: "`+u+`": not a URL`) {
			t.Fatalf("a URL with a space after its port: %v", err)
		}
	}
}

// A control character is reported at its line.
func TestControlCharacterLine(t *testing.T) {
	_, err := Load(writeConfig(t, "cloud:\n  store_key: k\nlog:\n  level: info\nshop:\n  id: a\n  name: a\x7fb\n"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), ":7: YAML syntax: control characters are not allowed") {
		t.Fatalf("got %v", err)
	}
}

// The checks of the combined configuration list at most 25 problems too.
func TestValidateProblemsCut(t *testing.T) {
	_, err := Load(writeConfig(t, "cloud:\n  store_key: k\ndiscovery:\n  interfaces: ["+strings.Repeat("e, ", 10000)+"e]\n"), nil, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 26 || lines[25] != "9976 more problems; fix those above first" {
		t.Fatalf("%d lines, the last %q", len(lines), lines[len(lines)-1])
	}
}

// A file saved in Latin-1 or Windows-1252 ("ANSI" in Notepad) is refused at the line of its
// first byte that is not UTF-8, saying how to save it.
func TestFileNotUTF8(t *testing.T) {
	_, err := Load(writeConfig(t, "cloud:\n  store_key: k\nshop:\n  name: \"Caf\xe9 Lyon\"\n"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), ":4:") || !strings.Contains(err.Error(), "not UTF-8") || !strings.Contains(err.Error(), "0xE9 at column 13") {
		t.Fatalf("a Latin-1 file: %v", err)
	}
	// UTF-16 with its byte order mark is read.
	utf16 := []byte{0xFF, 0xFE}
	for _, r := range "cloud:\n  store_key: k\n" {
		utf16 = append(utf16, byte(r), 0)
	}
	if _, err := Load(writeConfig(t, string(utf16)), nil, nil); err != nil {
		t.Errorf("a UTF-16 file: %v", err)
	}
}

// A zero-padded number is decimal in the file and the environment as with --set, an 8 or a 9 in
// it too (yaml reads 08080 as a float, not being octal).
func TestLeadingZerosAreDecimal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storeedge.yaml")
	if err := os.WriteFile(path, []byte("lan:\n  front_door: 08080\ncloud:\n  page_size: 0800\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, append([]string{"STOREEDGE_ORDERS_OUTBOX_BATCH=090"}, envKey...), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.LAN.FrontDoor != 8080 || c.Cloud.PageSize != 800 || c.Orders.OutboxBatch != 90 {
		t.Errorf("front_door %d, page_size %d, outbox_batch %d; want 8080, 800, 90", c.LAN.FrontDoor, c.Cloud.PageSize, c.Orders.OutboxBatch)
	}
}
