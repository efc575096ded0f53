package cloudsim

import (
	"strconv"
	"unicode/utf8"
)

// Append-style JSON helpers for the feed's hot path. The feed writes hundreds of thousands of
// lines a second; encoding/json's reflection and allocations would dominate, so documents are
// appended field by field into a reused buffer instead.

// jsonSafe reports whether s can be written between quotes as is. The word lists of the
// generated catalog are checked with it once, so the hot path can copy them without escaping.
func jsonSafe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendPadded appends n in decimal, zero-padded to width digits.
func appendPadded(b []byte, n uint64, width int) []byte {
	var tmp [20]byte
	i := len(tmp)
	for n > 0 || i > len(tmp)-width {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, tmp[i:]...)
}

// idDigits is the width of the number in product and media ids ("P0000001"). Zero padding
// makes lexical order equal index order, which the snapshot relies on.
const idDigits = 7

// maxIDNumber is the largest number an id of idDigits digits can carry.
const maxIDNumber = 9_999_999

// appendItemID appends the id of item idx (0-based) with the given prefix letter, unquoted.
func appendItemID(b []byte, prefix byte, idx int) []byte {
	b = append(b, prefix)
	return appendPadded(b, uint64(idx)+1, idDigits)
}

// itemID returns the id of item idx (0-based) with the given prefix letter.
func itemID(prefix byte, idx int) string {
	return string(appendItemID(make([]byte, 0, 1+idDigits), prefix, idx))
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }
