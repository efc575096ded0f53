package logship

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strings"

	"github.com/storeedge/storeedge/internal/config"
)

// Redaction replaces whatever is redacted, as the configuration view shows secrets.
const Redaction = "xxxxx"

// Redactor removes secrets and personal data from records before they are written to the disk
// buffer (docs/remote-support.md lists exactly what). It is safe for concurrent use.
type Redactor struct {
	secrets *strings.Replacer // nil when there are none
	forms   []string          // what secrets looks for, to skip it when none is there
}

// NewRedactor returns a Redactor that also removes every value of secrets (each secret key of
// the configuration), as written and as percent-encoded in a URL.
func NewRedactor(secrets []string) *Redactor {
	forms := config.SecretForms(secrets)
	r := &Redactor{}
	if len(forms) > 0 {
		pairs := make([]string, 0, 2*len(forms))
		for _, f := range forms {
			pairs = append(pairs, f, Redaction)
		}
		r.secrets, r.forms = strings.NewReplacer(pairs...), forms
	}
	return r
}

// rule is one pattern of text that is redacted. guard tells, from the text lower-cased,
// whether the pattern may match at all: most text cannot, and this keeps the writer cheap.
type rule struct {
	guard func(lower string) bool
	re    *regexp.Regexp
	with  string
	keep  string // a match that starts with it stays as it is
	// object: re matches the opening of an object ("customer": {), and what it opens is
	// redacted with it, to its closing brace at any depth.
	object bool
}

// anyOf is a guard: the text holds one of subs.
func anyOf(subs ...string) func(string) bool {
	return func(s string) bool {
		return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
	}
}

// allOf is a guard: the text holds every one of subs.
func allOf(subs ...string) func(string) bool {
	return func(s string) bool {
		return !slices.ContainsFunc(subs, func(sub string) bool { return !strings.Contains(s, sub) })
	}
}

// around is a guard: c occurs between two bytes that before and after accept.
func around(c byte, before, after func(byte) bool) func(string) bool {
	return func(s string) bool {
		for i := 1; i+1 < len(s); i++ {
			if s[i] == c && before(s[i-1]) && after(s[i+1]) {
				return true
			}
		}
		return false
	}
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }
func notWord(b byte) bool {
	return !(isDigit(b) || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || b == '_')
}

// zeroStart is the guard of national telephone numbers: a 0 that starts a word, then a digit.
func zeroStart(s string) bool {
	if len(s) > 1 && s[0] == '0' && isDigit(s[1]) {
		return true
	}
	return around('0', notWord, isDigit)(s)
}

// jsonGuard is the guard of the JSON member rules.
var jsonGuard = func(lower string) bool { return credentialGuard(lower) || personalGuard(lower) }

var credentialGuard = anyOf("token", "pass", "pwd", "secret", "key", "pairing", "code", "note", "customer", "cookie", "address", "authorization", "connection")

// personalGuard is the guard of the rules of personalKeys alone: the names lower-cased, so
// "firstname" is firstName's.
var personalGuard = anyOf("customer", "firstname", "first_name", "lastname", "last_name", "fullname", "full_name", "givenname",
	"given_name", "familyname", "family_name", "surname", "phone", "mobile", "mail", "tel\"", "tel'", "tel=", "tel:", "tel ")

// rules are applied in order: the wider forms first, so that a token inside them is not half
// redacted by a narrower one.
var rules = []rule{
	// Credentials in a URL: scheme://user:password@host.
	{allOf("://", "@"), regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@"'<>]+@`), "${1}" + Redaction + "@", "", false},
	// A Service Bus or Event Hubs SAS token: SharedAccessSignature sr=…&sig=…&se=…&skn=….
	{anyOf("sharedaccesssignature"), regexp.MustCompile(`(?i)SharedAccessSignature\s+sr=[^\s"'<>;]+`), "SharedAccessSignature " + Redaction, "", false},
	// Parts of connection strings: …;SharedAccessKey=…;AccountKey=…;Password=….
	{anyOf("key=", "signature=", "password=", "pwd=", "secret="), regexp.MustCompile(`(?i)\b(SharedAccessKey|SharedAccessSignature|AccountKey|AccessKey|Password|Pwd|ApiKey|ClientSecret)=[^;\s"'<>&]+`), "${1}=" + Redaction, "", false},
	// Query parameters that carry credentials, SAS signatures (sig=) among them.
	{anyOf("sig", "secret", "token", "code=", "key=", "pass", "pwd=", "auth=", "credential="), regexp.MustCompile(`(?i)([?&;](?:sig|signature|secret|token|access_token|id_token|refresh_token|code|key|api_key|apikey|password|passwd|pwd|auth|x-amz-signature|x-amz-credential|x-goog-signature)=)[^&\s#"'<>;]*`), "${1}" + Redaction, "", false},
	// Authorization header values.
	{anyOf("bearer", "basic"), regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}`), "${1} " + Redaction, "", false},
	// key=value and key: value for names that hold credentials.
	{anyOf("token", "pass", "secret", "key", "pairing", "authorization"), regexp.MustCompile(`(?i)\b([a-z0-9_-]*?(?:token|password|passwd|secret|api[_-]?key)|store[_-]?key|pairing[_-]?code|authorization)(\s*[:=]\s*)((?:bearer|basic|digest|sharedkey|sharedaccesssignature)\s+)?("[^"]*"|'[^']*'|[^\s,;&"'}\]]+)`), "${1}${2}${3}" + Redaction, "", false},
	// JSON that carries a customer or a credential, as an order echoed by another system, also
	// escaped inside a JSON string (\"email\":\"…\"), and also when the text is cut short
	// inside it (a customer cut off is redacted to the end).
	{anyOf("customer"), regexp.MustCompile(`(?i)"customer"(\s*:\s*)\{`), `"customer"${1}"` + Redaction + `"`, "", true},
	{anyOf("customer"), regexp.MustCompile(`(?i)\\"customer\\"(\s*:\s*)\{`), `\"customer\"${1}\"` + Redaction + `\"`, "", true},
	{jsonGuard, regexp.MustCompile(`(?i)"(` + jsonKeys + `)"(\s*:\s*)"(?:[^"\\]|\\.)*"`), `"${1}"${2}"` + Redaction + `"`, "", false},
	// The same as other systems print a structure: single quotes (Python), and a number where
	// a telephone number was stored as one.
	{anyOf("customer"), regexp.MustCompile(`(?i)'customer'(\s*:\s*)\{`), `'customer'${1}'` + Redaction + `'`, "", true},
	{jsonGuard, regexp.MustCompile(`(?i)'(` + jsonKeys + `)'(\s*:\s*)'(?:[^'\\]|\\.)*'`), `'${1}'${2}'` + Redaction + `'`, "", false},
	{personalGuard, regexp.MustCompile(`(?i)"(` + personalKeys + `)"(\s*:\s*)\d+`), `"${1}"${2}"` + Redaction + `"`, "", false},
	// key=value text of a person's data, as a log line of another system gives it: the name a
	// word of its own (not the end of "pos-mobile:8443" or "Headphones:").
	{personalGuard, regexp.MustCompile(`(?i)(^|[^\w-])(` + personalKeys + `)(\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&"'}\]]+)`), "${1}${2}${3}" + Redaction, "", false},
	{jsonGuard, regexp.MustCompile(`(?i)\\"(` + jsonKeys + `)\\"(\s*:\s*)\\"(?:\\\\\\\\|\\\\\\"|[^"\\]|\\[^"])*\\"`), `\"${1}\"${2}\"` + Redaction + `\"`, "", false},
	// The same in XML and in Go's %+v of an order.
	{anyOf("customer"), regexp.MustCompile(`(?is)<customer(?:\s[^>]*)?>.*?(?:</customer>|$)`), "<customer>" + Redaction + "</customer>", "", false},
	{anyOf("customer"), regexp.MustCompile(`\bCustomer:&?\{`), "Customer:" + Redaction, "", true},
	// E-mail addresses.
	{anyOf("@"), regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`), Redaction, Redaction + "@", false},
	// Telephone numbers: international (+33 6 12 34 56 78, 0033 6 12 34 56 78) and national
	// (06 12 34 56 78).
	{anyOf("+"), regexp.MustCompile(`\+\d[\d\s().-]{6,}\d`), Redaction, "", false},
	{anyOf("00"), regexp.MustCompile(`\b00[1-9]\d{0,2}(?:[\s.-]\d{1,4}){3,}\b`), Redaction, "", false},
	{zeroStart, regexp.MustCompile(`\b0\d(?:[\s.-]?\d\d){4}\b`), Redaction, "", false},
	// Pairing codes as storeedge makes them: 1234-5678.
	{around('-', isDigit, isDigit), regexp.MustCompile(`\b\d{4}-\d{4}\b`), Redaction, "", false},
}

func (ru rule) replace(s string) string {
	if ru.object {
		return ru.replaceObjects(s)
	}
	if ru.keep == "" {
		return ru.re.ReplaceAllString(s, ru.with)
	}
	return ru.re.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, ru.keep) {
			return m // a host after credentials redacted by an earlier rule
		}
		return ru.re.ReplaceAllString(m, ru.with)
	})
}

// replaceObjects replaces each object ru.re opens, from its name to its closing brace (braces
// counted at any depth: a customer's address holds its geolocation, and not inside quoted
// strings: a name may hold one), or to the end of the text when the text is cut short inside
// it.
//
// Two readings of where objects end are made, and what either replaces is replaced: quotes
// read as strings (a brace in a name does not end the object), or ignored (Go's %+v quotes
// nothing, and two apostrophes in its names would hide a brace between them). Each reading goes
// through the objects as it alone would (an object inside one it replaced already is skipped),
// so each scans any part of the text once.
func (ru rule) replaceObjects(s string) string {
	var b []byte
	last := 0                // where the text replaced ends
	quoted, unquoted := 0, 0 // where each reading's last object ends
	for _, m := range ru.re.FindAllStringSubmatchIndex(s, -1) {
		byQuoted, byUnquoted := m[0] >= quoted, m[0] >= unquoted
		if !byQuoted && !byUnquoted {
			continue // inside an object both readings replace
		}
		if byQuoted {
			quoted = closingBrace(s, m[1])
			if strings.HasPrefix(s[m[0]:], `\"`) {
				quoted = closingBraceEscaped(s, m[1])
			}
		}
		if byUnquoted {
			unquoted = closingBraceUnquoted(s, m[1])
		}
		if m[0] >= last {
			b = append(b, s[last:m[0]]...)
			b = ru.re.ExpandString(b, ru.with, s, m)
		}
		if byQuoted {
			last = max(last, quoted)
		}
		if byUnquoted {
			last = max(last, unquoted)
		}
	}
	if b == nil {
		return s
	}
	return string(append(b, s[last:]...))
}

// closingBrace is the end of the object whose opening brace ends at i: just after the brace
// that closes it, or len(s). Braces in strings, in double or single quotes (JSON, and Python's
// print of a structure) with backslash escapes, do not count.
func closingBrace(s string, i int) int {
	depth := 1
	var quote byte // the quote of the string the scan is in; 0 outside
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == '\\' {
				i++ // the escaped character
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '{':
			depth++
		case c == '}':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return len(s)
}

// closingBraceUnquoted is closingBrace with every brace counted, quoted or not.
func closingBraceUnquoted(s string, i int) int {
	depth := 1
	for ; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return len(s)
}

// closingBraceEscaped is closingBrace for JSON inside a JSON string, whose quotes are \" and
// whose escapes are \\ and the character after, itself escaped (\\\" is a quote in a string).
func closingBraceEscaped(s string, i int) int {
	depth := 1
	in := false
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == '"':
			in = !in
			i += 2
			continue
		case c == '\\' && i+1 < len(s) && s[i+1] == '\\':
			i += 2 // an escape of the inner JSON: the character after it is its
			if i < len(s) && s[i] == '\\' {
				i++ // escaped in the outer string too: \" or \\
			}
		case c == '\\':
			i++ // an escape of the outer string (\n): the letter after it is not a brace
		case in:
		case c == '{':
			depth++
		case c == '}':
			if depth--; depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return len(s)
}

// personalKeys are the names, in any case and with or without "_" ("customerName",
// "first_name", "mobilePhone"), of a person's data as other systems (an ERP's answer) name it.
const personalKeys = `customer_?(?:name|email|phone|mobile)|(?:first|last|full|given|family)_?name|surname|` +
	`(?:mobile_?|cell_?)?phone(?:_?number)?|mobile(?:_?number)?|tel|telephone|e_?mail(?:_?address)?`

// jsonKeys are the JSON member names whose string values are redacted in text.
const jsonKeys = `[a-z0-9_-]*(?:token|password|passwd|secret|api_?key)|pwd|cookie|connection_string|authorization|store_key|pairing_code|code|note|address|customer|` + personalKeys

// Secrets returns s with every configured secret redacted, and nothing else.
func (r *Redactor) Secrets(s string) string {
	if r.holdsSecret(s) {
		return r.secrets.Replace(s)
	}
	return s
}

// holdsSecret tells whether s holds a configured secret.
func (r *Redactor) holdsSecret(s string) bool {
	return r.secrets != nil && slices.ContainsFunc(r.forms, func(f string) bool { return strings.Contains(s, f) })
}

// Text returns s with every configured secret and every pattern of rules redacted.
func (r *Redactor) Text(s string) string {
	s = r.Secrets(s)
	lower := strings.ToLower(s)
	for _, ru := range rules {
		if !ru.guard(lower) {
			continue
		}
		if t := ru.replace(s); t != s {
			s, lower = t, strings.ToLower(t)
		}
	}
	return s
}

// TrimPartial removes from the end of s the first part of a secret, left there by a cut.
func (r *Redactor) TrimPartial(s string) string {
	for cut := true; cut; {
		cut = false
		for _, f := range r.forms {
			for n := min(len(f)-1, len(s)); n > 0; n-- {
				if strings.HasSuffix(s, f[:n]) {
					s, cut = s[:len(s)-n], true
					break
				}
			}
		}
	}
	return s
}

// personalKey matches an attribute name, lower-cased, that holds a person's data.
var personalKey = regexp.MustCompile(`^(?:` + personalKeys + `)$`)

// sensitiveKeys are attribute names (the last part of a dotted key, any case) whose values are
// redacted whole, whatever they look like.
var sensitiveKeys = map[string]bool{
	"token": true, "access_token": true, "refresh_token": true, "password": true, "passwd": true,
	"pwd": true, "secret": true, "api_key": true, "apikey": true, "authorization": true,
	"cookie": true, "connection_string": true, "store_key": true, "enrollment_secret": true,
	"pairing_code": true, "code": true, "email": true, "phone": true, "note": true,
	"customer": true, "customer_name": true, "customer_email": true, "customer_phone": true,
	"address": true,
}

// sensitiveKey tells whether the value of the attribute key is redacted whole: its last part is
// one of sensitiveKeys or holds "token", "secret", "password" or "api_key", or one of its parts
// is "customer" (customer.name, order.customer.phone).
func sensitiveKey(key string) bool {
	key = strings.ToLower(key)
	last := key[strings.LastIndexByte(key, '.')+1:]
	if sensitiveKeys[last] || personalKey.MatchString(last) {
		return true
	}
	for _, s := range []string{"token", "secret", "password", "api_key", "apikey"} {
		if strings.Contains(last, s) {
			return true
		}
	}
	for part := range strings.SplitSeq(key, ".") {
		if part == "customer" {
			return true
		}
	}
	return false
}

// Value redacts the value of the attribute key: text by Text, a JSON value key by key, and
// anything but a number or a boolean whole when key is sensitive.
func (r *Redactor) Value(key string, v any) any {
	switch x := v.(type) {
	case string:
		if x != "" && sensitiveKey(key) {
			return Redaction
		}
		return r.Text(x)
	case json.RawMessage:
		if sensitiveKey(key) && string(x) != "null" && string(x) != `""` {
			return Redaction
		}
		return r.json(x)
	}
	return v
}

// json redacts a JSON value structurally; what does not parse is redacted as text.
func (r *Redactor) json(raw json.RawMessage) any {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return r.Text(string(raw))
	}
	out, err := json.Marshal(r.walk(v))
	if err != nil {
		return r.Text(string(raw))
	}
	return json.RawMessage(out)
}

func (r *Redactor) walk(v any) any {
	switch x := v.(type) {
	case string:
		return r.Text(x)
	case []any:
		for i := range x {
			x[i] = r.walk(x[i])
		}
	case map[string]any:
		for k, val := range x {
			if sensitiveKey(k) && val != nil && val != "" {
				x[k] = Redaction
				continue
			}
			x[k] = r.walk(val)
		}
	}
	return v
}
