// Package clip shortens text from outside (an answer, a log value, an error) before it is kept
// or shown.
package clip

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// String returns s when it holds at most n bytes; otherwise its first n bytes or fewer, cut on a
// character boundary, followed by "…". Invalid UTF-8 is dropped either way.
func String(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "")
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "") + "…"
}

// Quoted returns s quoted as Go quotes strings when it holds at most n bytes; otherwise its first
// n bytes or fewer, cut on a character boundary, quoted, followed by "…" outside the quotes, so
// that the mark is not read as part of the value.
func Quoted(s string, n int) string {
	if c := String(s, n); len(s) > n {
		return strconv.Quote(strings.TrimSuffix(c, "…")) + "…"
	}
	return strconv.Quote(s)
}
