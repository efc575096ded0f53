package support

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/ops/logship"
)

// Limits of the ring of recent log records.
const (
	// DefaultRingSize is how many records the ring keeps.
	DefaultRingSize = 200
	// maxLineText bounds a record's message and each attribute value kept.
	maxLineText = 1 << 10
	// maxRedactText bounds what is redacted of a text before it is cut to maxLineText: a
	// message of megabytes is not read whole. The first part of a secret this cut leaves at the
	// end is dropped (cutToRedact): redaction may shorten what comes before it (a customer
	// object becomes "xxxxx") and bring it within what is kept.
	maxRedactText = 16 << 10
	// maxLineAttrs bounds the attributes kept of one record.
	maxLineAttrs = 16
)

// LogLine is one log record as diagnostics sends it (after redaction).
type LogLine struct {
	Time    time.Time      `json:"time"`
	Level   string         `json:"level"`
	Message string         `json:"message"`
	Attrs   map[string]any `json:"attrs,omitempty"` // names dotted with their groups
}

// Ring keeps the most recent log records of level INFO and above in memory, for diagnostics.
// Its Handler tees the logger, so it composes with other tees (log shipping).
type Ring struct {
	red *logship.Redactor // applied as a record is kept, before anything is cut short

	mu   sync.Mutex // protects the fields below
	recs []LogLine  // a circular buffer of len cap once full
	next int        // where the next record goes once full
}

// NewRing returns a ring of size records (DefaultRingSize when size <= 0). Each record is
// redacted as it is kept, with the configured secrets, before its texts are cut to their bound:
// cut first, a secret across the cut would no longer be recognised, and its first part kept.
func NewRing(size int, secrets ...string) *Ring {
	if size <= 0 {
		size = DefaultRingSize
	}
	return &Ring{red: logship.NewRedactor(secrets), recs: make([]LogLine, 0, size)}
}

// Handler returns a slog.Handler that passes every record to next, as before, and keeps a copy
// of each of level INFO and above.
func (r *Ring) Handler(next slog.Handler) slog.Handler { return &ringHandler{next: next, ring: r} }

// Lines returns up to n recent records, oldest first.
func (r *Ring) Lines(n int) []LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]LogLine, 0, len(r.recs))
	out = append(out, r.recs[r.next:]...)
	out = append(out, r.recs[:r.next]...)
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

func (r *Ring) add(l LogLine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs) < cap(r.recs) {
		r.recs = append(r.recs, l)
		return
	}
	r.recs[r.next] = l
	r.next = (r.next + 1) % len(r.recs)
}

type ringHandler struct {
	next   slog.Handler
	ring   *Ring
	attrs  []slog.Attr // from WithAttrs, keys dotted with the groups open then
	prefix string      // the open groups, "a.b."
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *ringHandler) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	if h.next.Enabled(ctx, rec.Level) {
		err = h.next.Handle(ctx, rec)
	}
	if rec.Level >= slog.LevelInfo {
		h.ring.add(h.capture(rec, h.ring.red))
	}
	return err
}

// capture copies what the record says, redacted, then bounded.
func (h *ringHandler) capture(rec slog.Record, red *logship.Redactor) LogLine {
	l := LogLine{Time: rec.Time.UTC(), Level: rec.Level.String(), Message: clipText(red.Text(cutToRedact(red, rec.Message)))}
	attrs := slices.Clone(h.attrs)
	rec.Attrs(func(a slog.Attr) bool {
		attrs = flatten(attrs, h.prefix, a)
		return len(attrs) < maxLineAttrs
	})
	if len(attrs) > 0 {
		l.Attrs = make(map[string]any, len(attrs))
		for _, a := range attrs[:min(len(attrs), maxLineAttrs)] {
			l.Attrs[a.Key] = bounded(red.Value(a.Key, plain(red, a.Value)))
		}
	}
	return l
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	c.attrs = slices.Clip(h.attrs)
	for _, a := range as {
		c.attrs = flatten(c.attrs, h.prefix, a)
	}
	return &c
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.next = h.next.WithGroup(name)
	c.prefix = h.prefix + name + "."
	return &c
}

// flatten appends a, its key dotted with prefix, and the members of a group one by one.
func flatten(dst []slog.Attr, prefix string, a slog.Attr) []slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, m := range v.Group() {
			dst = flatten(dst, p, m)
		}
		return dst
	}
	if a.Key == "" {
		return dst
	}
	return append(dst, slog.Attr{Key: prefix + a.Key, Value: v})
}

// cutToRedact cuts s to maxRedactText, less what the cut may have split of something redacted
// whole: the first part of a configured secret, the word the cut falls in (the start of an
// e-mail address or a token no longer matches its pattern), a quoted value the cut falls in (an
// address, a note, a password with spaces: its rule wants the closing quote), and the digits
// and spaces before it (a telephone number's first groups).
func cutToRedact(red *logship.Redactor, s string) string {
	c := clip.String(s, maxRedactText)
	if len(s) <= maxRedactText {
		return c
	}
	c = red.TrimPartial(strings.TrimSuffix(c, "…"))
	c = c[:strings.LastIndexAny(c, " \t\r\n,;\"'<>")+1]
	for _, quote := range []byte{'"', '\''} {
		if i := unclosedValue(c, quote); i >= 0 {
			c = c[:i+1]
		}
	}
	// A telephone number is written in groups: the groups before the cut go with it, as far
	// back as the longest number reaches (a list of numbers keeps the rest).
	i := len(c)
	for i > 0 && len(c)-i < maxPhoneBytes {
		r, size := utf8.DecodeLastRuneInString(c[:i])
		if !unicode.IsDigit(r) && !unicode.IsSpace(r) && !strings.ContainsRune("().+-", r) {
			break
		}
		i -= size
	}
	return c[:i] + "…"
}

// unclosedValue is the index in c of the quote q that opens the first of the values at its end
// that no quote closes ("address":", password: ', \"note\":\"), -1 if there is none; only the
// last maxQuotedValue bytes are looked at (a text whose first value stays open, an HTML page,
// keeps the rest). A value is closed by a quote escaped as its opening one is (a backslash
// before both, or none: a quote in JSON inside a JSON string, or one in a value) followed by
// what ends a value in JSON, HTML or key="value" text.
func unclosedValue(c string, q byte) int {
	var lastClose [2]int // by escaping: the last closing quote unescaped, escaped; -1 for none
	lastClose[0], lastClose[1] = -1, -1
	for j := 0; j < len(c); j++ {
		if c[j] == q && closesValue(c[j+1:]) {
			lastClose[escaped(c, j)] = j
		}
	}
	open := -1
	for i := len(c) - 1; i >= max(len(c)-maxQuotedValue, 0); i-- {
		if c[i] != q || !opensValue(c[:i]) {
			continue
		}
		if lastClose[escaped(c, i)] > i {
			break // closed: the values before it are whole
		}
		open = i
	}
	return open
}

// opensValue tells whether a quote after before opens a key's value: before ends with ":" or
// "=", then spaces and, in JSON inside a JSON string, backslashes.
func opensValue(before string) bool {
	before = strings.TrimRight(strings.TrimRight(before, `\`), " \t")
	return strings.HasSuffix(before, ":") || strings.HasSuffix(before, "=")
}

// maxQuotedValue bounds how far back unclosedValue looks for a value's opening quote: farther
// than an address, a note or a password reaches (an order's note of 2,000 characters, each
// escaped as \\u00e9 in JSON inside a JSON string, is 14,000 bytes), and short of the whole
// cut text, of which the rest is kept.
const maxQuotedValue = 14 << 10

// closesValue tells whether a quote before after closes a value: what follows it is a space or
// a line's end, or one of , } ] ) ; > & /.
func closesValue(after string) bool {
	return after != "" && strings.IndexByte(" \t\r\n,}]);>&/", after[0]) >= 0
}

// escaped is 1 when the character at i has an odd number of backslashes before it, else 0.
func escaped(c string, i int) int {
	n := 0
	for i > 0 && c[i-1] == '\\' {
		n, i = n+1, i-1
	}
	return n % 2
}

// maxPhoneBytes bounds what cutToRedact takes back for a telephone number's first groups: the
// longest written with a space in each pair of digits and its country code.
const maxPhoneBytes = 32

// plain is an attribute's value as JSON shows it: numbers and booleans as they are, a value
// that encodes as JSON as that JSON (so the redactor reads its field names), anything else as
// its text, cut by cutToRedact; bounded is applied once it is redacted.
func plain(red *logship.Redactor, v slog.Value) any {
	switch v.Kind() {
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindFloat64:
		return v.Float64()
	case slog.KindBool:
		return v.Bool()
	case slog.KindString:
		return cutToRedact(red, v.String())
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return cutToRedact(red, err.Error())
		}
		if b, err := json.Marshal(v.Any()); err == nil {
			if len(b) > maxRedactText { // read as text, as far as it is redacted
				return cutToRedact(red, string(b))
			}
			return json.RawMessage(b)
		}
		return cutToRedact(red, fmt.Sprint(v.Any()))
	}
	return cutToRedact(red, v.String())
}

// bounded cuts a redacted value to maxLineText: a text, or JSON too long, as text.
func bounded(v any) any {
	switch x := v.(type) {
	case string:
		return clipText(x)
	case json.RawMessage:
		if len(x) > maxLineText {
			return clipText(string(x))
		}
	}
	return v
}

func clipText(s string) string { return clip.String(s, maxLineText) }
