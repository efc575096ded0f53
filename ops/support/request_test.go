package support

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/tools/testenv"
)

// exampleBlocks reads the fenced blocks of the worked example in docs/remote-support.md, in
// order: the private key, the configuration, the header, the payload, the signing input, the
// signature, the body, the OpenSSL commands.
func exampleBlocks(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/remote-support.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "### Worked example")
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	parts := strings.Split(section, "```")
	for i := 1; i < len(parts); i += 2 { // inside the fences
		_, body, _ := strings.Cut(parts[i], "\n") // after the info string
		blocks = append(blocks, strings.TrimSuffix(body, "\n"))
	}
	if len(blocks) != 8 {
		t.Fatalf("the worked example has %d blocks, want 8", len(blocks))
	}
	return blocks
}

// A vendor implementing the scheme from the page alone gets requests the server takes: the
// page's key, header and payload give its signing input, signature and body, with Go's Ed25519
// and with OpenSSL's, and the server decodes the body into the request.
func TestWorkedExample(t *testing.T) {
	b := exampleBlocks(t)
	privPEM, cfgYAML, header, payload, input, sig, body := b[0], b[1], b[2], b[3], b[4], b[5], b[6]
	blk, _ := pem.Decode([]byte(privPEM))
	if blk == nil {
		t.Fatal("the private key block is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	priv := k.(ed25519.PrivateKey)
	var cfg struct {
		ServerID string `yaml:"server_id"`
		Shop     struct {
			ID string `yaml:"id"`
		} `yaml:"shop"`
		Support struct {
			ServiceBus struct {
				PublicKey string `yaml:"public_key"`
			} `yaml:"servicebus"`
		} `yaml:"support"`
	}
	if err := yaml.Unmarshal([]byte(cfgYAML), &cfg); err != nil {
		t.Fatal(err)
	}
	pub, err := config.ParseSupportKey(cfg.Support.ServiceBus.PublicKey)
	if err != nil || !pub.Equal(priv.Public()) {
		t.Fatalf("the configured public key %v is not the private key's", err)
	}
	// Its private key is on the page: storeedge config refuses it, as the page says.
	shopCfg := config.Default()
	shopCfg.Support.ServiceBus.PublicKey = cfg.Support.ServiceBus.PublicKey
	if err := shopCfg.Validate(); err == nil || !strings.Contains(err.Error(), "support.servicebus.public_key") || !strings.Contains(err.Error(), "RFC 8032") {
		t.Errorf("the worked example's key in a configuration: %v", err)
	}

	b64 := base64.RawURLEncoding.EncodeToString
	if got := b64([]byte(header)) + "." + b64([]byte(payload)); got != input {
		t.Errorf("signing input from the header and payload:\n%s\nthe page says\n%s", got, input)
	}
	if got := b64(ed25519.Sign(priv, []byte(input))); got != sig {
		t.Errorf("signature:\n%s\nthe page says\n%s", got, sig)
	}
	if input+"."+sig != body {
		t.Error("the body is not the signing input, a dot and the signature")
	}
	if got := string(SignPayload(priv, []byte(payload))); got != body {
		t.Errorf("SignPayload gives\n%s\nthe page says\n%s", got, body)
	}

	v := Verifier{Key: pub, Shop: cfg.Shop.ID, Server: cfg.ServerID}
	r, err := v.Decode([]byte(body), time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindResync || r.Args.Collection != cloudapi.Prices || r.ID != "7f3c9a2e-5b1d-4c8e-9a6f-1d2e3f4a5b6c" ||
		!r.IssuedAt.Equal(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)) || r.ExpiresAt.Sub(r.IssuedAt) != 15*time.Minute {
		t.Fatalf("decoded %+v", r)
	}
	// The page's window: 09:55 to 10:20.
	for at, want := range map[string]string{"09:54:59": ReasonNotYetValid, "09:55:00": "", "10:20:00": "", "10:20:01": ReasonExpired} {
		now, _ := time.Parse(time.RFC3339, "2026-11-23T"+at+"Z")
		_, err := v.Decode([]byte(body), now)
		if got := reasonOf(err); got != want {
			t.Errorf("at %s: %q, want %q", at, got, want)
		}
	}
	checkWithOpenSSL(t, privPEM, input, sig)
}

// checkWithOpenSSL signs the example's input with OpenSSL, an implementation independent of
// Go's, as the page's commands do.
func checkWithOpenSSL(t *testing.T, privPEM, input, sig string) {
	openssl := testenv.Require(t, "openssl")
	dir := t.TempDir()
	key, in := filepath.Join(dir, "vendor.pem"), filepath.Join(dir, "input.txt")
	if err := os.WriteFile(key, []byte(privPEM+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", in).Output()
	if err != nil {
		t.Fatalf("openssl pkeyutl: %v", err)
	}
	if got := base64.RawURLEncoding.EncodeToString(out); got != sig {
		t.Errorf("OpenSSL's signature\n%s\nthe page says\n%s", got, sig)
	}
}

func reasonOf(err error) string {
	var ref *RefusedError
	if errors.As(err, &ref) {
		return ref.Reason
	}
	if err != nil {
		return "not a refusal: " + err.Error()
	}
	return ""
}

// Every way a request can be wrong is refused with its reason and a precise description.
func TestDecodeRefuses(t *testing.T) {
	v := Verifier{Key: vendorKey.Public().(ed25519.PublicKey), Shop: shopID, Server: serverID}
	now := t0.Add(time.Minute)
	signed := func(r Request) []byte {
		b, err := Sign(vendorKey, r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	with := func(f func(*Request)) []byte {
		r := request(KindPing, "req-1")
		f(&r)
		return signed(r)
	}
	good := signed(request(KindPing, "req-1"))
	parts := strings.Split(string(good), ".")
	b64 := base64.RawURLEncoding.EncodeToString
	withHeader := func(h string) []byte {
		in := b64([]byte(h)) + "." + parts[1]
		return []byte(in + "." + b64(ed25519.Sign(vendorKey, []byte(in))))
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		reason string
		says   string
	}{
		{"empty", nil, ReasonMalformed, "found 1"},
		{"JSON, not a JWS", []byte(`{"kind":"ping"}`), ReasonMalformed, "not a JWS in compact serialization"},
		{"too large", bytes.Repeat([]byte("a"), MaxRequestBytes+1), ReasonMalformed, "more than 16384"},
		{"padded base64", []byte(parts[0] + "=." + parts[1] + "." + parts[2]), ReasonMalformed, "header is not base64url without padding"},
		{"signed by another key", func() []byte { b, _ := Sign(otherKey, request(KindPing, "req-1")); return b }(), ReasonForged, "does not verify with support.servicebus.public_key"},
		{"payload changed after signing", []byte(parts[0] + "." + b64([]byte(`{"kind":"retry-outbox"}`)) + "." + parts[2]), ReasonForged, "changed on the way"},
		{"signature cut", []byte(parts[0] + "." + parts[1] + "." + parts[2][:40]), ReasonForged, ""},
		{"alg none", withHeader(`{"alg":"none","typ":"storeedge-support-request"}`), ReasonMalformed, `alg is "none"; want "EdDSA"`},
		{"another typ", withHeader(`{"alg":"EdDSA","typ":"JWT"}`), ReasonMalformed, `typ is "JWT"`},
		{"crit", withHeader(`{"alg":"EdDSA","typ":"storeedge-support-request","crit":["exp"]}`), ReasonMalformed, "crit"},
		{"header not JSON", withHeader(`alg=EdDSA`), ReasonMalformed, "header is not a JSON object"},
		{"header names in capitals", withHeader(`{"ALG":"EdDSA","TYP":"storeedge-support-request"}`), ReasonMalformed, `alg is ""`},
		{"typ given twice", withHeader(`{"alg":"EdDSA","typ":"other-doc","typ":"storeedge-support-request"}`), ReasonMalformed, "each given once"},
		{"unknown field", []byte(string(SignPayload(vendorKey, []byte(`{"kind":"ping","id":"a","shop":"lyon-01","server":"storeedge-lyon-01","issued_at":"2026-11-23T10:00:00Z","expires_at":"2026-11-23T10:10:00Z","sudo":true}`)))),
			ReasonMalformed, `unknown field "sudo"`},
		{"field twice", []byte(string(SignPayload(vendorKey, []byte(`{"kind":"ping","id":"a1","id":"a2","shop":"lyon-01","server":"storeedge-lyon-01","issued_at":"2026-11-23T10:00:00Z","expires_at":"2026-11-23T10:10:00Z"}`)))),
			ReasonMalformed, `field "id" given twice`},
		{"long unknown field", []byte(string(SignPayload(vendorKey, []byte(`{"kind":"ping","id":"a","shop":"lyon-01","server":"storeedge-lyon-01","issued_at":"2026-11-23T10:00:00Z","expires_at":"2026-11-23T10:10:00Z","`+strings.Repeat("k", 100)+`":true}`)))),
			ReasonMalformed, `unknown field "` + strings.Repeat("k", 80) + `…"`},
		{"time not RFC 3339", SignPayload(vendorKey, []byte(`{"kind":"ping","id":"a","shop":"lyon-01","server":"storeedge-lyon-01","issued_at":"yesterday","expires_at":"2026-11-23T10:10:00Z"}`)),
			ReasonMalformed, "RFC 3339"},
		{"id of the wrong type", SignPayload(vendorKey, []byte(`{"kind":"ping","id":7}`)), ReasonMalformed, `field "id" has the wrong type`},
		{"fields missing", SignPayload(vendorKey, []byte(`{"kind":"ping"}`)), ReasonMalformed, "lacks id, shop, server, issued_at, expires_at"},
		{"two objects", SignPayload(vendorKey, append(mustJSON(t, request(KindPing, "a")), []byte(`{}`)...)), ReasonMalformed, "more after its JSON object"},
		{"a stray bracket after", SignPayload(vendorKey, append(mustJSON(t, request(KindPing, "a")), []byte(`]`)...)), ReasonMalformed, "more after its JSON object"},
		{"id with a space", with(func(r *Request) { r.ID = "req 1" }), ReasonMalformed, `id "req 1"`},
		{"id too long", with(func(r *Request) { r.ID = strings.Repeat("a", 129) }), ReasonMalformed, "1 to 128"},
		{"valid for two hours", with(func(r *Request) { r.ExpiresAt = r.IssuedAt.Add(2 * time.Hour) }), ReasonMalformed, "longer than 1h0m0s"},
		{"expires before issued", with(func(r *Request) { r.ExpiresAt = r.IssuedAt }), ReasonMalformed, "not after issued_at"},
		{"another shop", with(func(r *Request) { r.Shop = "paris-02" }), ReasonWrongTarget,
			`meant for shop "paris-02", server "storeedge-lyon-01"; this is shop "lyon-01", server "storeedge-lyon-01"`},
		{"another server", with(func(r *Request) { r.Server = "storeedge-lyon-02" }), ReasonWrongTarget, `server "storeedge-lyon-02"`},
		{"issued in the future", with(func(r *Request) { r.IssuedAt, r.ExpiresAt = now.Add(6*time.Minute), now.Add(10*time.Minute) }), ReasonNotYetValid,
			"issued at 2026-11-23T10:07:00Z, 6m0s after this server's time 2026-11-23T10:01:00Z"},
		{"expired", with(func(r *Request) { r.IssuedAt, r.ExpiresAt = now.Add(-time.Hour), now.Add(-6*time.Minute) }), ReasonExpired,
			"expired at 2026-11-23T09:55:00Z, 6m0s before"},
		{"unknown kind", with(func(r *Request) { r.Kind = "shell" }), ReasonUnknownKind, `kind "shell" is not one this server knows (ping, diagnostics, resync, retry-outbox)`},
		{"resync without a collection", with(func(r *Request) { r.Kind = KindResync }), ReasonMalformed, `args.collection is ""; want one of products`},
		{"resync of orders", with(func(r *Request) { r.Kind, r.Args.Collection = KindResync, "orders" }), ReasonMalformed, `"orders"`},
		{"ping with args", with(func(r *Request) { r.Args.Collection = "prices" }), ReasonMalformed, "ping takes no args"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Decode(tc.body, now)
			var ref *RefusedError
			if !errors.As(err, &ref) || ref.Reason != tc.reason || !strings.Contains(ref.Description, tc.says) {
				t.Errorf("got %v\nwant %s: …%s…", err, tc.reason, tc.says)
			}
		})
	}
	// Skew tolerated both ways, and a trailing line break.
	for _, r := range []Request{
		{Kind: KindPing, ID: "a", Shop: shopID, Server: serverID, IssuedAt: now.Add(5 * time.Minute), ExpiresAt: now.Add(10 * time.Minute)},
		{Kind: KindPing, ID: "a", Shop: shopID, Server: serverID, IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-5 * time.Minute)},
	} {
		if _, err := v.Decode(append(signed(r), '\n'), now); err != nil {
			t.Errorf("%s to %s at %s: %v", r.IssuedAt, r.ExpiresAt, now, err)
		}
	}
}

func mustJSON(t *testing.T, r Request) []byte {
	t.Helper()
	b, err := Sign(vendorKey, r)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := base64.RawURLEncoding.DecodeString(strings.Split(string(b), ".")[1])
	return p
}
