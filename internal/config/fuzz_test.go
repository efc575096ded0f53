package config

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoadYAML feeds arbitrary bytes to Load as a configuration file. Load must never panic,
// must never put the store key (given in the environment) in an error, and whatever it
// accepts must survive a trip through Redacted.
func FuzzLoadYAML(f *testing.F) {
	if ex, err := os.ReadFile(examplePath); err == nil {
		f.Add(ex)
	}
	f.Add([]byte(""))
	f.Add([]byte("cloud:\n  page_size: 5\n  poll_interval: 1m\nlan:\n  services: {catalog: 0}\n"))
	f.Add([]byte("a: &x [*x]\nlan: *x\n"))
	f.Add([]byte("cloud: {url: 'http://[::1]:80', sync: off}\n---\n"))
	f.Add([]byte("servicebus:\n  enabled: true\n  connection_string: 'Endpoint=sb://a.servicebus.windows.net/;SharedAccessKeyName=n;SharedAccessKey=k'\n" +
		"backoffice:\n  schedule: 'CRON_TZ=UTC 0 3 * * 1-5'\n  webhook: {url: 'http://localhost:9/x', secret: s}\n  export: {dir: /a, test_dir: /b}\n"))

	f.Add([]byte("media:\n  large_file_window: '21:00-07:00'\n  container_url: 'https://a.blob.core.windows.net/m?se=x&sig=y'\n" +
		"  connection_string: 'AccountName=a;AccountKey=b'\n  container: media\n  max_bandwidth: 16384\n"))

	f.Add([]byte("metrics:\n  token: metrics-token-0123456789abcdef\nlogs:\n  ship:\n    enabled: true\n    url: https://logs.example/intake\n    api_key: ship-key\n"))
	f.Add([]byte("media:\n  container_url: 'https://a.blob.core.windows.net/m?se=x&sig=y'\nwan:\n  proxy: 'http://shop:pw@proxy.lan:3128'\n"))
	f.Add([]byte("smtp:\n  host: mail.lan\n  from: storeedge@shop.example\n  recipients: [it@shop.example]\n  user: shop\n  password: mail-pw\n"))

	const storeKey = "fuzz-store-key-value"
	env := []string{"STOREEDGE_CLOUD_STORE_KEY=" + storeKey}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "storeedge.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, env, nil)
		if err != nil {
			if !bytes.Contains(data, []byte(storeKey)) && strings.Contains(err.Error(), storeKey) {
				t.Fatalf("error shows the store key: %v", err)
			}
			_ = c.Redacted()
			return
		}
		if c.Cloud.StoreKey.Reveal() != storeKey {
			t.Fatalf("the environment's store key did not win over the file")
		}
		if err := os.WriteFile(path, []byte(c.Redacted()), 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := Load(path, env, revealedSecrets(c))
		if err != nil {
			t.Fatalf("Redacted output does not load: %v\n%s", err, c.Redacted())
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("Redacted round trip changed the configuration:\n%s\nvs\n%s", c.Redacted(), back.Redacted())
		}
	})
}

// revealedSecrets sets every secret of c, and wan.proxy with its credentials, to its value:
// what Redacted wrote as "xxxxx".
func revealedSecrets(c Config) []string {
	v := reflect.ValueOf(c)
	var sets []string
	for _, l := range leaves {
		switch f := v.FieldByIndex(l.index); {
		case l.kind == kindSecret && f.String() != "":
			sets = append(sets, l.key+"="+f.Interface().(Secret).Reveal())
		case l.kind == kindProxy:
			sets = append(sets, l.key+"="+f.Interface().(Proxy).Reveal())
		}
	}
	return sets
}

// FuzzLoadOverrides feeds arbitrary --set arguments and STOREEDGE_ environment variables: Load
// never panics, never shows the store key in an error unless the input held it, and what it
// accepts keeps the store key from the environment and passes its own validation again.
func FuzzLoadOverrides(f *testing.F) {
	for _, s := range [][2]string{
		{"cloud.page_size=500", "STOREEDGE_LAN_BIND=127.0.0.1"},
		{"lan.services.catalog=0", "STOREEDGE_CLOUD_POLL_INTERVAL=1m"},
		{"media.max_bandwidth=1e9", "STOREEDGE_MEDIA_ENABLED=maybe"},
		{"wan.proxy=http://u:p@proxy:3128", "STOREEDGE_NOPE=1"},
		{"=", "STOREEDGE_="},
		{"cloud.url", "STOREEDGE_SHOP_ID=" + strings.Repeat("é", 65)},
	} {
		f.Add(s[0], s[1])
	}
	const storeKey = "fuzz-store-key-value"
	f.Fuzz(func(t *testing.T, set, env string) {
		vars := []string{"STOREEDGE_CLOUD_STORE_KEY=" + storeKey, env}
		c, err := Load("", vars, []string{set})
		if err != nil {
			if !strings.Contains(set+env, storeKey) && strings.Contains(err.Error(), storeKey) {
				t.Fatalf("error shows the store key: %v", err)
			}
			return
		}
		if !strings.HasPrefix(env, "STOREEDGE_CLOUD_STORE_KEY=") && !strings.HasPrefix(set, "cloud.store_key=") &&
			c.Cloud.StoreKey.Reveal() != storeKey {
			t.Fatalf("the store key changed to %q", c.Cloud.StoreKey.Reveal())
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted, then refused by Validate: %v", err)
		}
	})
}

// FuzzRemoteValues feeds arbitrary text to the rules of the two values the cloud's remote
// configuration gives the server: they must never panic, a queue name they pass must be one
// Service Bus takes, and a container URL they pass must be an https URL (http only on this
// machine) naming a container and carrying a signature. A reason is fixed text: it never quotes
// the URL, whose SAS token is a secret.
func FuzzRemoteValues(f *testing.F) {
	for _, s := range []string{"", "orders-lyon-01", "orders lyon", "a/b.c_d-e", strings.Repeat("q", 261),
		"https://a.blob.core.windows.net/media?sv=2021&se=2026-12-05T10%3A00Z&sp=rl&sig=abc%2Bd",
		"http://127.0.0.1:10000/devstoreaccount1/media?sig=x", "http://blob.example/media?sig=x",
		"https://a.blob.core.windows.net/?sig=x", "https://a.blob.core.windows.net/media", "mailto:x?sig=y",
		"https://[::1]:99999/m?sig=x", "HTTPS://LOCALHOST/m?sig=%zz", "https://a/%2F?sig=1"} {
		f.Add(s)
	}
	// Every reason a container URL can get: none depends on the URL.
	reasons := map[string]bool{}
	for _, bad := range []string{"%", "http://blob.example/m?sig=x", "https://a/?sig=x", "https://a/m", strings.Repeat("u", maxSecretLen+1)} {
		reasons[ContainerURLProblem(bad)] = true
	}
	f.Fuzz(func(t *testing.T, s string) {
		if QueueNameProblem(s) == "" {
			if len(s) == 0 || len(s) > maxQueueLen || !isQueueName(s) {
				t.Fatalf("queue name %q passed", s)
			}
		}
		p := ContainerURLProblem(s)
		if p == "" {
			u, err := url.Parse(s)
			if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" || u.Query().Get("sig") == "" || len(s) > maxSecretLen {
				t.Fatalf("container URL %q passed", s)
			}
			if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
				t.Fatalf("container URL %q passed without https", s)
			}
		} else if !reasons[p] {
			t.Fatalf("%q: the reason %q is none of the fixed ones", s, p)
		}
	})
}
