package strictjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

type doc struct {
	Name string `json:"name"`
}

type inner struct {
	Phone string `json:"phone"`
}

type deeper struct {
	Shadow struct {
		Deep int `json:"deep"`
	} `json:"shadow"`
}

type embedded struct {
	Kind string `json:"kind"`
	deeper
}

// sibling's Shadow, one level down in order, hides deeper's, two levels down, as encoding/json
// reads it.
type sibling struct {
	Shadow struct {
		Outer int `json:"outer"`
	} `json:"shadow"`
}

type order struct {
	embedded
	sibling
	Note     string            `json:"note"`
	Customer *inner            `json:"customer"`
	Lines    []inner           `json:"lines"`
	Extra    map[string]string `json:"extra"`
	Raw      json.RawMessage   `json:"raw"`
	Plain    int
}

// An object that repeats a key, or names a field in another case, is refused at any depth:
// encoding/json would keep the last value, or take NOTE for note, without a word.
func TestDecodeKeys(t *testing.T) {
	for in, want := range map[string]string{
		`{"note":"a","kind":"k","customer":{"phone":"1"},"lines":[{"phone":"2"}],"extra":{"a":"b"},"raw":{"x":1},"Plain":3}`: "",
		`{"note":"hi","note":"later"}`:            `json: field "note" appears twice`,
		`{"NOTE":"hi"}`:                           `json: unknown field "NOTE"`,
		`{"Kind":"k"}`:                            `json: unknown field "Kind"`,
		`{"plain":3}`:                             `json: unknown field "plain"`,
		`{"customer":{"Phone":"1"}}`:              `json: unknown field "Phone"`,
		`{"customer":{"phone":"1","phone":"2"}}`:  `json: field "phone" appears twice`,
		`{"lines":[{"phone":"1"},{"PHONE":"2"}]}`: `json: unknown field "PHONE"`,
		`{"extra":{"a":"1","a":"2"}}`:             `json: field "a" appears twice`,
		`{"extra":{"A":"1","a":"2"}}`:             "",
		`{"raw":{"x":1,"x":2}}`:                   "", // a payload passed on as it is
		`{"raw":[{"x":1},{"y":{"z":1,"z":2}}]}`:   "",
		`{"shadow":{"deep":1}}`:                   `json: unknown field "deep"`,
		`{"shadow":{"outer":1}}`:                  "",
	} {
		var o order
		err := Decode([]byte(in), &o)
		if got := fmt.Sprint(err); want == "" && err != nil || want != "" && got != want {
			t.Errorf("Decode(%s) = %v, want %q", in, err, want)
		}
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want func(error) bool
	}{
		{`{"name":"Tea"}`, func(err error) bool { return err == nil }},
		{"{\"name\":\"Tea\"} \n\t", func(err error) bool { return err == nil }},
		{`{"name":"Tea"}]`, func(err error) bool { return errors.Is(err, ErrTrailing) }},
		{`{"name":"Tea"}}`, func(err error) bool { return errors.Is(err, ErrTrailing) }},
		{`{"name":"Tea"}{}`, func(err error) bool { return errors.Is(err, ErrTrailing) }},
		{`{"name":"Tea"} x`, func(err error) bool { return errors.Is(err, ErrTrailing) }},
		{"{\"name\":\"T\xffa\"}", func(err error) bool {
			var u *InvalidUTF8Error
			return errors.As(err, &u) && u.Offset == 10 && u.Byte == 0xff
		}},
		{`{"name":"Tea","price":1}`, func(err error) bool { return err != nil && err.Error() == `json: unknown field "price"` }},
		{`{"name":`, func(err error) bool { var s *json.SyntaxError; return err != nil && !errors.As(err, &s) }},
	} {
		var d doc
		if err := Decode([]byte(tc.in), &d); !tc.want(err) {
			t.Errorf("Decode(%q) = %v", tc.in, err)
		}
	}
}

// FuzzDecode: never a panic; whatever is accepted is valid JSON that encoding/json reads alike.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name":"Tea"}`, `{"name":"Tea"}]`, "{\"name\":\"\xff\"}", `[]`, ``, `{"name":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d doc
		if err := Decode(b, &d); err != nil {
			return
		}
		var again doc
		if !json.Valid(b) || json.Unmarshal(b, &again) != nil || again != d {
			t.Fatalf("accepted %q as %+v", b, d)
		}
		var o order
		if err := Decode(b, &o); err == nil && !json.Valid(b) {
			t.Fatalf("accepted %q into an order", b)
		}
	})
}
