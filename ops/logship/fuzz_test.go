package logship

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/jsonenc"
)

// FuzzRedact: whatever the text, redaction does not panic, removes every configured secret and
// leaves valid UTF-8 valid; a JSON value stays JSON.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"", "plain text", `{"customer":{"name":"A"},"email":"a@b.co"}`, `{\"note\":\"x\"}`,
		"https://u:p@h/x?sig=abc&code=1", "Bearer abcdefgh", "+33 6 12 34 56 78", "1234-5678",
		"SharedAccessSignature sr=a&sig=b", "<customer>x</customer>", "Customer:&{Name:x}",
	} {
		f.Add(s, "s3cret-value")
	}
	f.Fuzz(func(t *testing.T, text, secret string) {
		r := NewRedactor([]string{secret})
		got := r.Text(text)
		// A secret found only across a redaction marker is made of the marker, not left over.
		if len(secret) >= config.MinSecretLen && !strings.ContainsRune(secret, 0) &&
			strings.Contains(strings.ReplaceAll(got, Redaction, "\x00"), secret) {
			t.Errorf("Text(%q) = %q keeps the secret %q", text, got, secret)
		}
		if json.Valid([]byte(text)) {
			if v, ok := r.Value("attr", json.RawMessage(text)).(json.RawMessage); ok && !json.Valid(v) {
				t.Errorf("Value of JSON %q is not JSON: %q", text, v)
			}
		}
		// The JSON string writer says what encoding/json says.
		want, _ := json.Marshal(text)
		var a, b string
		if json.Unmarshal(want, &a) != nil || json.Unmarshal(jsonenc.AppendString(nil, text), &b) != nil || a != b {
			t.Errorf("jsonenc.AppendString(%q) = %s, encoding/json %s", text, jsonenc.AppendString(nil, text), want)
		}
		line := encodeLine(nil, entry{msg: text, attrs: []field{{key: text, val: text}}}, Meta{}, r)
		if !json.Valid(line) {
			t.Errorf("encoded record is not JSON: %q", line)
		}
	})
}

// FuzzSpoolSegment: a segment file damaged in any way opens, and reading it gives JSON objects
// only, without a panic.
func FuzzSpoolSegment(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\n"), []byte("3"))
	f.Add([]byte("{\"a\":1}\nnot json\n{\"cut"), []byte("garbage"))
	f.Add([]byte("\n\n\n"), []byte("99999999999999999999999"))
	f.Fuzz(func(t *testing.T, segment, cursor []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, segmentName(1)), segment, 0o600)
		os.WriteFile(filepath.Join(dir, cursorFile), cursor, 0o600)
		s, err := openSpool(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		for range 1000 {
			recs, end, bad, err := s.read(3, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if !json.Valid(r.line) || r.line[0] != '{' {
					t.Fatalf("read gave %q", r.line)
				}
			}
			if len(recs) == 0 && bad == 0 {
				return
			}
			s.commit(end)
		}
		t.Fatal("reading never ends")
	})
}
