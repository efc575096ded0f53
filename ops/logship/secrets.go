package logship

import (
	"context"
	"encoding"
	"fmt"
	"log/slog"
	"reflect"
)

// SecretsHandler passes every record to next with each configured secret value (as written, or
// encoded in a URL: config.SecretForms) replaced by Redaction, in its message and in its
// attributes: text, and any other value as it prints (an error, a URL, a list, a struct), in
// groups too. It is for the server's own log (standard error, the journal, the Event Log):
// unlike what is shipped or given to support, that log keeps the shop's personal data, but
// never a secret a dependency's error happens to echo. With no secret long enough to look for,
// it returns next.
func SecretsHandler(next slog.Handler, secrets []string) slog.Handler {
	r := NewRedactor(secrets)
	if r.secrets == nil {
		return next
	}
	return &secretsHandler{next: next, r: r}
}

type secretsHandler struct {
	next slog.Handler
	r    *Redactor
}

func (h *secretsHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *secretsHandler) Handle(ctx context.Context, rec slog.Record) error {
	// Most records carry no secret: they go on as they are, and only one that does is rebuilt.
	dirty := h.r.holdsSecret(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		_, changed := h.attr(a)
		dirty = dirty || changed
		return !dirty
	})
	if !dirty {
		return h.next.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Secrets(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		clean, _ := h.attr(a)
		out.AddAttrs(clean)
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *secretsHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i], _ = h.attr(a)
	}
	return &secretsHandler{next: h.next.WithAttrs(clean), r: h.r}
}

func (h *secretsHandler) WithGroup(name string) slog.Handler {
	return &secretsHandler{next: h.next.WithGroup(name), r: h.r}
}

// attr returns a with every secret replaced, and whether it held one. A value that is no text
// is looked at as it prints (fmt's %+v, which the handlers below use too): an error, a URL, a
// list, a struct; one whose printing panics (a nil pointer's String method) is left as it is,
// for the handler below to print as slog does.
func (h *secretsHandler) attr(a slog.Attr) (slog.Attr, bool) {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); h.r.holdsSecret(s) {
			return slog.String(a.Key, h.r.secrets.Replace(s)), true
		}
	case slog.KindGroup:
		g := v.Group()
		clean := make([]slog.Attr, len(g))
		changed := false
		for i, x := range g {
			var c bool
			clean[i], c = h.attr(x)
			changed = changed || c
		}
		if changed {
			return slog.Attr{Key: a.Key, Value: slog.GroupValue(clean...)}, true
		}
	case slog.KindAny:
		if s, ok := printed(v.Any()); ok && h.r.holdsSecret(s) {
			return slog.String(a.Key, h.r.secrets.Replace(s)), true
		}
	}
	return slog.Attr{Key: a.Key, Value: v}, false
}

// printed is v as the text handler prints it; ok is false when printing it panics.
func printed(v any) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	// As the text handler prints a value: a text marshaler's text, bytes as text, else %+v
	// (which prints an error's Error and a Stringer's String).
	if x, ok := v.(encoding.TextMarshaler); ok {
		b, err := x.MarshalText()
		return string(b), err == nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
		return string(rv.Bytes()), true
	}
	return fmt.Sprintf("%+v", v), true
}
