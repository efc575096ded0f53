package strictjson

import (
	"encoding/json"
	"errors"
	"testing"
)

type doc struct {
	Name string `json:"name"`
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
	})
}
