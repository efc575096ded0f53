package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 5, ""},
		{"short", 5, "short"},
		{"longer", 5, "longe…"},
		{"ééé", 5, "éé…"}, // not cut inside the third é
		{"a\xffb", 5, "ab"},
		{"abc", 0, "…"},
	} {
		if got := String(c.in, c.n); got != c.want {
			t.Errorf("String(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func FuzzString(f *testing.F) {
	f.Add("ééé", 5)
	f.Add("a\xffb\xe2\x82", 3)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = min(max(n, 0), 1<<16)
		got := String(s, n)
		if !utf8.ValidString(got) {
			t.Fatalf("String(%q, %d) = %q: not UTF-8", s, n, got)
		}
		if len(s) <= n {
			if got != strings.ToValidUTF8(s, "") {
				t.Fatalf("String(%q, %d) = %q: cut though short enough", s, n, got)
			}
			return
		}
		body, ok := strings.CutSuffix(got, "…")
		if !ok || len(body) > n || !strings.HasPrefix(strings.ToValidUTF8(s, ""), body) {
			t.Fatalf("String(%q, %d) = %q", s, n, got)
		}
	})
}

func TestQuoted(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"EUR", 5, `"EUR"`},
		{"yesterday", 3, `"yes"…`},
		{"a\"b", 5, `"a\"b"`},
		{"ééé", 5, `"éé"…`},
	} {
		if got := Quoted(c.in, c.n); got != c.want {
			t.Errorf("Quoted(%q, %d) = %s, want %s", c.in, c.n, got, c.want)
		}
	}
}
