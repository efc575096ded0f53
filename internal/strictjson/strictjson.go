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
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/storeedge/storeedge/internal/clip"
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

// maxKeyShown bounds the part of a key an error quotes.
const maxKeyShown = 64

// KeyError says that an object repeats a key, or names a field in another case than its own:
// encoding/json would keep the last of two values, and take "NOTE" for "note", without a word.
type KeyError struct {
	Key       string
	Duplicate bool // else: no field of that exact name
}

func (e *KeyError) Error() string {
	if e.Duplicate {
		return "json: field " + clip.Quoted(e.Key, maxKeyShown) + " appears twice"
	}
	return "json: unknown field " + clip.Quoted(e.Key, maxKeyShown)
}

// Decode decodes data, which must be exactly one JSON value, into v. Its errors are an
// *InvalidUTF8Error, a *KeyError, ErrTrailing, or encoding/json's.
func Decode(data []byte, v any) error {
	if at := invalidUTF8(data); at >= 0 {
		return &InvalidUTF8Error{Offset: at, Byte: data[at]}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// encoding/json quotes an unknown key whole, however long: a *KeyError quotes its start.
		if q, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if key, uerr := strconv.Unquote(q); uerr == nil {
				return &KeyError{Key: key}
			}
		}
		return err
	}
	// The document decoded, so it is valid JSON: its keys are checked on a second read.
	keys := json.NewDecoder(bytes.NewReader(data))
	keys.UseNumber()
	if err := checkKeys(keys, reflect.TypeOf(v)); err != nil {
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

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

// checkKeys reads the next value of dec, which holds valid JSON, and checks that no object in it
// repeats a key and that an object read into a struct names its fields exactly. t is the type the
// value is read into; nil (an any, a json.RawMessage, a type that reads itself) checks repeats
// only.
func checkKeys(dec *json.Decoder, t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshaler) {
		// A type that reads itself (json.RawMessage: a payload passed on as it is) decides
		// what its value may hold.
		var skip json.RawMessage
		return dec.Decode(&skip)
	}
	if t != nil && t.Kind() == reflect.Interface {
		t = nil
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := checkKeys(dec, elem); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ]
		return err
	case json.Delim('{'):
		var fields map[string]reflect.Type
		var elem reflect.Type
		switch {
		case t == nil:
		case t.Kind() == reflect.Struct:
			fields = fieldTypes(t)
		case t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			if seen[key] {
				return &KeyError{Key: key, Duplicate: true}
			}
			seen[key] = true
			next := elem
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					return &KeyError{Key: key}
				}
				next = ft
			}
			if err := checkKeys(dec, next); err != nil {
				return err
			}
		}
		_, err := dec.Token() // }
		return err
	}
	return nil
}

// fieldTypes maps the JSON names of a struct's fields, those of its embedded structs included,
// to their types, as encoding/json names them: a field of a shallower struct hides one of the
// same name deeper down.
func fieldTypes(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	depth := map[string]int{}
	addFields(t, 0, out, depth)
	return out
}

func addFields(t reflect.Type, level int, out map[string]reflect.Type, depth map[string]int) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(ft, level+1, out, depth)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if d, ok := depth[name]; !ok || level < d {
			out[name], depth[name] = f.Type, level
		}
	}
}
