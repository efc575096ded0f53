package logship

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// SecretsHandler passes every record to next with each configured secret value (as written, or
// percent-encoded in a URL) replaced by Redaction, in its message and in its attributes: text,
// errors and values that print themselves (fmt.Stringer), in groups too. It is for the server's
// own log (standard error, the journal, the Event Log): unlike what is shipped or given to
// support, that log keeps the shop's personal data, but never a secret a dependency's error
// happens to echo. With no secret long enough to look for, it returns next.
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
	out := slog.NewRecord(rec.Time, rec.Level, h.text(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *secretsHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return &secretsHandler{next: h.next.WithAttrs(clean), r: h.r}
}

func (h *secretsHandler) WithGroup(name string) slog.Handler {
	return &secretsHandler{next: h.next.WithGroup(name), r: h.r}
}

// holds tells whether s holds a secret.
func (h *secretsHandler) holds(s string) bool {
	return slices.ContainsFunc(h.r.forms, func(f string) bool { return strings.Contains(s, f) })
}

func (h *secretsHandler) text(s string) string {
	if h.holds(s) {
		return h.r.secrets.Replace(s)
	}
	return s
}

func (h *secretsHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); h.holds(s) {
			return slog.String(a.Key, h.r.secrets.Replace(s))
		}
	case slog.KindGroup:
		g := v.Group()
		clean := make([]slog.Attr, len(g))
		for i, x := range g {
			clean[i] = h.attr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(clean...)}
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			return slog.Attr{Key: a.Key, Value: v}
		}
		if h.holds(s) {
			return slog.String(a.Key, h.r.secrets.Replace(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
