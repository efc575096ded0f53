package support

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// Every worker stops its goroutines (lock renewals, the SDK's links) when Run returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The ring keeps the last records of level INFO and above, whatever the local log shows, and
// tees: the handler after it, and any other tee around it (log shipping's), see every record
// as before, groups and attributes included.
func TestRingTeesTheLogger(t *testing.T) {
	var local bytes.Buffer
	ring, outer := NewRing(3), NewRing(0)
	// As the daemon composes it: the local handler, a tee (log shipping's), the ring.
	log := slog.New(outer.Handler(ring.Handler(slog.NewTextHandler(&local, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	log.Debug("debug, kept nowhere")
	for i := range 4 {
		log.Info(fmt.Sprintf("record %d", i))
	}
	log.With(slog.String("queue", "support")).WithGroup("link").Warn("lost", slog.Any("error", errors.New("EOF")), slog.Int("attempt", 2))

	lines := ring.Lines(10)
	if len(lines) != 3 || lines[0].Message != "record 2" || lines[1].Message != "record 3" || lines[2].Message != "lost" {
		t.Fatalf("ring %+v: want the last 3 records of INFO and above, oldest first", lines)
	}
	if a := lines[2].Attrs; lines[2].Level != "WARN" || a["queue"] != "support" || a["link.error"] != "EOF" || a["link.attempt"] != int64(2) {
		t.Fatalf("attributes %v", lines[2].Attrs)
	}
	if got := ring.Lines(1); len(got) != 1 || got[0].Message != "lost" {
		t.Fatalf("Lines(1) = %+v", got)
	}
	if n := len(outer.Lines(100)); n != 5 {
		t.Fatalf("the outer tee kept %d records, want 5", n)
	}
	if out := local.String(); strings.Contains(out, "record") || !strings.Contains(out, "level=WARN msg=lost queue=support link.error=EOF link.attempt=2") {
		t.Fatalf("the local log changed:\n%s", out)
	}
	if !slog.New(ring.Handler(slog.DiscardHandler)).Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("INFO is not enabled behind a handler that discards it: the ring would miss it")
	}
}

// A record is bounded however large what was logged.
func TestRingBoundsRecords(t *testing.T) {
	ring := NewRing(1)
	log := slog.New(ring.Handler(slog.DiscardHandler))
	var attrs []any
	for i := range 40 {
		attrs = append(attrs, slog.String(fmt.Sprintf("k%02d", i), strings.Repeat("v", 5000)))
	}
	log.Info(strings.Repeat("é", 3000), attrs...)
	l := ring.Lines(1)[0]
	if len(l.Message) > maxLineText+len("…") || len(l.Attrs) != maxLineAttrs || len(l.Attrs["k00"].(string)) > maxLineText+len("…") {
		t.Fatalf("message %d bytes, %d attributes", len(l.Message), len(l.Attrs))
	}
	if !strings.HasSuffix(l.Message, "é…") {
		t.Fatalf("cut inside a character: %q", l.Message[len(l.Message)-8:])
	}
}
