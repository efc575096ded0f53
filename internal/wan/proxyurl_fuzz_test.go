package wan

import (
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
)

// FuzzProxyURL feeds the proxy URL parser what a shop may write in wan.proxy or HTTPS_PROXY. It
// never panics; its errors, a route's description and Redact never show the password; and a
// value the configuration's check accepts, the dialer takes too (the server would otherwise
// pass `storeedge config` and stop at start).
func FuzzProxyURL(f *testing.F) {
	for _, s := range []string{
		"http://proxy.lan:3128", "socks5://10.0.0.1:1080", "socks5h://u:p@proxy.lan", "http://u:s3cr%40t@proxy.lan:8080/",
		"http://:pw@proxy.lan:1", "http://u:p/w@proxy.lan", "https://proxy.lan:443", "http://[::1]:3128", "http://proxy.lan:+80",
		"socks5://u:pa ss@h:1", "http://u:pw@h:99999", "HTTP://U:PW@H:1/?q=1", "http://u:p@w@h:2", "direct", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		pass := ""
		if i := strings.Index(raw, "://"); i >= 0 {
			rest := raw[i+3:]
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				if _, p, ok := strings.Cut(rest[:at], ":"); ok {
					pass = p
				}
			}
		}
		// A password is looked for only where no other part of the text holds it too.
		secret := len(pass) >= 4 && strings.Count(raw, pass) == 1
		if secret && strings.Contains(Redact(raw), pass) {
			t.Fatalf("Redact(%q) shows the password", raw)
		}
		r, err := parseProxyURL(raw)
		if err != nil {
			if secret && strings.Contains(err.Error(), pass) {
				t.Fatalf("parseProxyURL(%q): the error shows the password: %v", raw, err)
			}
		} else if secret && (strings.Contains(r.describe(), pass) || strings.Contains(r.display(), pass)) {
			t.Fatalf("parseProxyURL(%q): the route's description shows the password: %s", raw, r.describe())
		}
		c := config.Default()
		c.Cloud.StoreKey = "sk_fuzz_0123456789"
		c.WAN.Proxy = config.Proxy(raw)
		cerr := c.Validate()
		if secret && cerr != nil && strings.Contains(cerr.Error(), pass) {
			t.Fatalf("wan.proxy %q: the configuration's error shows the password: %v", Redact(raw), cerr)
		}
		if cerr == nil && strings.TrimSpace(raw) != "" && !strings.EqualFold(strings.TrimSpace(raw), "direct") {
			if _, err := parseProxyURL(strings.TrimSpace(raw)); err != nil {
				t.Fatalf("wan.proxy %q passes the configuration's check but the dialer refuses it: %v", Redact(raw), err)
			}
		}
	})
}
