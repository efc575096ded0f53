// Package strictjson decodes one JSON document the way storeedge reads every closed document
// from outside (a request body, a Service Bus order, a support request): UTF-8 only, since
// encoding/json would put U+FFFD in place of a bad byte and store what nobody sent; no field the
// type lacks; and nothing after the document but white space, which json.Decoder.More does not
// tell (it is false before a stray ']' or '}').
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ErrTrailing says that something other than white space follows the document.
var ErrTrailing = errors.New("unexpected data after the JSON object")

// InvalidUTF8Error says where the text stops being UTF-8.
type InvalidUTF8Error struct {
	Offset int
	Byte   byte
}

func (e *InvalidUTF8Error) Error() string {
	return fmt.Sprintf("not valid UTF-8: byte 0x%02x at offset %d", e.Byte, e.Offset)
}

// Decode decodes data, which must be exactly one JSON value, into v. Its errors are an
// *InvalidUTF8Error, ErrTrailing, or encoding/json's.
func Decode(data []byte, v any) error {
	if at := invalidUTF8(data); at >= 0 {
		return &InvalidUTF8Error{Offset: at, Byte: data[at]}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	var syntax *json.SyntaxError
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return nil
	case err == nil || errors.As(err, &syntax):
		return ErrTrailing
	default:
		return err
	}
}

// invalidUTF8 returns the offset of the first byte of b that is not part of valid UTF-8, or -1.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}
