package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
)

// Redaction is what a secret prints as.
const Redaction = "xxxxx"

// Secret is a configuration value that must never be shown: fmt (every verb, %#v included),
// encoding/json, yaml.v3 and log/slog all see "xxxxx" for a non-empty Secret and "" for an
// empty one, so that "is it set?" stays answerable. Reveal returns the value for the one place
// that needs it (the Authorization header, say).
//
// The redaction holds for a Secret passed directly or held in an exported struct field; fmt
// cannot call methods on unexported fields, so keep Secrets in exported fields.
type Secret string

// Reveal returns the secret value itself. Never log or format its result.
func (s Secret) Reveal() string { return string(s) }

// String returns "xxxxx", or "" when the secret is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redaction
}

// GoString makes %#v print the redaction too.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// Format applies any fmt verb to the redaction rather than to the value.
func (s Secret) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.String(), s.GoString()) }

// MarshalYAML writes the redaction.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON writes the redaction.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText writes the redaction (for encoders that prefer text, and map keys).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue makes slog log the redaction.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Proxy is the wan.proxy setting: "", "direct", or a proxy URL that may carry a user name and
// password. It prints, marshals and logs with the password replaced by "xxxxx" (like
// url.URL.Redacted), so "http://shop:xxxxx@proxy.lan:3128" can be shown to a person. A user
// name without a password is redacted too, since it is then usually a token. A value that does
// not parse as a URL but contains "@" is redacted whole. Reveal returns the real value.
type Proxy string

// Reveal returns the proxy setting with its password. Never log or format its result.
func (p Proxy) Reveal() string { return string(p) }

// String returns the setting with any credentials replaced by "xxxxx".
func (p Proxy) String() string { return redactURL(string(p)) }

// GoString makes %#v print the redacted form too.
func (p Proxy) GoString() string { return fmt.Sprintf("config.Proxy(%q)", p.String()) }

// Format applies any fmt verb to the redacted form.
func (p Proxy) Format(f fmt.State, verb rune) { formatRedacted(f, verb, p.String(), p.GoString()) }

// MarshalYAML writes the redacted form.
func (p Proxy) MarshalYAML() (any, error) { return p.String(), nil }

// MarshalJSON writes the redacted form.
func (p Proxy) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// MarshalText writes the redacted form.
func (p Proxy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// LogValue makes slog log the redacted form.
func (p Proxy) LogValue() slog.Value { return slog.StringValue(p.String()) }

func formatRedacted(f fmt.State, verb rune, s, gos string) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, gos)
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), s)
}

// redactURL hides the credentials of a URL-like string, and the whole string if it has an "@"
// that url.Parse cannot place (so a mistyped password is hidden as well as a correct one); of
// one that does not parse, what follows a colon in its host part unless it is a port, to the
// end (credentials without their host).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if !strings.Contains(s, "@") {
		if _, rest, ok := strings.Cut(s, "://"); ok && err != nil {
			// "http://user:password" with the host left out: what follows a colon that is not
			// a port (digits, a space typed after them) may be a password.
			// The rest is hidden with it: a password may hold a "/".
			authority, _, _ := strings.Cut(rest, "/")
			hostEnd := 0
			if strings.HasPrefix(authority, "[") { // an IPv6 address: its colons are its own
				hostEnd = strings.IndexByte(authority, ']') + 1
			}
			if i := strings.IndexByte(authority[hostEnd:], ':'); i >= 0 {
				host, after := authority[:hostEnd+i], authority[hostEnd+i+1:]
				if strings.Trim(strings.TrimSpace(after), "0123456789") != "" {
					return s[:len(s)-len(rest)] + host + ":" + Redaction
				}
			}
		}
		return s
	}
	if err != nil || u.User == nil || u.Opaque != "" || strings.Contains(u.Host, "@") {
		return Redaction
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Redaction)
	} else {
		u.User = url.User(Redaction)
	}
	r := u.String()
	// url.URL.String escapes nothing in "xxxxx", so the only credentials left are ours; check
	// anyway that nothing of the original userinfo survived re-encoding.
	if strings.Count(r, "@") != 1 {
		return Redaction
	}
	return r
}

// redactURLQuery is redactURL with a query or fragment hidden as well: an address is where a
// token tends to be pasted (?access_token=…, a receiver's ?code=…); Validate refuses a query
// in every address storeedge calls, and it must not show one either.
func redactURLQuery(s string) string {
	r := redactURL(s)
	if i := strings.IndexAny(r, "?#"); i >= 0 {
		r = r[:i+1] + Redaction
	}
	return r
}

// SecretsSet lists the keys of c that hold a secret, in document order: every secret key that is
// set, and wan.proxy when its URL carries credentials (what the configuration view hides).
func (c Config) SecretsSet() []string {
	v := reflect.ValueOf(c)
	var keys []string
	for _, l := range leaves {
		f := v.FieldByIndex(l.index)
		switch {
		case l.kind == kindSecret && f.String() != "",
			l.kind == kindProxy && f.Interface().(Proxy).String() != f.String():
			keys = append(keys, l.key)
		}
	}
	return keys
}
