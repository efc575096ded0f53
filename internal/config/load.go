package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds the configuration file; a real one is a few KiB, so anything near this is
// the wrong file.
const maxFileSize = 1 << 20

// Load builds the configuration: Default(), then the YAML file at path (none if path is ""),
// then the STOREEDGE_* variables in env (os.Environ() form, "NAME=value"), then flags, each a
// "key=value" given to --set, in order. It then fills an empty server_id from the host name
// and runs Validate. It reads the file, asks for the host name and stats wan.extra_ca_file,
// and does nothing else: no goroutine, no network, no write.
//
// Every problem found is reported, each an *Error, joined with errors.Join. If the file, the
// environment or a flag holds a value that does not parse, Load reports those and skips
// Validate, whose complaints would then be about values the person did not mean. An unreadable
// file is reported alone, wrapping the os error (errors.Is(err, fs.ErrNotExist) works).
//
// On error, Load still returns the configuration as far as it was built, for display (and for
// UnknownEnv); the caller must not run with it.
func Load(path string, env []string, flags []string) (Config, error) {
	c := Default()
	var errs []error
	if path != "" {
		data, err := readFile(path)
		if err != nil {
			// Reported alone; the environment and the flags are still read, so that a
			// misspelt variable is warned about (UnknownEnv) beside it.
			c.applyEnv(env)
			c.applyFlags(flags)
			return c, err
		}
		errs = append(errs, c.applyFile(path, data)...)
		c.File = path
	}
	errs = append(errs, c.applyEnv(env)...)
	errs = append(errs, c.applyFlags(flags)...)
	if c.ServerID == "" {
		c.ServerID = hostServerID()
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}

// checkUTF8 refuses a file that is not UTF-8 (nor UTF-16 with its byte order mark, which the
// YAML decoder reads), naming the line of the first byte that is not: a file saved as Latin-1
// or Windows-1252 ("ANSI" in Notepad) would otherwise be refused at line 1, with the decoder's
// words.
func checkUTF8(name string, data []byte) error {
	if bytes.HasPrefix(data, []byte{0xFE, 0xFF}) || bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || utf8.Valid(data) {
		return nil
	}
	at := 0
	for at < len(data) {
		r, size := utf8.DecodeRune(data[at:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		at += size
	}
	line := bytes.Count(data[:at], []byte("\n")) + 1
	col := utf8.RuneCount(data[bytes.LastIndexByte(data[:at], '\n')+1:at]) + 1 // in characters
	return &Error{Source: name, Line: line, Reason: fmt.Sprintf("not UTF-8 text (byte 0x%02X at column %d); save the file as UTF-8 (in Notepad: File, Save as, Encoding UTF-8)", data[at], col)}
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("read config file: %s is a directory, want a YAML file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("read config file: %s is larger than %d bytes; is it the right file?", path, maxFileSize)
	}
	return data, nil
}

// applyFile applies a YAML document. yaml.v3's own strict decoding (KnownFields) would reject
// unknown keys too, but its messages name Go types ("field page_sise not found in type
// config.Cloud") and its type errors name no key; walking the node tree lets every message
// name the dotted key and its line, and keeps secret values out of messages.
func (c *Config) applyFile(name string, data []byte) []error {
	if err := checkUTF8(name, data); err != nil {
		return []error{err}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := decodeNode(dec, &doc); {
	case err == io.EOF:
		return nil // an empty file, or only comments: all defaults
	case err != nil:
		return []error{syntaxError(name, data, err)}
	}
	var more yaml.Node
	if err := decodeNode(dec, &more); err != io.EOF {
		line := more.Line
		if err != nil {
			return []error{syntaxError(name, data, err)}
		}
		return []error{&Error{Source: name, Line: line, Reason: `a second YAML document ("---"); put every key in one document`}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	switch {
	case isNull(root):
		return nil
	case root.Kind != yaml.MappingNode:
		return []error{&Error{Source: name, Line: root.Line, Reason: "want keys like \"cloud:\" and \"lan:\" at the top level, found " + nodeKind(root)}}
	}
	var errs []error
	c.applyMapping(name, root, "", &errs)
	if len(errs) > maxFileErrors {
		errs = append(errs[:maxFileErrors], &Error{Source: name, Reason: "too many problems; fix those above first (is it the right file?)"})
	}
	return errs
}

// maxFileErrors bounds the problems listed for one file: past a screenful, the list stops
// helping (and a wrong file could otherwise produce thousands).
const maxFileErrors = 25

// decodeNode parses one document. yaml.v3 reports errors by panicking internally and
// recovering; should a malformed input ever escape that, it is still an error, not a crash.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

func (c *Config) applyMapping(name string, m *yaml.Node, prefix string, errs *[]error) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content) && len(*errs) <= maxFileErrors; i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			*errs = append(*errs, &Error{Source: name, Line: k.Line, Reason: "a key must be a name, found " + nodeKind(k)})
			continue
		}
		key := prefix + k.Value
		if first, dup := seen[k.Value]; dup && isPlainKey(key) {
			*errs = append(*errs, &Error{Source: name, Line: k.Line, Key: key, Reason: fmt.Sprintf("given twice (first on line %d)", first)})
			continue
		}
		seen[k.Value] = k.Line
		written := v
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		switch l := leafByKey[key]; {
		case strings.Contains(k.Value, ".") && (l != nil || sections[key]):
			*errs = append(*errs, &Error{Source: name, Line: k.Line, Key: key, Reason: "dotted keys are for the environment and --set; in the file, nest each part under the one before it"})
		case sections[key] && v.Kind == yaml.MappingNode:
			c.applyMapping(name, v, key+".", errs)
		case sections[key] && isNull(v):
			// "lan:" with nothing under it: nothing to change.
		case sections[key]:
			*errs = append(*errs, &Error{Source: name, Line: k.Line, Key: key, Reason: "is a section; want its keys indented below it, e.g. \"  " + strings.TrimPrefix(firstKeyIn(key), key+".") + ": …\""})
		case l != nil:
			e := markupError(l, written)
			if e == nil {
				e = setLeaf(c, l, v, false)
			}
			if e != nil {
				e.Source, e.Line = name, k.Line
				*errs = append(*errs, e)
			}
		default:
			e := unknownKeyError(key)
			e.Source, e.Line = name, k.Line
			*errs = append(*errs, e)
		}
	}
}

// markupError refuses YAML markup on a value as written where it was most likely meant as text:
// an unquoted password starting with "&" or "!" is read as an anchor or a tag, leaving the value
// empty or shortened. So: an anchor with no value, a tag YAML does not define, and any anchor,
// tag or alias on a secret (whose first word it may be: an unquoted password "*abc" is another
// key's value when an anchor &abc is in the file). The value is not shown.
func markupError(l *leaf, n *yaml.Node) *Error {
	if n.Kind == yaml.AliasNode && l.kind == kindSecret {
		return &Error{Key: l.key, Reason: `the value starts with "*", which YAML reads as a reference to an anchor, not as part of it; put the value in quotes`}
	}
	if n.Kind != yaml.ScalarNode {
		return nil
	}
	anchor, tagged := n.Anchor != "", n.Style&yaml.TaggedStyle != 0
	if l.kind == kindSecret && (anchor || tagged) || anchor && isNull(n) || tagged && !yamlTags[n.ShortTag()] {
		return &Error{Key: l.key, Reason: `the value starts with "&" or "!", which YAML reads as an anchor or a tag, not as part of it; put the value in quotes`}
	}
	return nil
}

// yamlTags are the tags YAML defines for single values.
var yamlTags = map[string]bool{"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true, "!!timestamp": true, "!!binary": true}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "a single value"
}

// syntaxError turns yaml's "yaml: line 3: mapping values are not allowed in this context"
// into "path:3: YAML syntax: mapping values are not allowed in this context".
//
// yaml.v3 counts lines from 0 for parser errors and from 1 for scanner errors, and leaves the
// number out for line 0 (as it reads it). parserProblems are the parser's messages, whose
// number is one short; every other message comes from the scanner. For a problem inside a
// block, the parser gives the line where the block starts.
//
// The messages about anchors name the anchor: an unquoted value starting with "*" (a password,
// a token) is read as a reference to one, so the name is left out and the line found from the
// reference instead. A control character's message has no line: it is found in data.
func syntaxError(name string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if anchor, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		anchor = strings.TrimSuffix(anchor, "' referenced")
		return &Error{Source: name, Line: lineOf(data, "*"+anchor), Reason: `YAML syntax: a value starting with "*" refers to an anchor ("&name") the file does not define; ` +
			`put a value starting with "*" in quotes (the anchor's name is not shown: it may be the start of a secret)`}
	}
	if strings.HasPrefix(msg, "anchor '") && strings.HasSuffix(msg, "' value contains itself") {
		return &Error{Source: name, Reason: "YAML syntax: an anchor's value refers to the anchor itself (its name is not shown: it may be the start of a secret)"}
	}
	if msg == "control characters are not allowed" {
		reason := "YAML syntax: control characters are not allowed (an invisible character: retype the line)"
		return &Error{Source: name, Line: controlLine(data), Reason: reason}
	}
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, text
			}
		}
	}
	switch {
	case parserProblems[msg]:
		line++
	case line == 0 && !strings.Contains(msg, "anchor") && !strings.Contains(msg, "alias"):
		line = 1
	}
	reason := "YAML syntax: " + msg
	switch msg {
	case "found character that cannot start any token":
		reason += " (indented with a tab, or a value starting with @ or ` that needs quotes?)"
	case "did not find expected key":
		reason += " (check the indentation of this block: keys at one level line up)"
	case "mapping values are not allowed in this context":
		reason += ` (a value containing ": " needs quotes)`
	}
	return &Error{Source: name, Line: line, Reason: reason}
}

// lineOf is the line (from 1) of the first s in data, 0 if none.
func lineOf(data []byte, s string) int {
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// controlLine is the line (from 1) of the first character YAML does not allow in a file of
// UTF-8 text; 0 if there is none or the file is UTF-16 (a line of bytes means nothing there).
func controlLine(data []byte) int {
	if !utf8.Valid(data) {
		return 0
	}
	for i, r := range string(data) {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == 0x85 || r == 0xFEFF,
			r >= 0x20 && r <= 0x7E, r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000:
		default:
			return bytes.Count(data[:i], []byte("\n")) + 1
		}
	}
	return 0
}

var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func (c *Config) applyEnv(env []string) []error {
	var errs []error
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if runtime.GOOS == "windows" {
			name = strings.ToUpper(name) // Windows variable names ignore case
		}
		if !strings.HasPrefix(name, EnvPrefix) || name == EnvConfig {
			continue
		}
		l := leafByEnv[name]
		if l == nil {
			if !slices.Contains(c.UnknownEnv, name) {
				c.UnknownEnv = append(c.UnknownEnv, name)
			}
			continue
		}
		if e := setLeaf(c, l, &yaml.Node{Kind: yaml.ScalarNode, Value: value}, true); e != nil {
			e.Source = "environment " + name
			errs = append(errs, e)
		}
	}
	slices.Sort(c.UnknownEnv)
	return errs
}

func (c *Config) applyFlags(flags []string) []error {
	var errs []error
	for i, f := range flags {
		key, value, ok := strings.Cut(f, "=")
		if !ok {
			// Show the argument only if it is a key: anything else may be a secret typed in
			// the wrong place.
			e := &Error{Source: "--set", Reason: fmt.Sprintf("argument %d: want key=value", i+1)}
			if leafByKey[f] != nil {
				e.Key, e.Reason = f, `want key=value; "=value" is missing`
			}
			errs = append(errs, e)
			continue
		}
		if e := c.set(key, value); e != nil {
			e.Source = "--set"
			errs = append(errs, e)
		}
	}
	return errs
}

// hostServerID derives a server id from the host name: "storeedge-" and the name in lower
// case, with anything but letters, digits, '.' and '-' turned to '-'.
func hostServerID() string {
	h, _ := os.Hostname()
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-.")
	if name == "" {
		return "storeedge"
	}
	return truncateID("storeedge-" + name)
}

func truncateID(s string) string {
	if len(s) > maxServerIDLen {
		s = strings.TrimRight(s[:maxServerIDLen], "-.")
	}
	return s
}

// ResolvePath picks the configuration file: the --config flag's value if given, else
// STOREEDGE_CONFIG from env, else DefaultPath() if that file exists, else "" (no file:
// defaults, environment and flags only, as in a container). A file named explicitly must
// exist; Load reports it if not.
func ResolvePath(flagValue string, env []string) string {
	if flagValue != "" {
		return flagValue
	}
	for i := len(env) - 1; i >= 0; i-- { // the last definition wins, as in os.Getenv
		name, value, _ := strings.Cut(env[i], "=")
		if runtime.GOOS == "windows" {
			name = strings.ToUpper(name)
		}
		if name == EnvConfig && value != "" {
			return value
		}
	}
	if _, err := os.Stat(DefaultPath()); errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	return DefaultPath()
}

// FlagUsage is the configuration part of --help.
func FlagUsage() string {
	return `Configuration, each source overriding the one before it:
  built-in defaults
  --config PATH        YAML file; without it, the path in ` + EnvConfig + `,
                       else ` + DefaultPath() + ` if it exists
  STOREEDGE_<KEY>      environment: the key upper-cased, dots as underscores,
                       e.g. STOREEDGE_CLOUD_STORE_KEY, STOREEDGE_LAN_FRONT_DOOR=8080
  --set KEY=VALUE      repeatable, e.g. --set cloud.page_size=500 --set log.level=debug
Durations take a unit ("30s", "5m"); a port of 0 turns its listener off.
Every key, its default and its valid values: docs/configuration.md.
`
}
