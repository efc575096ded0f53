package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	secretKey     = "sk_live_S3CRET-store-key"
	secretPass    = "pr0xy-S3CRET-pass"
	secretSB      = "c2Iua2V5LlMzQ1JFVA-S3CRET-sb-key=" // the SharedAccessKey of secretConn
	secretHook    = "whsec_S3CRET-hook"
	secretAdmin   = "adm-S3CRET-0123456789"
	secretEnroll  = "enroll-S3CRET-0123456789"
	secretMetrics = "metrics-S3CRET-0123456789"
	secretLogs    = "logs-S3CRET-api-key"
	secretConn    = "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=" + secretSB
)

func secretConfig() Config {
	c := Default()
	c.Cloud.StoreKey = secretKey
	c.WAN.Proxy = Proxy("http://shop:" + secretPass + "@proxy.lan:3128")
	c.ServiceBus.Enabled = true
	c.ServiceBus.ConnectionString = secretConn
	c.BackOffice.Webhook.URL = "https://erp.example.com/orders"
	c.BackOffice.Webhook.Secret = secretHook
	c.Admin.Token = secretAdmin
	c.Metrics.Token = secretMetrics
	c.Devices.EnrollmentSecret = secretEnroll
	c.Media.ContainerURL = "https://shop.blob.core.windows.net/media?sv=2023-11-03&sp=rl&sig=S3CRET-sas-signature"
	c.Logs.Ship.Enabled, c.Logs.Ship.APIKey = true, secretLogs
	return c
}

func assertNoSecret(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range []string{secretKey, secretPass, secretSB, secretHook, secretAdmin, secretMetrics, secretEnroll, secretLogs, "S3CRET"} {
		if strings.Contains(out, s) {
			t.Errorf("%s shows a secret:\n%s", what, out)
			return
		}
	}
}

func TestSecretFormatting(t *testing.T) {
	s := Secret(secretKey)
	for _, tc := range []struct{ format, want string }{
		{"%v", "xxxxx"},
		{"%s", "xxxxx"},
		{"%+v", "xxxxx"},
		{"%#v", `config.Secret("xxxxx")`},
		{"%q", `"xxxxx"`},
		{"%x", "7878787878"},
		{"%10s", "     xxxxx"},
		{"%d", "%!d(string=xxxxx)"},
	} {
		if got := fmt.Sprintf(tc.format, s); got != tc.want {
			t.Errorf("Sprintf(%q, secret) = %q, want %q", tc.format, got, tc.want)
		}
	}
	if got := fmt.Sprint(Secret("")); got != "" {
		t.Errorf("empty secret prints %q, want \"\"", got)
	}
	if s.Reveal() != secretKey {
		t.Error("Reveal does not give the value back")
	}
}

func TestProxyFormatting(t *testing.T) {
	for in, want := range map[string]string{
		"":                                   "",
		"direct":                             "direct",
		"http://proxy.lan:3128":              "http://proxy.lan:3128",
		"http://shop:pw@proxy.lan:3128":      "http://shop:xxxxx@proxy.lan:3128",
		"socks5://shop:p%40ss@10.0.0.1:1080": "socks5://shop:xxxxx@10.0.0.1:1080",
		"http://token@proxy.lan:3128":        "http://xxxxx@proxy.lan:3128",
		"http://shop:pw@proxy.lan:bad port":  "xxxxx", // unparsable: hide it all
		"http://a@b:pw@proxy.lan:3128":       "http://a%40b:xxxxx@proxy.lan:3128",
	} {
		p := Proxy(in)
		if got := p.String(); got != want {
			t.Errorf("Proxy(%q).String() = %q, want %q", in, got, want)
		}
		if got := fmt.Sprintf("%v|%s|%+v", p, p, p); got != want+"|"+want+"|"+want {
			t.Errorf("Proxy(%q) formats as %q", in, got)
		}
	}
}

func TestConfigOutputsHideSecrets(t *testing.T) {
	c := secretConfig()
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		assertNoSecret(t, "fmt "+format+" of Config", fmt.Sprintf(format, c))
		assertNoSecret(t, "fmt "+format+" of *Config", fmt.Sprintf(format, &c))
		assertNoSecret(t, "fmt "+format+" of Cloud", fmt.Sprintf(format, c.Cloud))
		assertNoSecret(t, "fmt "+format+" of ServiceBus", fmt.Sprintf(format, c.ServiceBus))
		assertNoSecret(t, "fmt "+format+" of BackOffice", fmt.Sprintf(format, c.BackOffice))
		assertNoSecret(t, "fmt "+format+" of Webhook", fmt.Sprintf(format, &c.BackOffice.Webhook))
	}

	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "JSON", string(j))
	if !strings.Contains(string(j), `"StoreKey":"xxxxx"`) || !strings.Contains(string(j), `"Proxy":"http://shop:xxxxx@proxy.lan:3128"`) ||
		!strings.Contains(string(j), `"ConnectionString":"xxxxx"`) || !strings.Contains(string(j), `"Secret":"xxxxx"`) {
		t.Errorf("JSON does not show the redactions: %s", j)
	}

	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "yaml.Marshal", string(y))
	if !strings.Contains(string(y), "store_key: xxxxx") || !strings.Contains(string(y), "connection_string: xxxxx") {
		t.Errorf("YAML does not show the redaction:\n%s", y)
	}

	red := c.Redacted()
	assertNoSecret(t, "Redacted", red)
	for _, want := range []string{`store_key: "xxxxx"`, `proxy: "http://shop:xxxxx@proxy.lan:3128"`,
		`connection_string: "xxxxx"`, `secret: "xxxxx"`, `url: "https://erp.example.com/orders"`} {
		if !strings.Contains(red, want) {
			t.Errorf("Redacted lacks %s:\n%s", want, red)
		}
	}
	empty := Default()
	for _, want := range []string{`store_key: ""`, `connection_string: ""`, `secret: ""`} {
		if !strings.Contains(empty.Redacted(), want) {
			t.Errorf("an unset secret must show as empty (%s):\n%s", want, empty.Redacted())
		}
	}

	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"JSON": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var b bytes.Buffer
		log := slog.New(h(&b))
		log.Info("start", "key", c.Cloud.StoreKey, "proxy", c.WAN.Proxy, "cloud", c.Cloud, "config", c, slog.Any("ptr", &c))
		log.Info("attr", slog.Any("key", c.Cloud.StoreKey), slog.String("k2", c.Cloud.StoreKey.String()))
		log.Info("more", "sb", c.ServiceBus, "conn", c.ServiceBus.ConnectionString, "backoffice", c.BackOffice, "hook", c.BackOffice.Webhook.Secret)
		assertNoSecret(t, "slog "+name+" handler", b.String())
		if !strings.Contains(b.String(), "xxxxx") {
			t.Errorf("slog %s output shows no redaction: %s", name, b.String())
		}
	}
}

func TestErrorsHideSecrets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		env   []string
		flags []string
	}{
		{name: "store key with a space", flags: []string{"cloud.store_key=" + secretKey + " x"}},
		{name: "store key too long", flags: []string{"cloud.store_key=" + strings.Repeat(secretKey, 300)}},
		{name: "proxy bad scheme", flags: []string{"cloud.store_key=k", "wan.proxy=ftp://u:" + secretPass + "@h:21"}},
		{name: "proxy unparsable", flags: []string{"cloud.store_key=k", "wan.proxy=http://u:" + secretPass + "@h:port"}},
		{name: "proxy without port", flags: []string{"cloud.store_key=k", "wan.proxy=http://u:" + secretPass + "@h"}},
		{name: "proxy with path", env: []string{"STOREEDGE_WAN_PROXY=socks5://u:" + secretPass + "@h:1/p"}, flags: []string{"cloud.store_key=k"}},
		{name: "credentials in cloud url", flags: []string{"cloud.store_key=k", "cloud.url=https://u:" + secretPass + "@h"}},
		{name: "http cloud url with credentials", flags: []string{"cloud.store_key=k", "cloud.url=http://u:" + secretPass + "@h"}},
		{name: "secret under a misspelt key", flags: []string{"cloud.store_kye=" + secretKey}},
		{name: "secret without key", flags: []string{secretKey}},
		{name: "secret given as a key", flags: []string{"S3CRETc2tfbGl2ZV9TM0NSRVQ1234=="}},
		{name: "secret in file as a list", file: "cloud:\n  store_key: [" + secretKey + "]\n"},
		{name: "secret in file under a wrong key", file: "cloud:\n  storekey: " + secretKey + "\n"},
		{name: "secret in file, syntax error", file: "cloud:\n  store_key: \"" + secretKey + "\n  url: [\n"},
		{name: "secret in a second document", file: "log: {}\n---\ncloud:\n  store_key: " + secretKey + "\n"},
		{name: "secret in file, other error", file: "cloud:\n  store_key: " + secretKey + "\n  page_size: 0\n"},

		{name: "connection string without endpoint", flags: []string{"cloud.store_key=k", "servicebus.connection_string=SharedAccessKeyName=listen;SharedAccessKey=" + secretSB}},
		{name: "connection string with an https endpoint", flags: []string{"cloud.store_key=k", "servicebus.connection_string=" + strings.Replace(secretConn, "sb://", "https://", 1)}},
		{name: "connection string without key name", flags: []string{"cloud.store_key=k", "servicebus.connection_string=" + strings.Replace(secretConn, "SharedAccessKeyName=listen;", "", 1)}},
		{name: "connection string is only the key", flags: []string{"cloud.store_key=k", "servicebus.connection_string=" + secretSB + "x"}},
		{name: "connection string with a part without =", flags: []string{"cloud.store_key=k", "servicebus.connection_string=" + secretConn + ";S3CRET-part-without-equals"}},
		{name: "connection string with a line break", env: []string{"STOREEDGE_SERVICEBUS_CONNECTION_STRING=" + secretConn + "\n"}, flags: []string{"cloud.store_key=k"}},
		{name: "connection string too long", flags: []string{"cloud.store_key=k", "servicebus.connection_string=" + strings.Repeat(secretConn, 50)}},
		{name: "connection string as a list", file: "servicebus:\n  connection_string: [" + secretSB + "]\n"},
		{name: "connection string in file, other error", file: "servicebus:\n  connection_string: \"" + secretConn + "\"\n  max_concurrent: 0\n"},
		{name: "connection string under a wrong key", file: "servicebus:\n  connectionstring: \"" + secretConn + "\"\n"},
		{name: "webhook secret with a space", flags: []string{"cloud.store_key=k", "backoffice.webhook.secret=" + secretHook + " x"}},
		{name: "webhook secret too long", flags: []string{"cloud.store_key=k", "backoffice.webhook.secret=" + strings.Repeat(secretHook, 300)}},
		{name: "webhook secret misspelt key", flags: []string{"backoffice.webhook.secre=" + secretHook}},
		{name: "webhook secret in file as a mapping", file: "backoffice:\n  webhook:\n    secret: {a: " + secretHook + "}\n"},
		{name: "webhook url with credentials", flags: []string{"cloud.store_key=k", "backoffice.webhook.url=https://erp:" + secretHook + "@erp.example.com/"}},
		{name: "http webhook url with credentials", flags: []string{"cloud.store_key=k", "backoffice.webhook.url=http://erp:" + secretHook + "@erp.example.com/"}},
		{name: "webhook url with a token in the query", flags: []string{"cloud.store_key=k", "backoffice.webhook.url=https://erp.example.com/orders?code=" + secretHook}},
		{name: "webhook url with a token in the fragment", flags: []string{"cloud.store_key=k", "backoffice.webhook.url=https://erp.example.com/orders#" + secretHook}},
		{name: "webhook url unparsable with a token", flags: []string{"cloud.store_key=k", "backoffice.webhook.url=https://erp.example.com:x/orders?code=" + secretHook}},
		{name: "cloud url with a token in the query", flags: []string{"cloud.store_key=k", "cloud.url=https://api.server.commerce-hub.io/?access_token=" + secretHook}},
		{name: "cloud url with a token in the fragment", flags: []string{"cloud.store_key=k", "cloud.url=https://api.server.commerce-hub.io/#" + secretHook}},
		{name: "log intake url with a token in the query", flags: []string{"cloud.store_key=k", "logs.ship.enabled=true", "logs.ship.api_key=k3y-0123456789abcdef", "logs.ship.url=https://logs.example.com/in?token=" + secretHook}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeConfig(t, tc.file)
			}
			c, err := Load(path, tc.env, tc.flags)
			if err == nil {
				t.Fatal("no error")
			}
			assertNoSecret(t, "error", err.Error())
			assertNoSecret(t, "Redacted", c.Redacted())
			assertNoSecret(t, "unknown environment", strings.Join(c.UnknownEnv, " "))
		})
	}
	_, err := Load("", []string{"STOREEDGE_CLOUD_STOREKEY=" + secretKey}, nil)
	assertNoSecret(t, "error", err.Error())
}
