package support

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/strictjson"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// The kinds of request (docs/remote-support.md).
const (
	KindPing        = "ping"
	KindDiagnostics = "diagnostics"
	KindResync      = "resync"
	KindRetryOutbox = "retry-outbox"
)

// Kinds lists every kind, in the order the documentation gives them.
var Kinds = []string{KindPing, KindDiagnostics, KindResync, KindRetryOutbox}

// The JWS header every request carries: Ed25519 signatures (RFC 8037), and a type that no
// other document signed with the vendor's key has, so that none can pass for a request.
const (
	HeaderAlg = "EdDSA"
	HeaderTyp = "storeedge-support-request"
)

// Limits on a request.
const (
	// MaxRequestBytes bounds a request message's body.
	MaxRequestBytes = 16 << 10
	// MaxLifetime bounds expires_at - issued_at: a captured request is of use for that long at
	// most, and its id is remembered that long.
	MaxLifetime = time.Hour
	// MaxClockSkew is how far this server's clock may be from the vendor's: a request issued up
	// to this much in the future is taken, and one expired less than this long ago.
	MaxClockSkew = 5 * time.Minute
	// maxIDLen bounds a request id.
	maxIDLen = 128
	// maxShown bounds a value from a request quoted in a refusal.
	maxShown = 80
)

// Reasons for refusing a request: its message is dead-lettered with one of them as
// DeadLetterReason, and a description saying exactly what was wrong.
const (
	ReasonMalformed   = "Malformed"    // not a request as docs/remote-support.md defines it
	ReasonForged      = "BadSignature" // the signature does not verify with the configured key
	ReasonWrongTarget = "WrongTarget"  // meant for another shop or server
	ReasonNotYetValid = "NotYetValid"  // issued in the future, beyond MaxClockSkew
	ReasonExpired     = "Expired"      // expired, beyond MaxClockSkew
	ReasonUnknownKind = "UnknownKind"  // signed, but of a kind this server does not know
	ReasonNotAllowed  = "NotAllowed"   // a kind the shop does not allow
	ReasonReplayed    = "Replayed"     // a request id seen before, in another message
)

// RefusedError is a request refused: the dead-letter reason and its description.
type RefusedError struct {
	Reason      string
	Description string
}

func (e *RefusedError) Error() string { return "support: " + e.Reason + ": " + e.Description }

func refused(reason, format string, args ...any) *RefusedError {
	return &RefusedError{Reason: reason, Description: fmt.Sprintf(format, args...)}
}

// Request is a verified support request.
type Request struct {
	Kind      string    `json:"kind"`
	ID        string    `json:"id"`
	Shop      string    `json:"shop"`
	Server    string    `json:"server"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Args      Args      `json:"args"`
}

// Args are a request's arguments; each kind says which it takes.
type Args struct {
	// Collection is the catalog collection a resync reads again.
	Collection string `json:"collection,omitempty"`
}

// Verifier decodes and verifies the requests meant for one server.
type Verifier struct {
	Key    ed25519.PublicKey // the vendor's (support.servicebus.public_key)
	Shop   string            // this shop's shop.id
	Server string            // this server's server_id
}

// Decode verifies a request message's body at time now: a JWS in compact serialization
// (RFC 7515) with the header of HeaderAlg and HeaderTyp, signed with v.Key, whose payload is a
// Request meant for v.Shop and v.Server, valid at now, of a known kind with the arguments that
// kind takes. Every failure is a *RefusedError; once the signature verified and the payload
// decoded, the Request is returned with it, for the record. Whether the shop allows the kind,
// and whether the id was seen before, are the caller's to check.
func (v Verifier) Decode(body []byte, now time.Time) (Request, error) {
	header, payload, err := v.verify(body)
	if err != nil {
		return Request{}, err
	}
	if err := checkHeader(header); err != nil {
		return Request{}, err
	}
	r, err := decodeClaims(payload)
	if err != nil {
		return Request{}, err
	}
	if r.Shop != v.Shop || r.Server != v.Server {
		return r, refused(ReasonWrongTarget, "meant for shop %s, server %s; this is shop %s, server %s",
			shown(r.Shop), shown(r.Server), shown(v.Shop), shown(v.Server))
	}
	if err := checkTime(r, now); err != nil {
		return r, err
	}
	return r, checkKind(r)
}

// verify splits the JWS and checks its signature; it returns the header and payload, decoded.
// The signature is checked before anything the request says is looked at.
func (v Verifier) verify(body []byte) (header, payload []byte, err error) {
	if len(body) > MaxRequestBytes {
		return nil, nil, refused(ReasonMalformed, "the body is %d bytes, more than %d", len(body), MaxRequestBytes)
	}
	parts := strings.Split(string(bytes.TrimSpace(body)), ".")
	if len(parts) != 3 {
		return nil, nil, refused(ReasonMalformed, "the body is not a JWS in compact serialization: want three base64url parts separated by '.', found %d", len(parts))
	}
	var dec [3][]byte
	for i, name := range []string{"header", "payload", "signature"} {
		if dec[i], err = base64.RawURLEncoding.Strict().DecodeString(parts[i]); err != nil {
			return nil, nil, refused(ReasonMalformed, "the JWS %s is not base64url without padding", name)
		}
	}
	if len(dec[2]) != ed25519.SignatureSize || !ed25519.Verify(v.Key, []byte(parts[0]+"."+parts[1]), dec[2]) {
		return nil, nil, refused(ReasonForged, "the signature does not verify with support.servicebus.public_key: the request was not signed with the vendor's key, or was changed on the way")
	}
	return dec[0], dec[1], nil
}

// checkHeader checks the JWS header: HeaderAlg, HeaderTyp, and no critical extension.
func checkHeader(raw []byte) error {
	// Its members are read by their exact names, each given once (a JWS header may carry others,
	// kid say): encoding/json would take "TYP" for typ, or the last of two.
	var m map[string]json.RawMessage
	if err := strictjson.Decode(raw, &m); err != nil || m == nil {
		return refused(ReasonMalformed, "the JWS header is not a JSON object whose members are each given once")
	}
	var h struct{ Alg, Typ string }
	for name, dst := range map[string]*string{"alg": &h.Alg, "typ": &h.Typ} {
		if v, ok := m[name]; ok && json.Unmarshal(v, dst) != nil {
			return refused(ReasonMalformed, "the JWS header's %s is not a string", name)
		}
	}
	_, crit := m["crit"]
	switch {
	case h.Alg != HeaderAlg:
		return refused(ReasonMalformed, "the JWS header's alg is %s; want %q", shown(h.Alg), HeaderAlg)
	case h.Typ != HeaderTyp:
		return refused(ReasonMalformed, "the JWS header's typ is %s; want %q", shown(h.Typ), HeaderTyp)
	case crit:
		return refused(ReasonMalformed, "the JWS header has crit; this server understands no extension")
	}
	return nil
}

// decodeClaims reads the payload, a JSON object of the fields of Request and no other.
func decodeClaims(raw []byte) (Request, error) {
	var r Request
	switch err := strictjson.Decode(raw, &r); {
	case errors.Is(err, strictjson.ErrTrailing):
		return Request{}, refused(ReasonMalformed, "the payload has more after its JSON object")
	case err != nil:
		return Request{}, refused(ReasonMalformed, "the payload is not a request: %s", jsonProblem(err))
	}
	var missing []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"kind", r.Kind != ""}, {"id", r.ID != ""}, {"shop", r.Shop != ""}, {"server", r.Server != ""},
		{"issued_at", !r.IssuedAt.IsZero()}, {"expires_at", !r.ExpiresAt.IsZero()}} {
		if !f.set {
			missing = append(missing, f.name)
		}
	}
	switch {
	case len(missing) > 0:
		return Request{}, refused(ReasonMalformed, "the payload lacks %s", strings.Join(missing, ", "))
	case len(r.ID) > maxIDLen || strings.IndexFunc(r.ID, notIDRune) >= 0:
		return Request{}, refused(ReasonMalformed, "id %s: want 1 to %d letters, digits, '.', '_', ':' or '-'", shown(r.ID), maxIDLen)
	case !r.ExpiresAt.After(r.IssuedAt):
		return Request{}, refused(ReasonMalformed, "expires_at is not after issued_at")
	case r.ExpiresAt.Sub(r.IssuedAt) > MaxLifetime:
		return Request{}, refused(ReasonMalformed, "valid for %s, longer than %s", r.ExpiresAt.Sub(r.IssuedAt), MaxLifetime)
	}
	return r, nil
}

// jsonProblem says what is wrong with a payload without quoting more than a field name.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var ke *strictjson.KeyError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("field %s has the wrong type (want %s)", shown(te.Field), te.Type)
	case errors.As(err, &ke) && ke.Duplicate:
		return "field " + shown(ke.Key) + " given twice"
	case errors.As(err, &ke):
		return "unknown field " + shown(ke.Key)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + shown(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
	case strings.Contains(err.Error(), "parsing time"):
		return "issued_at and expires_at must be RFC 3339 times"
	}
	return "not a JSON object"
}

func checkTime(r Request, now time.Time) error {
	if early := r.IssuedAt.Sub(now); early > MaxClockSkew {
		return refused(ReasonNotYetValid, "issued at %s, %s after this server's time %s: check the clocks", stamp(r.IssuedAt), early.Round(time.Second), stamp(now))
	}
	if late := now.Sub(r.ExpiresAt); late > MaxClockSkew {
		return refused(ReasonExpired, "expired at %s, %s before this server's time %s", stamp(r.ExpiresAt), late.Round(time.Second), stamp(now))
	}
	return nil
}

// checkKind checks that the kind is known and has the arguments it takes.
func checkKind(r Request) error {
	switch r.Kind {
	case KindResync:
		if !slices.Contains(cloudapi.Collections, r.Args.Collection) {
			return refused(ReasonMalformed, "resync: args.collection is %s; want one of %s", shown(r.Args.Collection), strings.Join(cloudapi.Collections, ", "))
		}
	case KindPing, KindDiagnostics, KindRetryOutbox:
		if r.Args != (Args{}) {
			return refused(ReasonMalformed, "%s takes no args", r.Kind)
		}
	default:
		return refused(ReasonUnknownKind, "kind %s is not one this server knows (%s)", shown(r.Kind), strings.Join(Kinds, ", "))
	}
	return nil
}

// Remember is how long a request's id must be remembered to refuse a replay: past that, the
// request is refused as expired anyway.
func (r Request) Remember() time.Time { return r.ExpiresAt.Add(MaxClockSkew) }

func notIDRune(c rune) bool {
	return !(c == '.' || c == '_' || c == ':' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z')
}

// shown quotes a value from a request for a refusal's description, cut short.
func shown(s string) string {
	if len(s) > maxShown {
		s = strings.ToValidUTF8(s[:maxShown], "") + "…"
	}
	return strconv.Quote(s)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Sign makes the body of a request message, as the vendor's support does: the reference of
// docs/remote-support.md for tools and tests. The payload is r's JSON.
func Sign(key ed25519.PrivateKey, r Request) ([]byte, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("support: sign: %w", err)
	}
	return SignPayload(key, payload), nil
}

// SignPayload makes the body of a request message whose payload is the given JSON text, signed
// with key under the header {"alg":"EdDSA","typ":"storeedge-support-request"}.
func SignPayload(key ed25519.PrivateKey, payload []byte) []byte {
	signed := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"`+HeaderAlg+`","typ":"`+HeaderTyp+`"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(payload)
	return []byte(signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(signed))))
}
