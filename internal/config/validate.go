package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
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
	maxSecretLen   = 4096 // servicebus.connection_string, backoffice.webhook.secret
	maxQueueLen    = 260  // Azure Service Bus's limit on a queue name
	minAdminToken  = 16   // admin.token, devices.enrollment_secret: guessable below this
)

// Validate reports every problem with c, in key order, each an *Error ("key: value: reason")
// joined with errors.Join, or nil. It is fast and has no side effects; the things it looks at
// outside c are whether wan.extra_ca_file exists (an os.Stat) and, for a backoffice.schedule
// that names a time zone (CRON_TZ=…), the system's time zone database. Secret values show as
// "xxxxx". An empty server_id is accepted: Load derives one from the host name. Folders
// (backoffice.export.dir and the like) are checked as paths only: a network share may be
// mounted after the server starts.
func (c *Config) Validate() error {
	v := validator{}
	v.serverID(c.ServerID)
	v.shop(c.Shop)
	v.dataDir(c.DataDir)
	v.cloud(c.Cloud)
	v.wan(c.WAN)
	v.lan(c.LAN)
	v.discovery(c.Discovery)
	v.orders(c.Orders)
	v.serviceBus(c.ServiceBus)
	v.media(c.Media)
	v.backOffice(c.BackOffice)
	v.admin(c.Admin, c.Shop)
	v.secret("metrics.token", c.Metrics.Token, minAdminToken)
	v.devices(c.Devices)
	v.backup(c.Backup, c.DataDir)
	v.smtp(c.SMTP)
	v.alerts(c.Alerts)
	v.log(c.Log)
	v.logsShip(c.Logs.Ship)
	v.support(c.Support.ServiceBus, c.Shop)
	// Some checks span sections (support.servicebus.enabled wants shop.id): put every problem in
	// key order, those of one key in the order found.
	slices.SortStableFunc(v.errs, func(a, b error) int { return cmp.Compare(keyRank(a), keyRank(b)) })
	if len(v.errs) > maxFileErrors { // a list of 100,000 items, each given twice
		v.errs = append(v.errs[:maxFileErrors], &Error{Reason: fmt.Sprintf("%d more problems; fix those above first", len(v.errs)-maxFileErrors)})
	}
	return errors.Join(v.errs...)
}

// keyRank is where the key of a validation problem stands among the keys, in the order of
// Keys; problems of no known key come last.
func keyRank(err error) int {
	var e *Error
	if errors.As(err, &e) {
		if i, ok := keyIndex[e.Key]; ok {
			return i
		}
	}
	return len(keyIndex)
}

// keyIndex is the position of each key in Keys.
var keyIndex = func() map[string]int {
	m := map[string]int{}
	for i, k := range Keys() {
		m[k] = i
	}
	return m
}()

// validator collects the problems found, in key order; each section has its method.
type validator struct{ errs []error }

func (v *validator) add(key, value, reason string) {
	v.errs = append(v.errs, &Error{Key: key, Value: value, Reason: reason})
}

func (v *validator) serverID(id string) {
	if id != "" && (len(id) > maxServerIDLen || !isIDText(id)) {
		v.add("server_id", quote(id), fmt.Sprintf("want 1 to %d letters, digits, '.', '_' or '-'; or leave it empty to derive it from the host name", maxServerIDLen))
	}
}

func (v *validator) shop(s Shop) {
	if len(s.ID) > maxShopIDLen || strings.IndexFunc(s.ID, notVisible) >= 0 {
		v.add("shop.id", quote(s.ID), fmt.Sprintf("want at most %d bytes (UTF-8), without spaces or control characters", maxShopIDLen))
	}
	switch name := s.Name; {
	case strings.TrimSpace(name) == "":
		v.add("shop.name", quote(name), "empty; devices and the status page show this name")
	case utf8.RuneCountInString(name) > maxShopNameLen || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0:
		v.add("shop.name", quote(name), fmt.Sprintf("want at most %d characters, without control characters", maxShopNameLen))
	}
	switch s.Mode {
	case ModeTest, ModeProduction:
	default:
		v.add("shop.mode", quote(s.Mode), `want "test" or "production"`)
	}
}

func (v *validator) dataDir(d string) {
	switch {
	case d == "":
		v.add("data_dir", quote(d), "empty; want the directory for the database and media cache, e.g. "+quote(defaultDataDir()))
	case !utf8.ValidString(d) || strings.IndexFunc(d, unicode.IsControl) >= 0:
		v.add("data_dir", quote(d), "contains control characters or invalid UTF-8")
	case !filepath.IsAbs(d):
		v.add("data_dir", quote(d), "want an absolute path (a service's working directory is not predictable)")
	}
}

func (v *validator) cloud(c Cloud) {
	v.cloudURL(c.URL)
	v.storeKey(c.StoreKey)
	v.intRange("cloud.page_size", c.PageSize, 1, 10000)
	v.durRange("cloud.poll_interval", c.PollInterval, time.Second, time.Hour)
	v.durRange("cloud.request_timeout", c.RequestTimeout, time.Second, time.Hour)
}

func (v *validator) storeKey(key Secret) {
	switch k := key.Reveal(); {
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
}

func (v *validator) wan(w WAN) {
	v.proxy(w.Proxy)
	if f := w.ExtraCAFile; f != "" {
		v.caFile(f)
	}
	v.durRange("wan.connect_timeout", w.ConnectTimeout, time.Second, 5*time.Minute)
}

// MaxLANShutdownGrace is the longest lan.shutdown_grace: a service manager waits that long, and
// some, for the server to stop.
const MaxLANShutdownGrace = 5 * time.Minute

func (v *validator) lan(l LAN) {
	if b := l.Bind; b != "" {
		if _, err := netip.ParseAddr(b); err != nil {
			v.add("lan.bind", quote(b), `want an IP address of this machine, e.g. "192.168.1.10", or "" for every interface`)
		}
	}
	v.ports(l)
	if !l.FrontDoorAdmin && l.Services.Admin == 0 {
		v.add("lan.front_door_admin", "false", "and lan.services.admin is 0: the admin API and the status page would be on no port; give the admin service its port, or set lan.front_door_admin to true")
	}
	v.durRange("lan.read_header_timeout", l.ReadHeaderTimeout, time.Second, 5*time.Minute)
	v.durRange("lan.read_timeout", l.ReadTimeout, time.Second, time.Hour)
	if l.ReadHeaderTimeout > l.ReadTimeout && l.ReadTimeout >= time.Second {
		v.add("lan.read_header_timeout", quote(formatDuration(l.ReadHeaderTimeout)),
			fmt.Sprintf("longer than lan.read_timeout (%s), which covers the headers too", quote(formatDuration(l.ReadTimeout))))
	}
	v.durRange("lan.write_timeout", l.WriteTimeout, time.Second, time.Hour)
	v.durRange("lan.idle_timeout", l.IdleTimeout, time.Second, time.Hour)
	if n, lo, hi := l.MaxBodyBytes, int64(1<<10), int64(64<<20); n < lo || n > hi {
		v.add("lan.max_body_bytes", strconv.FormatInt(n, 10), "must be between 1024 (1 KiB) and 67108864 (64 MiB)")
	}
	if n := l.MaxHeaderBytes; n < 1<<10 || n > 1<<20 {
		v.add("lan.max_header_bytes", strconv.Itoa(n), "must be between 1024 (1 KiB) and 1048576 (1 MiB)")
	}
	v.durRange("lan.shutdown_grace", l.ShutdownGrace, 0, MaxLANShutdownGrace)
	v.intRange("lan.read_cache_mb", l.ReadCacheMB, 0, 32768)
}

func (v *validator) orders(o Orders) {
	v.intRange("orders.outbox_batch", o.OutboxBatch, 1, 500)
}

// admin checks the admin credential, which production mode requires.
func (v *validator) admin(a Admin, s Shop) {
	v.secret("admin.token", a.Token, minAdminToken)
	if a.Token == "" && s.Mode == ModeProduction {
		v.add("admin.token", `""`, "missing; required when shop.mode is \"production\": choose a long random value (e.g. openssl rand -base64 32) and put it in "+EnvName("admin.token"))
	}
}

func (v *validator) devices(d Devices) {
	v.secret("devices.enrollment_secret", d.EnrollmentSecret, minAdminToken)
	v.durRange("devices.pairing_code_ttl", d.PairingCodeTTL, time.Minute, 24*time.Hour)
	v.intRange("devices.pairing_attempts", d.PairingAttempts, 1, 100)
	v.intRange("devices.push_port_default", d.PushPortDefault, 1, 65535)
	v.durRange("devices.command_ttl", d.CommandTTL, time.Minute, 30*24*time.Hour)
	v.durRange("devices.push_retry_max", d.PushRetryMax, time.Second, time.Hour)
	v.durRange("devices.push_timeout", d.PushTimeout, time.Second, 5*time.Minute)
	v.intRange("devices.push_min_version", d.PushMinVersion, 1, 2)
}

func (v *validator) log(l Log) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", quote(l.Level), `want "debug", "info", "warn" or "error"`)
	}
	switch l.Format {
	case "text", "json":
	default:
		v.add("log.format", quote(l.Format), `want "text" or "json"`)
	}
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
	if s == "" {
		v.add(key, quote(s), "empty; want the https:// address of the cloud API")
		return
	}
	v.httpsURL(key, s, quote(redactURLQuery(s)), urlHints{
		example:     Default().Cloud.URL,
		loopback:    "a local test cloud",
		credentials: "the store key goes in cloud.store_key",
	})
}

// urlHints are the parts of httpsURL's messages that depend on the key.
type urlHints struct {
	example     string // a valid value
	loopback    string // what a loopback http:// address is for
	credentials string // where credentials go instead
	query       string // added to the "?query" problem after "; ", or ""
}

// httpsURL is the rule for an address storeedge calls: https, or http only for a loopback
// host; a host name; no credentials, query or fragment (the address is shown in the
// configuration view and the log, so it must not carry a secret); a valid port if any.
func (v *validator) httpsURL(key, s, shown string, h urlHints) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		v.add(key, shown, "not a URL; want e.g. "+quote(h.example))
		return
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		v.add(key, shown, "http is allowed only for a loopback host ("+h.loopback+"); use https")
		return
	default:
		v.add(key, shown, "want an https:// URL")
		return
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		v.add(key, shown, "has no host name")
	case u.User != nil:
		v.add(key, shown, "must not hold a user name or password; "+h.credentials)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		reason := `must not have a "?query" or "#fragment"`
		if h.query != "" {
			reason += "; " + h.query
		}
		v.add(key, shown, reason)
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
	case "http", "socks5", "socks5h": // socks5h as curl writes it: the proxy resolves names either way
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
		pw, hasPW := u.User.Password()
		switch user := u.User.Username(); {
		case pw == Redaction || user == Redaction:
			v.add(key, shown, `the credentials are the placeholder shown by "storeedge config"; put the real ones`)
		case user == "" && hasPW:
			v.add(key, shown, "has a password but no user")
		case user == "":
			v.add(key, shown, "has an @ but no user before it: remove the @, or put the user")
		case u.Scheme != "http" && (len(user) > 255 || len(pw) > 255): // SOCKS5's fields are a byte long
			v.add(key, shown, "SOCKS5 allows a user and a password of at most 255 bytes each")
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
	default:
		// What the server reads at start, read now, so that storeedge config finds it; unless
		// this user may not read it (the service's account may: the server checks it at start).
		if _, err := ReadCAFile(f); err != nil && !errors.Is(err, fs.ErrPermission) {
			reason := err.Error()
			var pe *fs.PathError
			if errors.As(err, &pe) {
				reason = "cannot be read: " + pe.Err.Error()
			}
			v.add(key, quote(f), reason)
		}
	}
}

// maxInterfaces bounds discovery.interfaces; a machine with more is not a shop's server.
const maxInterfaces = 64

func (v *validator) discovery(d Discovery) {
	if p := d.UDP.Port; p < 1 || p > 65535 {
		v.add("discovery.udp.port", strconv.Itoa(p), "must be a port between 1 and 65535 (devices look on 57854); to turn UDP discovery off, set discovery.udp.enabled: false")
	}
	v.durRange("discovery.udp.answer_interval", d.UDP.AnswerInterval, 10*time.Millisecond, time.Minute)
	v.intRange("discovery.udp.answer_burst", d.UDP.AnswerBurst, 1, 100)
	const key = "discovery.interfaces"
	shown := quote(strings.Join(d.Interfaces, ","))
	if len(d.Interfaces) > maxInterfaces {
		v.add(key, shown, fmt.Sprintf("more than %d interfaces", maxInterfaces))
	}
	seen := map[string]bool{}
	for _, name := range d.Interfaces {
		switch {
		case len(name) > 256 || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 || strings.Contains(name, ","):
			v.add(key, quote(name), "not an interface name: want the name as `ip link` or `Get-NetAdapter` shows it, at most 256 bytes, without control characters or commas")
		case seen[name]:
			v.add(key, quote(name), "given twice")
		}
		seen[name] = true
	}
	v.durRange("discovery.announce_interval", d.AnnounceInterval, time.Second, time.Hour)
}

func (v *validator) serviceBus(sb ServiceBus) {
	v.connectionString("servicebus.connection_string", "servicebus.enabled", sb.ConnectionString, sb.Enabled,
		"copy the connection string of the queue's shared access policy from the Azure portal")

	if p := QueueNameProblem(sb.Queue); sb.Queue != "" && p != "" {
		v.add("servicebus.queue", quote(sb.Queue), p+`; or "" for the queue the cloud's remote configuration names`)
	}
	v.transport("servicebus.transport", sb.Transport)
	v.durRange("servicebus.lock_renew_interval", sb.LockRenewInterval, time.Second, 5*time.Minute)
	v.intRange("servicebus.max_concurrent", sb.MaxConcurrent, 1, 64)
}

// connectionString checks a Service Bus connection string key; it is required when the key
// enabledKey is true (enabled), and where says where to find it.
func (v *validator) connectionString(key, enabledKey string, sec Secret, enabled bool, where string) {
	switch cs := sec.Reveal(); {
	case cs == "":
		if enabled {
			v.add(key, `""`, fmt.Sprintf(`missing; required when %s is true: %s ("Endpoint=sb://…"), or set %s`, enabledKey, where, EnvName(key)))
		}
	case cs == Redaction:
		v.add(key, quote(Redaction), `is the placeholder shown by "storeedge config", not the connection string; put the real one`)
	case len(cs) > maxSecretLen:
		v.add(key, quote(Redaction), fmt.Sprintf("longer than %d bytes; is it the right value?", maxSecretLen))
	case strings.TrimSpace(cs) != cs || strings.IndexFunc(cs, unicode.IsControl) >= 0:
		v.add(key, quote(Redaction), "contains line breaks or control characters, or starts or ends with a space (a copy-paste slip?)")
	default:
		if reason := connectionStringProblem(cs); reason != "" {
			v.add(key, quote(Redaction), reason)
		}
	}
}

// transport checks a Service Bus transport key.
func (v *validator) transport(key, t string) {
	switch t {
	case TransportWebSockets, TransportAMQP:
	default:
		v.add(key, quote(t), `want "websockets" (port 443, through wan.proxy) or "amqp" (ports 5671/5672, no proxy; for local testing only)`)
	}
}

// media checks the media.* keys.
func (v *validator) media(m Media) {
	// A malformed secret is reported alone among the checks of its own value; the other keys
	// are checked all the same.
	malformed := func(key string, sec Secret) bool {
		s := sec.Reveal()
		if len(s) <= maxSecretLen && strings.IndexFunc(s, unicode.IsControl) < 0 && strings.TrimSpace(s) == s {
			return false
		}
		v.add(key, quote(Redaction), fmt.Sprintf("longer than %d bytes, or holds line breaks, control characters or surrounding spaces (a copy-paste slip?)", maxSecretLen))
		return true
	}
	badURL := malformed("media.container_url", m.ContainerURL)
	badCS := malformed("media.connection_string", m.ConnectionString)
	if u := m.ContainerURL.Reveal(); u != "" && !badURL {
		v.containerURL(u)
	}
	cs, name := m.ConnectionString.Reveal(), m.Container
	switch {
	case cs != "" && m.ContainerURL != "":
		v.add("media.connection_string", quote(Redaction), "set together with media.container_url; give one of the two")
	case cs != "" && name == "":
		v.add("media.container", `""`, "missing; required with media.connection_string: the name of the container that holds the media")
	case cs == "" && name != "" && m.ContainerURL == "":
		v.add("media.container", quote(name), "set without media.connection_string, which it goes with: set the connection string too, or remove media.container (media.container_url names its container itself)")
	case badCS:
	case cs == Redaction:
		v.add("media.connection_string", quote(Redaction), `is the placeholder shown by "storeedge config", not the connection string; put the real one`)
	case cs != "":
		if p := storageConnectionProblem(cs); p != "" {
			v.add("media.connection_string", quote(Redaction), p)
		}
	}
	if name != "" && !isContainerName(name) {
		v.add("media.container", quote(name), "want 3 to 63 lower-case letters, digits and single '-', starting and ending with a letter or digit (Azure's rule for container names)")
	}
	if n := m.CacheMaxBytes; n < 1<<20 {
		v.add("media.cache_max_bytes", strconv.FormatInt(n, 10), "must be at least 1048576 (1 MiB)")
	}
	if n := m.MaxBandwidth; n != 0 && n < 16<<10 {
		v.add("media.max_bandwidth", strconv.FormatInt(n, 10), "must be 0 (no cap) or at least 16384 bytes per second")
	}
	v.intRange("media.parallel", m.Parallel, 1, 32)
	if m.LargeFileBytes < 1<<20 {
		v.add("media.large_file_bytes", strconv.FormatInt(m.LargeFileBytes, 10), "must be at least 1048576 (1 MiB)")
	}
	if _, _, _, err := ParseWindow(m.LargeFileWindow); err != nil {
		v.add("media.large_file_window", quote(m.LargeFileWindow), err.Error())
	}
	v.durRange("media.on_demand_wait", m.OnDemandWait, 0, 5*time.Minute)
	v.durRange("media.stall_timeout", m.StallTimeout, time.Second, time.Hour)
	v.durRange("media.retry_max", m.RetryMax, time.Second, 24*time.Hour)
	v.durRange("media.progress_interval", m.ProgressInterval, time.Second, time.Hour)
}

// containerURL checks media.container_url: https (http only for a loopback test store), with
// a container in the path and a SAS token in the query. The value is secret: never shown.
func (v *validator) containerURL(s string) {
	const key = "media.container_url"
	if s == Redaction {
		v.add(key, quote(Redaction), `is the placeholder shown by "storeedge config", not the URL; put the real one`)
	} else if p := ContainerURLProblem(s); p != "" {
		v.add(key, quote(Redaction), p)
	}
}

// QueueNameProblem says what is wrong with a Service Bus queue name, or "" when there is nothing:
// the rule of servicebus.queue, which the queue the cloud's remote configuration names must keep
// too.
func QueueNameProblem(q string) string {
	if q == "" || len(q) > maxQueueLen || !isQueueName(q) {
		return fmt.Sprintf("want 1 to %d letters, digits, '.', '_', '/' or '-'", maxQueueLen)
	}
	return ""
}

// ContainerURLProblem says what is wrong with the SAS URL of a Blob container, or "" when there
// is nothing: the rule of media.container_url, which the container URL of the cloud's remote
// configuration must keep too. The reason never quotes the URL, whose SAS token is a secret.
func ContainerURLProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case len(s) > maxSecretLen:
		return fmt.Sprintf("longer than %d bytes; is it the right value?", maxSecretLen)
	case err != nil || u.Opaque != "" || u.Host == "":
		return "not a URL; want https://<account>.blob.core.windows.net/<container>?<SAS token>"
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		return "want an https:// URL (http:// only for a test store on this machine)"
	case strings.Trim(u.Path, "/") == "":
		return "names no container; want https://<account>.blob.core.windows.net/<container>?<SAS token>"
	case u.Query().Get("sig") == "":
		return "carries no SAS token (no sig= in its query); copy the container's SAS URL, or use media.connection_string"
	}
	return ""
}

// storageConnectionProblem says what is wrong with an Azure Storage connection string, or "".
func storageConnectionProblem(cs string) string {
	const want = `want DefaultEndpointsProtocol=https;AccountName=<account>;AccountKey=<key>;EndpointSuffix=core.windows.net (or BlobEndpoint=…;SharedAccessSignature=…), as the Azure portal shows it under "Access keys"`
	parts := map[string]string{}
	for _, p := range strings.Split(strings.TrimRight(cs, ";"), ";") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return "has a part without '='; " + want
		}
		// The Azure SDK reads the names as written: "accountname" is no AccountName to it.
		for _, name := range storageConnectionNames {
			if k != name && strings.EqualFold(strings.TrimSpace(k), name) {
				return fmt.Sprintf("has %q where Azure reads only %q: the names are exact, case and spaces count; %s", k, name, want)
			}
		}
		parts[k] = v
	}
	has := func(k string) bool { _, ok := parts[k]; return ok }
	switch {
	case has("AccountName") && has("AccountKey"):
	case has("BlobEndpoint") && has("SharedAccessSignature"):
	case has("BlobEndpoint") && has("AccountName") && has("AccountKey"):
	default:
		return "lacks AccountName and AccountKey, or BlobEndpoint and SharedAccessSignature; " + want
	}
	// The endpoint as the SDK builds it: its scheme is the one requests go with.
	endpoint := parts["BlobEndpoint"]
	if endpoint == "" {
		endpoint = cmp.Or(parts["DefaultEndpointsProtocol"], "https") + "://" + parts["AccountName"] + ".blob." + cmp.Or(parts["EndpointSuffix"], "core.windows.net")
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil || u.Host == "":
		return "its endpoint (BlobEndpoint, or DefaultEndpointsProtocol, AccountName and EndpointSuffix) is not a URL; " + want
	case u.Scheme == "https", u.Scheme == "http" && isLoopback(u.Hostname()):
		return ""
	default:
		return "its endpoint is not https: the key or SAS would cross the network in clear (http is allowed only for a loopback test store); " + want
	}
}

// storageConnectionNames are the names of a storage connection string's parts, as Azure spells
// them.
var storageConnectionNames = []string{"DefaultEndpointsProtocol", "AccountName", "AccountKey", "EndpointSuffix", "BlobEndpoint", "SharedAccessSignature"}

// isContainerName reports whether s follows Azure's rule for container names.
func isContainerName(s string) bool {
	if len(s) < 3 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// connectionStringProblem checks an Azure Service Bus connection string the way the Azure SDK
// reads it (Name=value parts separated by ";", names in any case) and says what is wrong, or
// "". The reason names the parts that are missing, never a value.
func connectionStringProblem(cs string) string {
	const want = `want Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<policy>;SharedAccessKey=<key> (or SharedAccessSignature=<token> in place of the name and key), as the Azure portal shows it under "Shared access policies"`
	var endpoint, keyName, key, sas string
	for _, part := range strings.Split(cs, ";") {
		if part == "" {
			continue // "…;;…" or a trailing ";"
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return `has a part without "="; ` + want
		}
		switch {
		case strings.EqualFold(name, "Endpoint"):
			endpoint = value
		case strings.EqualFold(name, "SharedAccessKeyName"):
			keyName = value
		case strings.EqualFold(name, "SharedAccessKey"):
			key = value
		case strings.EqualFold(name, "SharedAccessSignature"):
			sas = value
		}
	}
	var problems, missing []string
	if endpoint == "" {
		missing = append(missing, "Endpoint")
	} else if u, err := url.Parse(endpoint); err != nil || !strings.EqualFold(u.Scheme, "sb") || u.Hostname() == "" {
		problems = append(problems, "its Endpoint is not sb://<host>")
	}
	if sas == "" {
		if keyName == "" {
			missing = append(missing, "SharedAccessKeyName")
		}
		if key == "" {
			missing = append(missing, "SharedAccessKey (or SharedAccessSignature)")
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "lacks "+joinAnd(missing))
	}
	if len(problems) == 0 {
		return ""
	}
	return strings.Join(problems, " and ") + "; " + want
}

// joinAnd writes a list as a person would: "a", "a and b", "a, b and c".
func joinAnd(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func isQueueName(s string) bool {
	for _, r := range s {
		if !(r == '.' || r == '_' || r == '/' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

func (v *validator) backOffice(b BackOffice) {
	v.schedule("backoffice.schedule", b.Schedule)

	exportOK := v.folder("backoffice.export.dir", b.Export.Dir)
	testOK := v.folder("backoffice.export.test_dir", b.Export.TestDir)
	if exportOK && testOK && samePath(b.Export.TestDir, b.Export.Dir) {
		v.add("backoffice.export.test_dir", quote(b.Export.TestDir), "same folder as backoffice.export.dir; test orders need a folder of their own, away from the production orders")
	}
	switch b.Export.Format {
	case ExportJSON, ExportCSV, ExportXML:
	default:
		v.add("backoffice.export.format", quote(b.Export.Format), `want "json", "csv" or "xml"`)
	}

	if u := b.Webhook.URL; u != "" {
		v.httpsURL("backoffice.webhook.url", u, quote(redactURLQuery(u)), urlHints{
			example:     "https://erp.example.com/orders",
			loopback:    "a receiver on this machine",
			credentials: "sign the requests with backoffice.webhook.secret instead",
			query:       "a token there would show in the log and the configuration view; sign the requests with backoffice.webhook.secret instead",
		})
	}
	const secretKey = "backoffice.webhook.secret"
	switch s := b.Webhook.Secret.Reveal(); {
	case s == "":
	case s == Redaction:
		v.add(secretKey, quote(Redaction), `is the placeholder shown by "storeedge config", not the secret; put the real one`)
	case len(s) > maxSecretLen:
		v.add(secretKey, quote(Redaction), fmt.Sprintf("longer than %d bytes; is it the right value?", maxSecretLen))
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		v.add(secretKey, quote(Redaction), "contains spaces, line breaks or control characters (a copy-paste slip?)")
	}
	v.durRange("backoffice.webhook.timeout", b.Webhook.Timeout, time.Second, 5*time.Minute)

	if v.folder("backoffice.import.dir", b.Import.Dir) {
		switch d := b.Import.Dir; {
		case exportOK && samePath(d, b.Export.Dir):
			v.add("backoffice.import.dir", quote(d), "same folder as backoffice.export.dir; the ERP's files and storeedge's order files need separate folders")
		case testOK && samePath(d, b.Export.TestDir):
			v.add("backoffice.import.dir", quote(d), "same folder as backoffice.export.test_dir; the ERP's files and storeedge's order files need separate folders")
		}
	}
}

// secret checks an optional credential that people choose: long enough not to be guessed, on
// one line, and not the placeholder of the configuration view.
func (v *validator) secret(key string, sec Secret, minLen int) {
	switch s := sec.Reveal(); {
	case s == "":
	case s == Redaction:
		v.add(key, quote(Redaction), `is the placeholder shown by "storeedge config", not the value; put the real one`)
	case utf8.RuneCountInString(s) < minLen:
		v.add(key, quote(Redaction), fmt.Sprintf("shorter than %d characters; choose a long random value (e.g. openssl rand -base64 32)", minLen))
	case len(s) > maxSecretLen:
		v.add(key, quote(Redaction), fmt.Sprintf("longer than %d bytes; is it the right value?", maxSecretLen))
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		v.add(key, quote(Redaction), "contains spaces, line breaks or control characters (a copy-paste slip?)")
	}
}

// schedule checks a schedule key with the parser that runs it.
func (v *validator) schedule(key, s string) {
	const (
		want = `want 5 fields, "minute hour day-of-month month day-of-week", e.g. "*/5 * * * *" or "30 2 * * 1-5", or "@every 10m", "@hourly", "@daily"`
	)
	if strings.TrimSpace(s) == "" {
		v.add(key, quote(s), "empty; "+want)
		return
	}
	sched, err := ParseSchedule(s)
	if err != nil {
		v.add(key, quote(s), "not a schedule: "+truncate(err.Error(), 200)+"; "+want)
		return
	}
	// A date that does not exist ("0 0 30 2 *") parses, and never comes: the cron library
	// then gives the zero time.
	if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		v.add(key, quote(s), "never runs (no such date); check the day-of-month and month fields")
	}
}

func (v *validator) backup(b Backup, dataDir string) {
	v.schedule("backup.schedule", b.Schedule)
	v.intRange("backup.keep", b.Keep, 1, 1000)
	if v.folder("backup.dir", b.Dir) && dataDir != "" && samePath(b.Dir, dataDir) {
		v.add("backup.dir", quote(b.Dir), "same folder as data_dir; a backup there is lost with the disk it should protect against: use another disk or a network share")
	}
}

// folder checks the optional absolute folder path d and reports whether it is set and valid.
func (v *validator) folder(key, d string) bool {
	switch {
	case d == "":
		return false
	case !utf8.ValidString(d) || strings.IndexFunc(d, unicode.IsControl) >= 0:
		v.add(key, quote(d), "contains control characters or invalid UTF-8")
	case !filepath.IsAbs(d):
		v.add(key, quote(d), "want an absolute path (a service's working directory is not predictable)")
	default:
		return true
	}
	return false
}

// samePath tells whether two absolute paths name the same folder, as far as can be told
// without the file system: "/srv/out/" is "/srv/out", and Windows ignores case.
func samePath(a, b string) bool {
	a, b = filepath.Clean(a), filepath.Clean(b)
	if runtime.GOOS == "windows" {
		return strings.EqualFold(a, b)
	}
	return a == b
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
