package logship

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// The server's own log never shows a configured secret, wherever a record carries it: its
// message, a text attribute, an error (a dependency's echoing a URL with a SAS, say), a group, an
// attribute given once for every record; percent-encoded in a URL too. The rest is kept as it
// is, a customer's name included (the shop's own log).
func TestSecretsHandlerKeepsSecretsOutOfTheLocalLog(t *testing.T) {
	const key, sig = "st0re-k3y-abcdef", "sv=2024&sig=Zm9v/YmFy+"
	var buf bytes.Buffer
	log := slog.New(SecretsHandler(slog.NewTextHandler(&buf, nil), []string{key, sig, "ab"}))
	log = log.With("store", "key "+key)
	log.Info("cloud: refused with "+key,
		"error", fmt.Errorf("GET https://acct.blob.core.windows.net/media?%s: 403", url.QueryEscape(sig)),
		slog.Group("media", "url", "https://acct.blob.core.windows.net/media?"+sig),
		"customer", "Ada Lovelace", "short", "ab")
	out := buf.String()
	for _, s := range []string{key, sig, url.QueryEscape(sig)} {
		if strings.Contains(out, s) {
			t.Errorf("the log shows %q:\n%s", s, out)
		}
	}
	for _, want := range []string{"Ada Lovelace", "short=ab", "media.url=", "store=\"key xxxxx\"", "cloud: refused with xxxxx"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, Redaction) != 4 {
		t.Errorf("want 4 redactions (message, store, error, media.url):\n%s", out)
	}

	// Values that are no text, as they print: a URL (a value, whose String is the pointer's), a
	// list, a struct; a nil pointer whose String would panic is printed as slog prints it.
	buf.Reset()
	u, _ := url.Parse("https://proxy.lan:3128/?k=" + key)
	log.Info("values", "url", *u, "list", []string{"a", key}, "struct", struct{ K string }{key}, "nil", (*url.URL)(nil),
		"body", []byte("echo "+key), "raw", json.RawMessage(`{"k":"`+key+`"}`), "ip", netip.MustParseAddr("10.0.0.1"))
	out = buf.String()
	if strings.Contains(out, key) || strings.Count(out, Redaction) != 6 || !strings.Contains(out, "nil=<nil>") || !strings.Contains(out, "ip=10.0.0.1") {
		t.Errorf("values that are no text:\n%s", out)
	}
	// No secret to look for: the handler is the next one.
	next := slog.NewTextHandler(&buf, nil)
	if h := SecretsHandler(next, []string{"", "ab"}); h != next {
		t.Error("without a secret to look for, records go through another handler")
	}
}
