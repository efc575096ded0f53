package support

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds the request decoder arbitrary bodies: it must never panic, refuse everything
// it does not take with a *RefusedError, and take only requests that keep every rule. The seeds
// in testdata/fuzz/FuzzDecode hold signed requests of each kind, so that mutations reach past the
// signature (a mutation breaks it, so the rules after it are reached through the seeds and
// through the unsigned checks before it).
func FuzzDecode(f *testing.F) {
	for _, k := range Kinds {
		r := request(k, "seed-"+k)
		if k == KindResync {
			r.Args.Collection = "prices"
		}
		b, err := Sign(vendorKey, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v := Verifier{Key: vendorKey.Public().(ed25519.PublicKey), Shop: shopID, Server: serverID}
	now := t0.Add(time.Minute)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := v.Decode(body, now)
		if checkDecoded(t, r, err, now) != nil {
			return
		}
		if len(body) > MaxRequestBytes {
			t.Fatalf("took a body of %d bytes", len(body))
		}
	})
}

// FuzzDecodeSigned feeds headers and payloads that are signed with the vendor's key, so that
// what is read after the signature (the header's members, the claims, the times, the kind's
// arguments) is reached, which bodies the fuzzer changes at random never get past: never a
// panic, every refusal a RefusedError, and what is taken keeps the rules.
func FuzzDecodeSigned(f *testing.F) {
	header := []byte(`{"alg":"` + HeaderAlg + `","typ":"` + HeaderTyp + `"}`)
	for _, k := range Kinds {
		r := request(k, "seed-"+k)
		if k == KindResync {
			r.Args.Collection = "prices"
		}
		payload, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(header, payload)
	}
	f.Add([]byte(`{"alg":"none","typ":"`+HeaderTyp+`"}`), []byte(`{}`))
	f.Add([]byte(`{"alg":"`+HeaderAlg+`","typ":"`+HeaderTyp+`","crit":["exp"]}`), []byte(`null`))
	f.Add(header, []byte(`{"kind":"resync","args":{"collection":"`+strings.Repeat("x", 300)+`"}}`))
	v := Verifier{Key: vendorKey.Public().(ed25519.PublicKey), Shop: shopID, Server: serverID}
	now := t0.Add(time.Minute)
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
		body := []byte(signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(vendorKey, []byte(signed))))
		r, err := v.Decode(body, now)
		if ref := checkDecoded(t, r, err, now); ref != nil && ref.Reason == ReasonForged {
			t.Fatalf("a body signed with the vendor's key refused as forged: %v", ref)
		}
	})
}

// checkDecoded holds what Decode answered at now to its rules: a refusal is a RefusedError
// that says why, within 1 KiB (returned); a request taken keeps every rule of the request.
func checkDecoded(t *testing.T, r Request, err error, now time.Time) *RefusedError {
	t.Helper()
	if err != nil {
		var ref *RefusedError
		if !errors.As(err, &ref) || ref.Reason == "" || ref.Description == "" || len(ref.Description) > 1024 {
			t.Fatalf("refusal %#v", err)
		}
		return ref
	}
	if !slices.Contains(Kinds, r.Kind) || r.Shop != shopID || r.Server != serverID || r.ID == "" || len(r.ID) > maxIDLen ||
		!r.ExpiresAt.After(r.IssuedAt) || r.ExpiresAt.Sub(r.IssuedAt) > MaxLifetime ||
		now.Before(r.IssuedAt.Add(-MaxClockSkew)) || now.After(r.ExpiresAt.Add(MaxClockSkew)) {
		t.Fatalf("took a request that breaks the rules: %+v", r)
	}
	return nil
}
