package devices

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"strings"
)

// A device's credential is its token, "<device id>.<secret>", sent on every API call as
// "Authorization: Bearer <token>". The id is "dv_" and 16 base32 letters and digits; the secret
// is 32 random bytes in unpadded base64url (43 characters). Only SHA-256(secret) is stored.

const (
	deviceIDPrefix = "dv_"
	secretBytes    = 32
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newDeviceID() string {
	var b [10]byte
	rand.Read(b[:])
	return deviceIDPrefix + idEncoding.EncodeToString(b[:])
}

func newSecret() string {
	var b [secretBytes]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Token is the credential a device sends: its id and its secret.
func Token(deviceID, secret string) string { return deviceID + "." + secret }

// splitToken parses a token; ok is false when it is not of the token's shape.
func splitToken(token string) (id, secret string, ok bool) {
	id, secret, ok = strings.Cut(token, ".")
	if !ok || !validDeviceID(id) || len(secret) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return "", "", false
	}
	return id, secret, true
}

func validDeviceID(id string) bool {
	rest, ok := strings.CutPrefix(id, deviceIDPrefix)
	if !ok || len(rest) != 16 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// hashSecret hashes a secret. One as short as a device's is copied to the stack first, so that
// checking the credential of a device request allocates nothing.
func hashSecret(secret string) [32]byte {
	var buf [64]byte
	if len(secret) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], secret)])
	}
	return sha256.Sum256([]byte(secret))
}

// equalHash compares two hashes in constant time.
func equalHash(a, b [32]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

// EqualSecret compares a presented secret with the configured one in constant time (of the
// secrets' hashes, so that neither length leaks either).
func EqualSecret(presented, configured string) bool {
	return configured != "" && equalHash(hashSecret(presented), hashSecret(configured))
}

// Pairing codes are 8 decimal digits, shown as "1234-5678" and accepted with or without the
// dash or spaces: easy to type on a till, and with the attempt limit far too many to guess in
// a code's lifetime.
const codeDigits = 8

func newPairingCode() string {
	var b [codeDigits]byte
	for i := range b {
		// Rejection sampling keeps the digits uniform.
		for {
			var r [1]byte
			rand.Read(r[:])
			if r[0] < 250 {
				b[i] = '0' + r[0]%10
				break
			}
		}
	}
	return string(b[:4]) + "-" + string(b[4:])
}

// normalizeCode strips the separators a person may type; ok is false when what is left is not
// a code's digits.
func normalizeCode(code string) (string, bool) {
	var b strings.Builder
	for _, r := range code {
		switch {
		case r == '-' || r == ' ':
		case '0' <= r && r <= '9':
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	if b.Len() != codeDigits {
		return "", false
	}
	return b.String(), true
}

func hashCode(normalized string) []byte {
	h := sha256.Sum256([]byte("storeedge pairing code " + normalized))
	return h[:]
}
