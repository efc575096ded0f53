package config

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
)

// This file holds the logs.* section: shipping the daemon's log to the vendor's log intake
// (docs/remote-support.md), off unless the shop turns it on.

// Logs configures what happens to the daemon's log beyond the local output (Log).
type Logs struct {
	Ship LogsShip `yaml:"ship"`
}

// LogsShip configures shipping log records, redacted, to an HTTPS log intake through the WAN
// proxy.
type LogsShip struct {
	// Enabled turns shipping on. Off by default: nothing leaves the shop unless the shop says so.
	Enabled bool `yaml:"enabled"`
	// URL is the intake's address: https, or http only for a loopback host (a local test
	// intake); no credentials, query or fragment.
	URL string `yaml:"url"`
	// APIKey identifies the shop to the intake. Required when Enabled.
	APIKey Secret `yaml:"api_key"`
	// Level is the least severe level shipped: debug, info, warn or error. It applies on its
	// own: log.level decides what the local log shows.
	Level string `yaml:"level"`
	// BufferMB bounds the records kept on disk while the intake cannot be reached; when full,
	// the oldest are dropped and counted.
	BufferMB int `yaml:"buffer_mb"`
	// BatchSize is the most records sent in one request.
	BatchSize int `yaml:"batch_size"`
	// BatchInterval is the longest a record waits on disk before it is sent, when the intake
	// answers.
	BatchInterval time.Duration `yaml:"batch_interval"`
}

// The defaults of logs.ship.*.
const (
	// DefaultLogsShipURL is the vendor's log intake, host and port as its documents for shops
	// name them (api.logmatic.io, 443).
	DefaultLogsShipURL           = "https://api.logmatic.io/v1/input"
	DefaultLogsShipLevel         = "info"
	DefaultLogsShipBufferMB      = 64
	DefaultLogsShipBatchSize     = 500
	DefaultLogsShipBatchInterval = 10 * time.Second
)

func defaultLogs() Logs {
	return Logs{Ship: LogsShip{
		URL:           DefaultLogsShipURL,
		Level:         DefaultLogsShipLevel,
		BufferMB:      DefaultLogsShipBufferMB,
		BatchSize:     DefaultLogsShipBatchSize,
		BatchInterval: DefaultLogsShipBatchInterval,
	}}
}

// SlogLevel is Level as a slog.Level; a level that does not validate gives slog.LevelInfo.
func (s LogsShip) SlogLevel() slog.Level { return Log{Level: s.Level}.SlogLevel() }

// maxAPIKeyLen bounds logs.ship.api_key.
const maxAPIKeyLen = 1024

func (v *validator) logsShip(s LogsShip) {
	const urlKey, keyKey = "logs.ship.url", "logs.ship.api_key"
	if s.URL == "" {
		v.add(urlKey, `""`, "empty; want the https:// address of the log intake, e.g. "+quote(DefaultLogsShipURL))
	} else {
		v.httpsURL(urlKey, s.URL, quote(redactURLQuery(s.URL)), urlHints{
			example:     DefaultLogsShipURL,
			loopback:    "a test intake on this machine",
			credentials: "the key goes in logs.ship.api_key",
			query:       "a key there would show in the configuration view; put it in logs.ship.api_key",
		})
	}
	switch k := s.APIKey.Reveal(); {
	case k == "":
		if s.Enabled {
			v.add(keyKey, `""`, "missing; required when logs.ship.enabled is true: the vendor gives it with the intake's address; put it in "+EnvName(keyKey))
		}
	case k == Redaction:
		v.add(keyKey, quote(Redaction), `is the placeholder shown by "storeedge config", not the key; put the real one`)
	case len(k) > maxAPIKeyLen:
		v.add(keyKey, quote(Redaction), fmt.Sprintf("longer than %d bytes; is it the right value?", maxAPIKeyLen))
	case strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		v.add(keyKey, quote(Redaction), "contains spaces, line breaks or control characters (a copy-paste slip?)")
	}
	switch s.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("logs.ship.level", quote(s.Level), `want "debug", "info", "warn" or "error"`)
	}
	v.intRange("logs.ship.buffer_mb", s.BufferMB, 1, 10240)
	v.intRange("logs.ship.batch_size", s.BatchSize, 1, 10000)
	v.durRange("logs.ship.batch_interval", s.BatchInterval, time.Second, time.Hour)
}

// SecretValues returns every secret value of the configuration that is set: each Secret key,
// the credentials of wan.proxy, and on their own the keys and signatures inside
// servicebus.connection_string, support.servicebus.connection_string and
// media.connection_string, and the signature of media.container_url's SAS. Log shipping and
// support's answers remove them from whatever they send. Never log or show the result.
func (c Config) SecretValues() []string {
	var out []string
	v := reflect.ValueOf(c)
	for _, l := range leaves {
		if l.kind == kindSecret {
			if s := v.FieldByIndex(l.index).Interface().(Secret).Reveal(); s != "" {
				out = append(out, s)
			}
		}
	}
	if u, err := url.Parse(c.WAN.Proxy.Reveal()); err == nil && u.User != nil {
		pw, has := u.User.Password()
		switch {
		case has && pw != "":
			out = append(out, pw)
		case !has && u.User.Username() != "":
			out = append(out, u.User.Username()) // a user name alone is usually a token
		}
	}
	for _, cs := range []Secret{c.ServiceBus.ConnectionString, c.Support.ServiceBus.ConnectionString, c.Media.ConnectionString} {
		for _, s := range ConnectionStringSecrets(cs.Reveal()) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	// A SAS is a query of Name=value parts; its signature is the secret (the rest, times and
	// permissions, says nothing that opens the container).
	if u, err := url.Parse(c.Media.ContainerURL.Reveal()); err == nil {
		if sig := u.Query().Get("sig"); sig != "" {
			out = append(out, sig) // the redactor looks for its escaped forms too
		}
	}
	return out
}

// ConnectionStringSecrets returns the secret values of an Azure connection string: its
// SharedAccessKey, SharedAccessSignature and AccountKey, every value of a part written twice
// (which one a library takes is its own choice), as written and trimmed (a library may trim it
// before it quotes it).
func ConnectionStringSecrets(cs string) []string {
	var out []string
	for _, name := range []string{"SharedAccessKey", "SharedAccessSignature", "AccountKey"} {
		for _, v := range ConnectionStringParts(cs, name) {
			for _, s := range []string{v, strings.TrimSpace(v)} {
				if s != "" && !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// ConnectionStringPart returns the value of part name (any case) of an Azure connection string
// (Name=value parts separated by ";"), the last when given twice; "" when there is none.
func ConnectionStringPart(cs, name string) string {
	values := ConnectionStringParts(cs, name)
	if len(values) == 0 {
		return ""
	}
	return values[len(values)-1]
}

// ConnectionStringParts returns every value of part name (any case) of an Azure connection
// string, in order.
func ConnectionStringParts(cs, name string) []string {
	var values []string
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			values = append(values, v)
		}
	}
	return values
}

// MinSecretLen is the shortest secret value looked for in text: a shorter one would match inside
// ordinary words and numbers.
const MinSecretLen = 4

// SecretForms returns the texts under which secrets may appear in a message: each value of at
// least MinSecretLen bytes as written, percent-encoded in a URL's query or path, and as a URL's
// user information writes it (a proxy's password in an echoed URL); longest first, each once,
// so that a replacement of them in that order never leaves part of a longer one.
func SecretForms(secrets []string) []string {
	var forms []string
	for _, s := range secrets {
		if len(s) < MinSecretLen {
			continue
		}
		userinfo := strings.TrimPrefix(url.UserPassword("u", s).String(), "u:")
		forms = append(forms, s, url.QueryEscape(s), url.PathEscape(s), userinfo)
	}
	slices.SortFunc(forms, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	return slices.Compact(forms)
}
