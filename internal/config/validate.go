package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrMissingStoreKey is behind the problem Validate reports when cloud.store_key is empty, for
// subcommands that do not talk to the cloud (firewall, say) and may go on without it:
// errors.Is(err, ErrMissingStoreKey), or drop it with WithoutKeys(err, "cloud.store_key").
var ErrMissingStoreKey = errors.New("store key missing")

const (
	maxServerIDLen = 64
	maxShopIDLen   = 128
	maxShopNameLen = 100 // runes; it travels in discovery replies, which must stay small
	maxStoreKeyLen = 4096
)

// Validate reports every problem with c, in key order, each an *Error ("key: value: reason")
// joined with errors.Join, or nil. It is fast and has no side effects; the one thing it looks
// at outside c is whether wan.extra_ca_file exists (an os.Stat). Secret values show as
// "xxxxx". An empty server_id is accepted: Load derives one from the host name.
func (c *Config) Validate() error {
	v := validator{}

	if c.ServerID != "" && (len(c.ServerID) > maxServerIDLen || !isIDText(c.ServerID)) {
		v.add("server_id", quote(c.ServerID), fmt.Sprintf("want 1 to %d letters, digits, '.', '_' or '-'; or leave it empty to derive it from the host name", maxServerIDLen))
	}
	if len(c.Shop.ID) > maxShopIDLen || strings.IndexFunc(c.Shop.ID, notVisible) >= 0 {
		v.add("shop.id", quote(c.Shop.ID), fmt.Sprintf("want at most %d characters, without spaces or control characters", maxShopIDLen))
	}
	switch name := c.Shop.Name; {
	case strings.TrimSpace(name) == "":
		v.add("shop.name", quote(name), "empty; devices and the status page show this name")
	case utf8.RuneCountInString(name) > maxShopNameLen || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0:
		v.add("shop.name", quote(name), fmt.Sprintf("want at most %d characters, without control characters", maxShopNameLen))
	}
	switch {
	case c.DataDir == "":
		v.add("data_dir", quote(c.DataDir), "empty; want the directory for the database and media cache, e.g. "+quote(defaultDataDir()))
	case !utf8.ValidString(c.DataDir) || strings.IndexFunc(c.DataDir, unicode.IsControl) >= 0:
		v.add("data_dir", quote(c.DataDir), "contains control characters or invalid UTF-8")
	case !filepath.IsAbs(c.DataDir):
		v.add("data_dir", quote(c.DataDir), "want an absolute path (a service's working directory is not predictable)")
	}

	v.cloudURL(c.Cloud.URL)
	switch k := c.Cloud.StoreKey.Reveal(); {
	case k == "":
		v.errs = append(v.errs, &Error{Key: "cloud.store_key", Value: `""`, err: ErrMissingStoreKey,
			Reason: "missing; the vendor gives each shop a store key: put it in the file, or set " + EnvName("cloud.store_key")})
	case k == Redaction:
		v.add("cloud.store_key", quote(Redaction), `is the placeholder shown by "storeedge config", not the key; put the real store key`)
	case len(k) > maxStoreKeyLen:
		v.add("cloud.store_key", quote(Redaction), fmt.Sprintf("longer than %d bytes; is it the right value?", maxStoreKeyLen))
	case strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		v.add("cloud.store_key", quote(Redaction), "contains spaces, line breaks or control characters (a copy-paste slip?)")
	}
	v.intRange("cloud.page_size", c.Cloud.PageSize, 1, 10000)
	v.durRange("cloud.poll_interval", c.Cloud.PollInterval, time.Second, time.Hour)
	v.durRange("cloud.request_timeout", c.Cloud.RequestTimeout, time.Second, time.Hour)

	v.proxy(c.WAN.Proxy)
	if f := c.WAN.ExtraCAFile; f != "" {
		v.caFile(f)
	}
	v.durRange("wan.connect_timeout", c.WAN.ConnectTimeout, time.Second, 5*time.Minute)

	if b := c.LAN.Bind; b != "" {
		if _, err := netip.ParseAddr(b); err != nil {
			v.add("lan.bind", quote(b), `want an IP address of this machine, e.g. "192.168.1.10", or "" for every interface`)
		}
	}
	v.ports(c.LAN)
	v.durRange("lan.read_header_timeout", c.LAN.ReadHeaderTimeout, time.Second, 5*time.Minute)
	v.durRange("lan.read_timeout", c.LAN.ReadTimeout, time.Second, time.Hour)
	if c.LAN.ReadHeaderTimeout > c.LAN.ReadTimeout && c.LAN.ReadTimeout >= time.Second {
		v.add("lan.read_header_timeout", quote(formatDuration(c.LAN.ReadHeaderTimeout)),
			fmt.Sprintf("longer than lan.read_timeout (%s), which covers the headers too", quote(formatDuration(c.LAN.ReadTimeout))))
	}
	v.durRange("lan.write_timeout", c.LAN.WriteTimeout, time.Second, time.Hour)
	v.durRange("lan.idle_timeout", c.LAN.IdleTimeout, time.Second, time.Hour)
	if n, lo, hi := c.LAN.MaxBodyBytes, int64(1<<10), int64(64<<20); n < lo || n > hi {
		v.add("lan.max_body_bytes", strconv.FormatInt(n, 10), "must be between 1024 (1 KiB) and 67108864 (64 MiB)")
	}
	if n := c.LAN.MaxHeaderBytes; n < 1<<10 || n > 1<<20 {
		v.add("lan.max_header_bytes", strconv.Itoa(n), "must be between 1024 (1 KiB) and 1048576 (1 MiB)")
	}
	v.durRange("lan.shutdown_grace", c.LAN.ShutdownGrace, 0, 5*time.Minute)

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", quote(c.Log.Level), `want "debug", "info", "warn" or "error"`)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.add("log.format", quote(c.Log.Format), `want "text" or "json"`)
	}
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(key, value, reason string) {
	v.errs = append(v.errs, &Error{Key: key, Value: value, Reason: reason})
}

func (v *validator) intRange(key string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(key, strconv.Itoa(n), fmt.Sprintf("must be between %d and %d", lo, hi))
	}
}

func (v *validator) durRange(key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.add(key, quote(formatDuration(d)), fmt.Sprintf("must be between %s and %s", quote(formatDuration(lo)), quote(formatDuration(hi))))
	}
}

func (v *validator) cloudURL(s string) {
	const key = "cloud.url"
	shown := quote(redactURL(s))
	if s == "" {
		v.add(key, shown, "empty; want the https:// address of the cloud API")
		return
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		v.add(key, shown, "not a URL; want e.g. "+quote(Default().Cloud.URL))
		return
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		v.add(key, shown, "http is allowed only for a loopback host (a local test cloud); use https")
		return
	default:
		v.add(key, shown, "want an https:// URL")
		return
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		v.add(key, shown, "has no host name")
	case u.User != nil:
		v.add(key, shown, "must not hold a user name or password; the store key goes in cloud.store_key")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		v.add(key, shown, `must not have a "?query" or "#fragment"`)
	case !validPort(u.Port(), true):
		v.add(key, shown, "port must be a number between 1 and 65535")
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validPort checks a URL's port text; "" passes when optional.
func validPort(p string, optional bool) bool {
	if p == "" {
		return optional
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '+'
}

func (v *validator) proxy(p Proxy) {
	const key = "wan.proxy"
	s, shown := p.Reveal(), quote(p.String())
	if s == "" || s == "direct" {
		return
	}
	want := `want "direct", http://host:port, socks5://host:port (with user:password@ before the host if the proxy needs it), or "" to follow the proxy environment variables`
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.Scheme == "" {
		v.add(key, shown, "not a proxy URL; "+want)
		return
	}
	switch u.Scheme {
	case "http", "socks5":
	case "https":
		v.add(key, shown, "a TLS connection to the proxy is not supported; use http:// (the connection through it to the cloud is still TLS) or socks5://")
		return
	default:
		v.add(key, shown, fmt.Sprintf("unsupported scheme %q; %s", u.Scheme, want))
		return
	}
	switch {
	case u.Hostname() == "":
		v.add(key, shown, "has no host name; "+want)
	case !validPort(u.Port(), false):
		v.add(key, shown, "want the proxy's port too, a number between 1 and 65535, e.g. http://proxy.lan:3128")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		v.add(key, shown, "want only scheme, credentials, host and port, no path or query")
	}
	if u.User != nil {
		if pw, _ := u.User.Password(); pw == Redaction || u.User.Username() == Redaction {
			v.add(key, shown, `the credentials are the placeholder shown by "storeedge config"; put the real ones`)
		}
	}
}

func (v *validator) caFile(f string) {
	const key = "wan.extra_ca_file"
	if !filepath.IsAbs(f) {
		v.add(key, quote(f), "want an absolute path (a service's working directory is not predictable)")
		return
	}
	fi, err := os.Stat(f)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.add(key, quote(f), "no such file")
	case err != nil:
		var pe *fs.PathError
		reason := err.Error()
		if errors.As(err, &pe) {
			reason = pe.Err.Error()
		}
		v.add(key, quote(f), "cannot be read: "+reason)
	case fi.IsDir():
		v.add(key, quote(f), "is a directory; want a PEM file of certificates")
	}
}

func (v *validator) ports(l LAN) {
	all := l.allListeners()
	first := map[int]string{} // port → key that took it first
	bad := false
	for _, ln := range all {
		switch {
		case ln.Port < 0 || ln.Port > 65535:
			v.add(ln.Key, strconv.Itoa(ln.Port), "must be a port between 1 and 65535, or 0 to turn the listener off")
			bad = true
		case ln.Port == 0:
		case first[ln.Port] != "":
			v.add(ln.Key, strconv.Itoa(ln.Port), "same port as "+first[ln.Port]+"; give each listener its own port, or 0 to turn it off")
		default:
			first[ln.Port] = ln.Key
		}
	}
	if !bad && len(first) == 0 {
		v.add("lan.front_door", "0", "every LAN listener is off (lan.front_door and all lan.services); devices could not reach the server")
	}
}

func isIDText(s string) bool {
	for _, r := range s {
		if !(r == '.' || r == '_' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

func notVisible(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError
}

// WithoutKeys returns err without the *Error problems about the given keys, or nil if nothing
// else is left. A subcommand that does not need a key (firewall does not need
// cloud.store_key) uses it on Load's error.
func WithoutKeys(err error, keys ...string) error {
	var rest []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if e, ok := err.(*Error); ok && e.Key != "" && slices.Contains(keys, e.Key) {
			return
		}
		rest = append(rest, err)
	}
	if err != nil {
		walk(err)
	}
	return errors.Join(rest...)
}
