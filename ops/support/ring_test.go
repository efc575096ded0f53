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

// A record is redacted as it is kept, before it is cut short: a secret that crosses the cut is
// not kept in part, and a value logged as a structure is redacted by its field names, as log
// shipping does (remote-support.md, What leaves the shop).
// A text longer than what is redacted of it is cut first; a secret across that cut must leave
// no part of it, though redaction shortens what comes before it (a customer object) and brings
// the cut within the 1 KiB kept (remote-support.md).
func TestRingKeepsNoPartOfASecretCutBeforeRedaction(t *testing.T) {
	const secret = "S3cr3tStoreKey-0123456789"
	prefix := `ERP answer 422 {"customer":{"name":"` + strings.Repeat("y", 16000) + `"}} key `
	text := prefix + strings.Repeat("z", maxRedactText-11-len(prefix)) + " " + secret + " and more"
	ring := NewRing(2, secret)
	log := slog.New(ring.Handler(slog.DiscardHandler))
	log.Warn(text, slog.Any("error", errors.New(text)))
	l := ring.Lines(1)[0]
	for what, got := range map[string]string{"message": l.Message, "error": fmt.Sprint(l.Attrs["error"])} {
		if !strings.Contains(got, "zzz") || strings.Contains(got, "yyy") {
			t.Errorf("%s kept %q: the test's premise (customer redacted, the end within what is kept) does not hold", what, got)
		}
		if strings.Contains(got, secret[:4]) {
			t.Errorf("%s kept a part of the secret: …%s", what, got[max(0, len(got)-40):])
		}
	}
	// The same with an e-mail address across the cut: its start matches no pattern.
	const mail = "jean.dupont@example.com"
	text = prefix + strings.Repeat("z", maxRedactText-10-len(prefix)) + " " + mail
	log.Warn(text)
	if got := ring.Lines(1)[0].Message; !strings.Contains(got, "zzz") || strings.Contains(got, "jean") {
		t.Errorf("a part of an e-mail address across the cut was kept: …%s", got[max(0, len(got)-40):])
	}
	// A list of numbers longer than the cut keeps what a telephone number cannot reach.
	log.Warn("ids", slog.String("x", strings.Repeat("12345 ", 4000)))
	if got := fmt.Sprint(ring.Lines(1)[0].Attrs["x"]); len(got) < maxLineText {
		t.Errorf("a long list of numbers cut across one came to %d bytes: %q", len(got), got)
	}
	// A quoted value with spaces across the cut, in each form: its rule wants the closing quote,
	// so none of it is kept.
	for _, tail := range []string{
		`{"address":"12 rue de l'Eglise 75002 Paris France"}`,
		`{"note":"Ring twice, Jean Dupont lives on the 3rd floor"}`,
		`password: "correct horse battery staple"`,
		`{'address': '12 rue de la Paix 75002 Paris France'}`,
		`{\"note\":\"Ring twice, Jean Dupont lives on the 3rd floor\"}`,
		`{"note":"Ring twice, said \"Jean Dupont lives on the 3rd floor\""}`,
		`{"address":"12 rue \"Pasteur\" Jean Dupont, 75002 Paris France"}`,
		`{"note":"Ring twice: \"Jean Dupont lives on the 3rd floor\""}`,
	} {
		text = prefix + strings.Repeat("z", maxRedactText-len(prefix)-len(tail)/2-8) + " " + tail + " and more"
		log.Warn(text)
		got := ring.Lines(1)[0].Message
		if !strings.Contains(got, "zzz") {
			t.Fatalf("the test's premise (the cut within what is kept) does not hold: …%s", got[max(0, len(got)-60):])
		}
		for _, part := range []string{"12 rue", "Ring twice", "correct horse", "Jean"} {
			if strings.Contains(got, part) {
				t.Errorf("a part of a quoted value across the cut was kept: …%s", got[max(0, len(got)-60):])
			}
		}
	}
	// A long note written as \u escapes: the cut falls some 12 KB past its start.
	short := `ERP answer 422 {"customer":{"name":"` + strings.Repeat("y", 4400) + `"}} `
	log.Warn(short + `{"note":"Ring twice, Jean Dupont ` + strings.Repeat(`\u00e9 `, 1710) + `"} and more`)
	if got := ring.Lines(1)[0].Message; strings.Contains(got, "yyy") || strings.Contains(got, "Jean") {
		t.Errorf("a long note across the cut was kept: %q", got)
	}
	// A text whose first quoted value closes in another way than JSON's (an HTML page, key="value"
	// text) keeps what comes before the cut's value.
	for _, long := range []string{
		`<!DOCTYPE html><html lang="en"><body><p class="x">` + strings.Repeat("Proxy error. ", 2000) + `</p>`,
		`upload refused: product="P1" reason="unknown product" ` + strings.Repeat("detail ", 4000),
	} {
		log.Warn(long)
		if got := ring.Lines(1)[0].Message; len(got) < maxLineText {
			t.Errorf("a long text with quoted values kept %d bytes: %q", len(got), got)
		}
	}
	// And a telephone number, written in groups.
	text = prefix + strings.Repeat("z", maxRedactText-16-len(prefix)) + " call +33 6 12 34 56 78"
	log.Warn(text)
	if got := ring.Lines(1)[0].Message; !strings.Contains(got, "zzz") || strings.ContainsAny(got[strings.LastIndex(got, "z"):], "0123456789") {
		t.Errorf("a part of a telephone number across the cut was kept: …%s", got[max(0, len(got)-40):])
	}
}

func TestRingRedactsBeforeItCuts(t *testing.T) {
	const secret = "SK-live-0123456789abcdef0123456789"
	ring := NewRing(2, secret)
	log := slog.New(ring.Handler(slog.DiscardHandler))
	log.Warn("cloud refused", slog.Any("error", errors.New(strings.Repeat("x", maxLineText-10)+" key "+secret)))
	log.Info("order", slog.Any("order", map[string]any{"id": "o-1", "address": "12 rue de la Paix", "pwd": "hunter2x"}))
	lines := ring.Lines(2)
	if got := fmt.Sprint(lines[0].Attrs["error"]); strings.Contains(got, secret[:8]) {
		t.Errorf("a part of the secret was kept: …%s", got[len(got)-40:])
	}
	got := fmt.Sprintf("%s", lines[1].Attrs["order"])
	if strings.Contains(got, "rue de la Paix") || strings.Contains(got, "hunter2x") || !strings.Contains(got, "o-1") {
		t.Errorf("a structured value kept its sensitive fields: %s", got)
	}
}
