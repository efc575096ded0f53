package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Error is one problem with one key (or, for a file that is not YAML, with the file). Load and Validate return every problem they find, each
// an *Error, joined with errors.Join. Its text is
//
//	[Source[:Line]: ][Key: ][Value: ]Reason
//
// with Value as the person wrote it (strings quoted, secrets as "xxxxx"), or left out when
// there is none to show (an unknown key, say).
type Error struct {
	Source string // the file path, "environment STOREEDGE_…" or "--set"; "" for Validate
	Line   int    // line in the file, or 0
	Key    string // dotted key, e.g. "cloud.page_size"
	Value  string // display form of the value, already redacted; "" for none
	Reason string

	err error // sentinel for errors.Is, or nil
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	if e.Value != "" {
		b.WriteString(e.Value)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap gives the sentinel behind the problem, if any (ErrMissingStoreKey).
func (e *Error) Unwrap() error { return e.err }

// kind is what a leaf key holds, which decides how its value is parsed and shown.
type kind int

const (
	kindString kind = iota
	kindSecret
	kindProxy
	kindInt
	kindBool
	kindDuration
	kindList // []string: a YAML list in the file, comma-separated in the environment and --set
)

// leaf is one key of the configuration.
type leaf struct {
	key   string // dotted
	env   string // STOREEDGE_…
	index []int  // reflect field index path from Config
	kind  kind
}

var (
	secretType   = reflect.TypeFor[Secret]()
	proxyType    = reflect.TypeFor[Proxy]()
	durationType = reflect.TypeFor[time.Duration]()
	listType     = reflect.TypeFor[[]string]()
)

// leaves lists every key, in document order, read off the yaml tags of Config so that the
// struct is the one place a key is declared.
var leaves, leafByKey, leafByEnv, sections = buildLeaves()

func buildLeaves() (all []leaf, byKey, byEnv map[string]*leaf, sections map[string]bool) {
	sections = map[string]bool{}
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				panic("config: field " + f.Name + " has no yaml tag")
			}
			key := prefix + name
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				sections[key] = true
				walk(f.Type, key+".", idx)
				continue
			}
			all = append(all, leaf{key: key, env: EnvName(key), index: idx, kind: kindOf(f.Type)})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	byKey = map[string]*leaf{}
	byEnv = map[string]*leaf{}
	for i := range all {
		l := &all[i]
		if byKey[l.key] != nil || byEnv[l.env] != nil {
			panic("config: two keys map to " + l.key + " / " + l.env)
		}
		byKey[l.key], byEnv[l.env] = l, l
	}
	return all, byKey, byEnv, sections
}

func kindOf(t reflect.Type) kind {
	switch {
	case t == secretType:
		return kindSecret
	case t == proxyType:
		return kindProxy
	case t == durationType:
		return kindDuration
	case t == listType:
		return kindList
	}
	switch t.Kind() {
	case reflect.String:
		return kindString
	case reflect.Int, reflect.Int64:
		return kindInt
	case reflect.Bool:
		return kindBool
	}
	panic("config: unsupported field type " + t.String())
}

// Keys returns every dotted key, in the order of the example file.
func Keys() []string {
	keys := make([]string, len(leaves))
	for i, l := range leaves {
		keys[i] = l.key
	}
	return keys
}

// IsKey tells a key of the configuration.
func IsKey(key string) bool { return leafByKey[key] != nil }

// HoldsSecret tells a key whose value is a secret, or may carry one (a proxy's password).
func HoldsSecret(key string) bool {
	l := leafByKey[key]
	return l != nil && (l.kind == kindSecret || l.kind == kindProxy)
}

// EnvPrefix starts the name of every configuration environment variable.
const EnvPrefix = "STOREEDGE_"

// EnvConfig names the environment variable that gives the configuration file's path. It is
// not a key.
const EnvConfig = "STOREEDGE_CONFIG"

// EnvName is the environment variable that sets key: "cloud.store_key" →
// "STOREEDGE_CLOUD_STORE_KEY".
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Set sets one key from its text form, parsed as a YAML scalar into the key's type: "500",
// "30s", "true", "debug". A string key takes the text as it is, so a password may hold any
// character. An unknown key, or a value that does not parse, is an *Error naming the key and,
// unless it is a secret, the value. Set checks the type only; ranges are Validate's job.
func (c *Config) Set(key, value string) error {
	if e := c.set(key, value); e != nil {
		return e
	}
	return nil
}

func (c *Config) set(key, value string) *Error {
	l := leafByKey[key]
	if l == nil {
		return unknownKeyError(key)
	}
	return setLeaf(c, l, &yaml.Node{Kind: yaml.ScalarNode, Value: value}, true)
}

func unknownKeyError(key string) *Error {
	if LooksSecret(key) {
		// A secret given where a key goes ("--set TOKEN=", a value passed as a key): not shown,
		// but the key probably meant is.
		reason := "unknown key"
		if s := suggest(key); s != "" {
			reason += fmt.Sprintf(" (did you mean %s?)", s)
		}
		return &Error{Key: fmt.Sprintf("(a key of %d characters, not shown: keys are letters, '.', '_' and '-', and it may be a secret)", len(key)), Reason: reason}
	}
	if !isPlainKey(key) {
		return &Error{Key: strconv.Quote(truncate(key, 80)), Reason: "unknown key"}
	}
	if sections[key] {
		return &Error{Key: key, Reason: "is a section, not a key; set one of its keys, e.g. " + firstKeyIn(key)}
	}
	reason := "unknown key"
	if s := suggest(key); s != "" {
		reason += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return &Error{Key: key, Reason: reason}
}

// LooksSecret tells a text given where a key or a word goes that may be a secret, and is not to
// be shown: anything but letters, '.', '_' and '-', up to 64 of them. Keys, and the words a
// command takes, are such; tokens, passwords, account keys and URLs with a SAS are not.
func LooksSecret(s string) bool {
	if len(s) > 64 {
		return true
	}
	return strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '.' || r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	})
}

// isPlainKey tells a key that can be shown as it is from one that needs quoting (control
// characters, spaces, an absurd length), so that an error message stays one readable line.
func isPlainKey(key string) bool {
	if key == "" || len(key) > 80 {
		return false
	}
	for _, r := range key {
		if !(r == '.' || r == '_' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes, on a character boundary, marking the cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func firstKeyIn(section string) string {
	for _, l := range leaves {
		if strings.HasPrefix(l.key, section+".") {
			return l.key
		}
	}
	return section
}

// setLeaf decodes the scalar n into the field of l. literal marks text from the environment or
// a flag, where a string key takes the text unparsed.
func setLeaf(c *Config, l *leaf, n *yaml.Node, literal bool) *Error {
	field := reflect.ValueOf(c).Elem().FieldByIndex(l.index)
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if l.kind == kindList {
		return setList(field, l, n)
	}
	if n.Kind != yaml.ScalarNode {
		what := "a list"
		if n.Kind == yaml.MappingNode {
			what = "a mapping"
		}
		return &Error{Key: l.key, Line: n.Line, Value: what, Reason: "want " + l.want()}
	}
	switch l.kind {
	case kindString, kindSecret, kindProxy:
		if literal || n.ShortTag() != "!!null" {
			field.SetString(n.Value)
		} else {
			field.SetString("")
		}
		return nil
	}
	// Not a string: an empty value would silently become 0, false or 0s, and a person who wrote
	// "page_size:" more likely meant "the default". Say so rather than guess.
	if n.Value == "" || n.ShortTag() == "!!null" {
		return &Error{Key: l.key, Line: n.Line, Value: quote(n.Value), Reason: "empty; want " + l.want() + ", or leave the key out for the default"}
	}
	if l.kind == kindBool && field.Kind() == reflect.Bool {
		// Quoted or not: the example file quotes its texts, and "true" in quotes means true.
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on", "y":
			field.SetBool(true)
			return nil
		case "false", "no", "off", "n":
			field.SetBool(false)
			return nil
		}
		return &Error{Key: l.key, Line: n.Line, Value: quote(n.Value), Reason: "want " + l.want()}
	}
	if _, whole := decimal(n.Value); l.kind == kindInt && n.ShortTag() == "!!float" && !whole {
		// yaml would truncate 1.5 to 1 and take 1e3 as 1000; a count or a port is written
		// as a whole number. (yaml also reads 08080 as a float, not being octal: decimal.)
		return &Error{Key: l.key, Line: n.Line, Value: quote(n.Value), Reason: "want " + l.want()}
	}
	if l.kind == kindInt && field.CanInt() {
		// In decimal whatever it looks like (yaml would also take 0x50, and 010 as 8); "_" may
		// group the digits, as in 1_000.
		digits, ok := decimal(n.Value)
		v, err := strconv.ParseInt(digits, 10, 64)
		if !ok || err != nil || field.OverflowInt(v) {
			return &Error{Key: l.key, Line: n.Line, Value: quote(n.Value), Reason: "want " + l.want()}
		}
		field.SetInt(v)
		return nil
	}
	tmp := reflect.New(field.Type())
	if err := decodeScalar(n, tmp.Interface()); err != nil {
		return &Error{Key: l.key, Line: n.Line, Value: quote(n.Value), Reason: "want " + l.want()}
	}
	field.Set(tmp.Elem())
	return nil
}

// decimal returns s without the "_" that group its digits, and whether s is a whole number
// in decimal: an optional sign, then digits, a "_" only between two of them.
func decimal(s string) (string, bool) {
	body := strings.TrimLeft(s, "+-")
	if len(s)-len(body) > 1 || body == "" || body[0] == '_' || body[len(body)-1] == '_' || strings.Contains(body, "__") {
		return "", false
	}
	digits := strings.ReplaceAll(body, "_", "")
	if strings.Trim(digits, "0123456789") != "" {
		return "", false
	}
	return s[:len(s)-len(body)] + digits, true
}

// setList sets a list key from a YAML list of single values, or from one value holding names
// separated by commas (the environment's and --set's form, also accepted in the file). Empty
// names are dropped; an empty list is nil, as in Default.
func setList(field reflect.Value, l *leaf, n *yaml.Node) *Error {
	var items []string
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if e := markupError(l, item); e != nil {
				return e
			}
			if item.Kind == yaml.AliasNode && item.Alias != nil {
				item = item.Alias
			}
			if item.Kind != yaml.ScalarNode || item.ShortTag() == "!!null" {
				return &Error{Key: l.key, Line: item.Line, Value: nodeKind(item), Reason: "want " + l.want()}
			}
			items = append(items, item.Value)
		}
	case yaml.ScalarNode:
		if n.ShortTag() != "!!null" {
			items = strings.Split(n.Value, ",")
		}
	default:
		return &Error{Key: l.key, Line: n.Line, Value: nodeKind(n), Reason: "want " + l.want()}
	}
	var out []string
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	field.Set(reflect.ValueOf(out))
	return nil
}

// decodeScalar is yaml's own scalar decoding, so that the file, the environment and flags
// accept exactly the same spellings.
func decodeScalar(n *yaml.Node, out any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return n.Decode(out)
}

func (l *leaf) want() string {
	switch l.kind {
	case kindInt:
		return "a whole number"
	case kindBool:
		return "true or false"
	case kindDuration:
		return `a duration with a unit, like "500ms", "30s", "5m" or "1h"`
	case kindList:
		return `a list of names, like [eth0, wlan0] (in the environment or --set: eth0,wlan0), or [] for none`
	}
	return "a single value (quote it if it contains \": \" or starts with a special character)"
}

// display is how a field's current value is shown in an error: strings and durations quoted,
// numbers and booleans bare, secrets redacted.
func display(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case Secret:
		return quote(x.String())
	case Proxy:
		return quote(x.String())
	case time.Duration:
		return quote(formatDuration(x))
	case []string:
		return quote(strings.Join(x, ","))
	case string:
		return quote(x)
	}
	return fmt.Sprint(v.Interface())
}

// quote shows a value in an error, cut short if it is absurdly long (a whole file pasted into
// a variable, say) so that the message stays readable.
func quote(s string) string { return strconv.Quote(truncate(s, 200)) }

// formatDuration writes d as a person would: "2m" rather than time's "2m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// suggest returns the known key nearest to a mistyped one, or "" if none is near.
func suggest(key string) string {
	return nearest(key, func(l *leaf) (string, string) { return l.key, l.key[strings.LastIndexByte(l.key, '.')+1:] })
}

// suggestEnv returns the environment variable of the known key nearest to a mistyped variable,
// or "" if none is near.
func suggestEnv(name string) string {
	return nearest(name, func(l *leaf) (string, string) {
		return l.env, EnvName(l.key[strings.LastIndexByte(l.key, '.')+1:])
	})
}

// nearest returns the name of the leaf nearest to s, or "" if none is near. names gives a leaf's
// name and its name without the section, which s may have left out ("page_size").
func nearest(s string, names func(*leaf) (full, bare string)) string {
	best, bestD := "", 4
	for i := range leaves {
		full, bare := names(&leaves[i])
		d := editDistance(s, full)
		if d > 2 && bare == s {
			d = 2
		}
		if d < bestD {
			best, bestD = full, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 10 // not worth comparing, and keeps a hostile input cheap
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
