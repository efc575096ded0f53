package logship

import (
	"context"
	"log/slog"
	"slices"
)

// Handler returns a slog.Handler that passes every record to local, as before, and a copy of
// each record of Options.Level or above to the shipper. The copy costs the call a copy of the
// record's values and a non-blocking send; nothing waits for the disk or the network.
func (s *Shipper) Handler(local slog.Handler) slog.Handler {
	return &teeHandler{local: local, s: s}
}

type teeHandler struct {
	local  slog.Handler
	s      *Shipper
	attrs  []field // from WithAttrs, groups applied
	prefix string  // the open groups, "a.b."
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.s.o.Level || h.local.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.local.Enabled(ctx, r.Level) {
		err = h.local.Handle(ctx, r)
	}
	if r.Level >= h.s.o.Level {
		h.s.enqueue(h.capture(r))
	}
	return err
}

// capture copies what the record says.
func (h *teeHandler) capture(r slog.Record) entry {
	e := entry{time: r.Time, level: r.Level, msg: r.Message, attrs: make([]field, len(h.attrs), len(h.attrs)+r.NumAttrs())}
	copy(e.attrs, h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		e.attrs = appendFields(e.attrs, h.prefix, a)
		return true
	})
	return e
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	c := *h
	c.local = h.local.WithAttrs(as)
	c.attrs = slices.Clip(h.attrs)
	for _, a := range as {
		c.attrs = appendFields(c.attrs, h.prefix, a)
	}
	return &c
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.local = h.local.WithGroup(name)
	c.prefix = h.prefix + name + "."
	return &c
}
