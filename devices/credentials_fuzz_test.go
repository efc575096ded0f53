package devices

import (
	"strings"
	"testing"
)

// FuzzCredentialParsers feeds arbitrary Authorization tokens and typed pairing codes: never a
// panic; an accepted token has a device id of the documented shape and a secret of its length,
// and joins back to itself; an accepted code is its eight digits, whatever separators were typed.
func FuzzCredentialParsers(f *testing.F) {
	f.Add(Token("dv_abcdefghijklmnop", strings.Repeat("A", 43)), "1234-5678")
	f.Add("dv_abcdefghijklmnop.", "12 34 56 78")
	f.Add("dv_ABCDEFGHIJKLMNOP.x", "1234567")
	f.Add("..", "١٢٣٤٥٦٧٨")
	f.Fuzz(func(t *testing.T, token, code string) {
		if id, secret, ok := splitToken(token); ok {
			if !validDeviceID(id) || Token(id, secret) != token {
				t.Fatalf("splitToken(%q) = %q, %q", token, id, secret)
			}
		}
		if n, ok := normalizeCode(code); ok {
			if len(n) != codeDigits || strings.Trim(n, "0123456789") != "" {
				t.Fatalf("normalizeCode(%q) = %q", code, n)
			}
		}
	})
}
