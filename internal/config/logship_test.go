package config

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestLogsShipOffByDefault(t *testing.T) {
	c := valid()
	if c.Logs.Ship.Enabled {
		t.Fatal("log shipping is on by default")
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.Logs.Ship.Enabled, c.Logs.Ship.APIKey = true, "0123456789abcdef"
	if err := c.Validate(); err != nil {
		t.Fatalf("shipping on with a key: %v", err)
	}
	c.Logs.Ship.URL = "http://127.0.0.1:9443/intake"
	if err := c.Validate(); err != nil {
		t.Fatalf("a loopback test intake: %v", err)
	}
}

func TestLogsShipRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(s *LogsShip)
		want string
	}{
		{"on without a key", func(s *LogsShip) { s.Enabled = true },
			`logs.ship.api_key: "": missing; required when logs.ship.enabled is true: the vendor gives it with the intake's address; put it in STOREEDGE_LOGS_SHIP_API_KEY`},
		{"the placeholder as key", func(s *LogsShip) { s.APIKey = Redaction },
			`logs.ship.api_key: "xxxxx": is the placeholder shown by "storeedge config", not the key; put the real one`},
		{"a key with a line break", func(s *LogsShip) { s.APIKey = "abc\ndef" },
			`logs.ship.api_key: "xxxxx": contains spaces, line breaks or control characters (a copy-paste slip?)`},
		{"no URL", func(s *LogsShip) { s.URL = "" },
			`logs.ship.url: "": empty; want the https:// address of the log intake, e.g. "https://api.logmatic.io/v1/input"`},
		{"plain http", func(s *LogsShip) { s.URL = "http://api.logmatic.io/v1/input" },
			`logs.ship.url: "http://api.logmatic.io/v1/input": http is allowed only for a loopback host (a test intake on this machine); use https`},
		{"a key in the query", func(s *LogsShip) { s.URL = "https://api.logmatic.io/v1/input?api_key=k3y" },
			`logs.ship.url: "https://api.logmatic.io/v1/input?xxxxx": must not have a "?query" or "#fragment"; a key there would show in the configuration view; put it in logs.ship.api_key`},
		{"bad level", func(s *LogsShip) { s.Level = "trace" },
			`logs.ship.level: "trace": want "debug", "info", "warn" or "error"`},
		{"no buffer", func(s *LogsShip) { s.BufferMB = 0 }, `logs.ship.buffer_mb: 0: must be between 1 and 10240`},
		{"huge batch", func(s *LogsShip) { s.BatchSize = 20000 }, `logs.ship.batch_size: 20000: must be between 1 and 10000`},
		{"short interval", func(s *LogsShip) { s.BatchInterval = 0 }, `logs.ship.batch_interval: "0s": must be between "1s" and "1h"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mod(&c.Logs.Ship)
			err := c.Validate()
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "k3y") {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}

// SecretValues finds every secret the configuration holds, for redaction.
func TestSecretValues(t *testing.T) {
	c := secretConfig()
	got := c.SecretValues()
	for _, want := range []string{secretKey, secretPass, secretConn, secretSB, secretHook, secretAdmin, secretEnroll, secretLogs} {
		if !slices.Contains(got, want) {
			t.Errorf("SecretValues lacks %q", want)
		}
	}
	c.WAN.Proxy = "http://tok3n-only@proxy.lan:3128"
	if !slices.Contains(c.SecretValues(), "tok3n-only") {
		t.Error("a proxy user name without a password is not treated as a secret")
	}
	c.WAN.Proxy = "http://shop:pw@proxy.lan:3128"
	if slices.Contains(c.SecretValues(), "shop") {
		t.Error("a proxy user name with a password is treated as a secret")
	}
	if got := Default().SecretValues(); len(got) != 0 {
		t.Errorf("the defaults hold secrets: %d", len(got))
	}
}

// The media keys' secrets are found on their own too: a log line may quote the account key of
// the connection string, or the signature of the container URL.
func TestSecretValuesOfMedia(t *testing.T) {
	c := Default()
	c.Media.ConnectionString = "DefaultEndpointsProtocol=https;AccountName=shop;AccountKey=S3cretAcc0untKey==;EndpointSuffix=core.windows.net"
	c.Media.ContainerURL = "https://shop.blob.core.windows.net/media?sv=2023-11-03&sp=rl&se=2027-01-01T00%3A00%3A00Z&sig=ab%2Bcd%2Fef%3D"
	got := c.SecretValues()
	for _, want := range []string{"S3cretAcc0untKey==", "ab+cd/ef="} {
		if !slices.Contains(got, want) {
			t.Errorf("SecretValues lacks %q", want)
		}
	}
	// A key written twice, or with spaces: each value, as written and trimmed.
	c.ServiceBus.ConnectionString = "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=F1rstKeyValue;SharedAccessKey= S3condKeyValue "
	got = c.SecretValues()
	for _, want := range []string{"F1rstKeyValue", " S3condKeyValue ", "S3condKeyValue"} {
		if !slices.Contains(got, want) {
			t.Errorf("SecretValues lacks %q", want)
		}
	}
	for _, not := range []string{"shop", "rl", "2023-11-03"} {
		if slices.Contains(got, not) {
			t.Errorf("SecretValues holds %q, which is no secret", not)
		}
	}
}

// A proxy password is looked for as a URL echoing the proxy writes it, too; the forms come
// longest first, each once, and a value too short to look for gives none.
func TestSecretForms(t *testing.T) {
	const pw = "p@ss:w/rd$1+"
	u, err := url.Parse("http://shop:" + url.PathEscape("x") + "@proxy.lan:3128")
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("shop", pw)
	echoed := u.String()
	forms := SecretForms([]string{pw, pw, "abc"})
	found := false
	for _, f := range forms {
		found = found || strings.Contains(echoed, f)
	}
	if !found {
		t.Errorf("no form of the password is in %q: %q", echoed, forms)
	}
	for i := 1; i < len(forms); i++ {
		if len(forms[i]) > len(forms[i-1]) || forms[i] == forms[i-1] {
			t.Errorf("forms not longest first, each once: %q", forms)
		}
	}
	if len(SecretForms([]string{"abc", ""})) != 0 {
		t.Error("a value shorter than MinSecretLen is looked for")
	}
}
