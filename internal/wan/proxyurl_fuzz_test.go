package wan

import (
	"slices"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
)

// FuzzProxyURL feeds the proxy URL parser what a shop may write in wan.proxy or HTTPS_PROXY. It
// never panics, and its errors, a route's description, Redact and the configuration's error
// never show the password.
//
// What shows the password is told apart from what holds the same text for another reason (a
// password "proxy" and an error naming the proxy, a password "h:80" and the address h:80) by
// the same value with another password: a text that holds the password there too does not
// hold it because of the password.
func FuzzProxyURL(f *testing.F) {
	for _, s := range []string{
		"http://proxy.lan:3128", "socks5://10.0.0.1:1080", "socks5h://u:p@proxy.lan", "http://u:s3cr%40t@proxy.lan:8080/",
		"http://:pw@proxy.lan:1", "http://u:p/w@proxy.lan", "https://proxy.lan:443", "http://[::1]:3128", "http://proxy.lan:+80",
		"socks5://u:pa ss@h:1", "http://u:pw@h:99999", "HTTP://U:PW@H:1/?q=1", "http://u:p@w@h:2", "direct", "",
		"http://u:connect@h", "http://u:h:80@h", "http://u:password@h/x", "http://u:proxy@h/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		scheme, rest, ok := strings.Cut(raw, "://")
		if !ok {
			return
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			return
		}
		user, pass, ok := strings.Cut(rest[:at], ":")
		if !ok || len(pass) < 4 {
			return
		}
		other := scheme + "://" + user + ":" + "Zq7Xw9Vb" + rest[at:]
		outputs := func(raw string) []string {
			out := []string{Redact(raw)}
			if r, err := parseProxyURL(raw); err != nil {
				out = append(out, err.Error())
			} else {
				out = append(out, r.describe(), r.display())
			}
			c := config.Default()
			c.Cloud.StoreKey = "sk_fuzz_0123456789"
			c.WAN.Proxy = config.Proxy(raw)
			if err := c.Validate(); err != nil {
				out = append(out, err.Error())
			}
			return out
		}
		holds := func(text string) bool { return strings.Contains(text, pass) }
		if i := slices.IndexFunc(outputs(raw), holds); i >= 0 && !slices.ContainsFunc(outputs(other), holds) {
			t.Fatalf("%q shows its password: %s", raw, outputs(raw)[i])
		}
	})
}

// A proxy URL the configuration's check accepts, the dialer takes too: the server would
// otherwise pass `storeedge config` and stop at start.
func FuzzProxyURLAcceptedByBoth(f *testing.F) {
	for _, s := range []string{
		"http://proxy.lan:3128", "socks5://10.0.0.1:1080", "socks5h://u:p@proxy.lan", "http://u:s3cr%40t@proxy.lan:8080/",
		" http://proxy.lan:3128 ", "DIRECT", "http://[fe80::1%25eth0]:3128", "http://proxy.lan", "socks5://u@h",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c := config.Default()
		c.Cloud.StoreKey = "sk_fuzz_0123456789"
		c.WAN.Proxy = config.Proxy(raw)
		trimmed := strings.TrimSpace(raw)
		if c.Validate() != nil || trimmed == "" || strings.EqualFold(trimmed, "direct") {
			return
		}
		if _, err := parseProxyURL(trimmed); err != nil {
			t.Fatalf("wan.proxy %q passes the configuration's check but the dialer refuses it: %v", Redact(raw), err)
		}
	})
}
