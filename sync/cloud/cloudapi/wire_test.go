package cloudapi

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestDecoderPages(t *testing.T) {
	in := `{"collection":"products","id":"P1","op":"upsert","rev":3,"doc":{"id":"P1","name":"Tea","barcodes":["4006381333931"]}}
{"collection":"products","id":"P2","op":"delete","rev":4}
{"end":{"cursor":"c1","count":2,"more":true,"remaining":5}}
{"collection":"products","id":"P3","op":"upsert","rev":5,"doc":{"id":"P3"}}
not json at all, but it mentions "id": "P9"
{"end":{"cursor":"c2","count":2,"more":false,"remaining":0}}
`
	d := NewDecoder(strings.NewReader(in), Products)
	var kinds []string
	for {
		l, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case l.Change != nil:
			kinds = append(kinds, l.Change.Op+":"+l.Change.ID)
		case l.End != nil:
			kinds = append(kinds, "end:"+l.End.Cursor)
		default:
			kinds = append(kinds, "bad:"+l.Malformed.ID+":"+l.Malformed.Reason)
		}
	}
	want := []string{"upsert:P1", "delete:P2", "end:c1", "bad:P3:name is missing", "bad:P9:not a JSON object: invalid character 'o' in literal null (expecting 'u')", "end:c2"}
	if strings.Join(kinds, "|") != strings.Join(want, "|") {
		t.Fatalf("got  %q\nwant %q", kinds, want)
	}
}

func TestDecoderTruncatedAndOversized(t *testing.T) {
	d := NewDecoder(strings.NewReader(`{"collection":"products","id":"P1","op":"del`), Products)
	if _, err := d.Next(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("cut line: %v", err)
	}
	long := `{"collection":"products","id":"P1","op":"upsert","rev":1,"doc":{"id":"P1","name":"` + strings.Repeat("x", MaxLineBytes) + "\"}}\n" +
		`{"end":{"cursor":"c","count":1,"more":false}}` + "\n"
	d = NewDecoder(strings.NewReader(long), Products)
	l, err := d.Next()
	if err != nil || l.Malformed == nil || !strings.Contains(l.Malformed.Reason, "longer than") {
		t.Fatalf("oversized line: %+v %v", l, err)
	}
	// The item keeps its id, so a re-snapshot counts it as mentioned, and the raw bytes are
	// the line's start.
	if l.Malformed.ID != "P1" || !strings.HasPrefix(string(l.Malformed.Raw), `{"collection":"products","id":"P1"`) {
		t.Fatalf("oversized line: id %q, raw %.60q", l.Malformed.ID, l.Malformed.Raw)
	}
	if l, err := d.Next(); err != nil || l.End == nil {
		t.Fatalf("line after the oversized one: %+v %v", l, err)
	}
	// An id no item can have (a control character) is not kept as the quarantine's name.
	d = NewDecoder(strings.NewReader(strings.Replace(long, `"id":"P1"`, `"id":"P`+"\x7f"+`1"`, 1)), Products)
	if l, err := d.Next(); err != nil || l.Malformed == nil || l.Malformed.ID != "" {
		t.Fatalf("oversized line with a bad id: %+v %v", l.Malformed, err)
	}
}

func TestDecodeLineRules(t *testing.T) {
	for _, tc := range []struct{ coll, line, reason string }{
		{Prices, `{"collection":"prices","id":"P1","op":"upsert","rev":1,"doc":{"product_id":"P1","currency":"eur","amount":1}}`, "ISO 4217"},
		{Prices, `{"collection":"prices","id":"P1","op":"upsert","rev":1,"doc":{"product_id":"P1","currency":"EUR","amount":-1}}`, "negative"},
		{Stock, `{"collection":"stock","id":"P1","op":"upsert","rev":1,"doc":{"product_id":"P2","quantity":1}}`, "differs"},
		{Media, `{"collection":"media","id":"M1","op":"upsert","rev":1,"doc":{"id":"M1","blob":"a.jpg","size":10,"md5":"xyz"}}`, "md5"},
		{Media, `{"collection":"media","id":"M1","op":"upsert","rev":1,"doc":{"id":"M1","blob":"a.jpg","size":1099511627777,"md5":"ylgKCn8hBz9D2O5yO+a1QA=="}}`, "1 TiB"},
		{Media, `{"collection":"media","id":"M1","op":"upsert","rev":1,"doc":{"id":"M1","blob":"a.jpg","size":0,"md5":"ylgKCn8hBz9D2O5yO+a1QA=="}}`, "size must be 1.."},
		{Settings, `{"collection":"settings","id":"k","op":"upsert","rev":1,"doc":{"key":"k"}}`, "value"},
		{Products, `{"collection":"prices","id":"P1","op":"delete","rev":1}`, "collection"},
		{Products, `{"collection":"products","id":"P1","op":"delete","rev":0}`, "rev"},
		{Products, `{"collection":"products","id":"","op":"delete","rev":1}`, "id is missing"},
		{Products, `{"collection":"products","id":"P\u0001","op":"delete","rev":1}`, "control"},
		{Products, `{"collection":"products","id":"P\u0085","op":"delete","rev":1}`, "control"},
		{Products, "{\"collection\":\"products\",\"id\":\"P1\",\"op\":\"upsert\",\"rev\":1,\"doc\":{\"id\":\"P1\",\"name\":\"T\xffa\"}}", "UTF-8"},
		{Products, `{"end":{"cursor":"","count":0,"more":false}}`, "cursor"},
		{Products, `{"end":{"cursor":"c","count":10001,"more":false}}`, "count"},
		{Products, `{"end":{"cursor":"c","count":1}}`, "end line without more"},
		{Products, `{"end":{"count":1,"more":true}}`, "end line without cursor"},
		{Products, `{"end":null}`, "end line: null"},
		{Products, `{"end":{"cursor":"c","count":"1","more":true}}`, "end line: json: cannot unmarshal"},
		// The contract's keys are case-sensitive and given once: encoding/json would take "ID"
		// for "id", and the last of two.
		{Products, `{"collection":"products","id":"P1","op":"upsert","rev":1,"doc":{"ID":"P1","Name":"x"}}`, `doc: key "ID": keys are case-sensitive, want "id"`},
		{Products, `{"collection":"products","id":"P1","op":"upsert","rev":1,"doc":{"id":"P1","name":"x","name":"y"}}`, `doc: key "name" appears twice`},
		{Prices, `{"collection":"prices","id":"P1","op":"upsert","rev":1,"doc":{"product_id":"P1","Currency":"EUR","amount":1}}`, `key "Currency"`},
		{Products, `{"collection":"products","id":"P1","Id":"P2","op":"delete","rev":1}`, `key "Id": keys are case-sensitive`},
		{Products, `{"collection":"products","id":"P1","id":"P2","op":"delete","rev":1}`, `key "id" appears twice`},
		{Products, `{"Collection":"products","id":"P1","op":"delete","rev":1}`, `key "Collection"`},
		{Products, `{"end":{"cursor":"c","count":1,"more":true,"Count":5}}`, `end line: key "Count"`},
		{Media, `{"collection":"media","id":"M1","op":"upsert","rev":1,"doc":{"id":"M1","blob":"a.jpg","size":10,"md5":"ylgKCn8hBz9D2O5yO+a1QB=="}}`, "md5"},
	} {
		l := DecodeLine([]byte(tc.line), tc.coll, 1)
		if l.Malformed == nil || !strings.Contains(l.Malformed.Reason, tc.reason) {
			t.Errorf("%s: got %+v, want a malformed line about %q", tc.line, l, tc.reason)
		}
	}
}

// FuzzDecoder feeds arbitrary response bodies to the feed decoder: it must never panic, and every
// line it returns is exactly one of change, end or malformed, with a change always valid.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte(`{"collection":"products","id":"P1","op":"upsert","rev":3,"doc":{"id":"P1","name":"Tea"}}` + "\n" + `{"end":{"cursor":"c","count":1,"more":false}}` + "\n"))
	f.Add([]byte(`{"collection":"prices","id":"P1","op":"upsert","rev":1,"doc":{"product_id":"P1","currency":"EUR","amount":5}}` + "\n"))
	f.Add([]byte(`{"collection":"products","id":"P1","op":"delete","rev":2}` + "\n{garbage\n"))
	f.Add([]byte("\n\n{\"end\":{}}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, coll := range Collections {
			d := NewDecoder(strings.NewReader(string(body)), coll)
			for i := 0; i < 10000; i++ {
				l, err := d.Next()
				if err != nil {
					break
				}
				n := 0
				if l.Change != nil {
					n++
					if ValidateID(l.Change.ID) != nil || l.Change.Rev <= 0 || l.Change.Collection != coll {
						t.Fatalf("invalid change passed: %+v", l.Change)
					}
					if l.Change.Op == OpUpsert && ValidateDoc(coll, l.Change.ID, l.Change.Doc) != nil {
						t.Fatalf("invalid doc passed: %s", l.Change.Doc)
					}
				}
				if l.End != nil {
					n++
				}
				if l.Malformed != nil {
					n++
					if len(l.Malformed.Raw) > 512 {
						t.Fatalf("raw excerpt of %d bytes", len(l.Malformed.Raw))
					}
				}
				if n != 1 {
					t.Fatalf("line is %d kinds at once: %+v", n, l)
				}
			}
		}
	})
}

// fastPathSeeds are change lines as the cloud writes them, and near misses of that form.
var fastPathSeeds = []string{
	`{"collection":"products","id":"P0000002","op":"upsert","rev":2,"doc":{"id":"P0000002","sku":"BRE-0000002","name":"Casa Verde Signature Classic Porridge Oats 750 g","description":"Porridge Oats by Casa Verde, classic (750 g). Best enjoyed within three days of opening.","brand":"Casa Verde","category":"Breakfast/Porridge","barcodes":["7645096939877","4271641297487"],"media":["M0000001"],"attributes":{"flavour":"Classic","origin":"Greece","size":"750 g"}}}`,
	`{"collection":"products","id":"P1","op":"upsert","rev":3,"doc":{"id":"P1","name":"Thé vert","barcodes":[],"attributes":{},"media":[]}}`,
	`{"collection":"products","id":"P1","op":"upsert","rev":3,"doc":{"id":"P1","name":"Tea","attributes":{"a":"1","a":"2"}}}`,
	`{"collection":"products","id":"P1","op":"upsert","rev":3,"doc":{"id":"P1","name":"Tea","Name":"Other"}}`,
	`{"collection":"products","id":"P1","op":"upsert","rev":3,"doc":{"id":"P1","name":"T\u00e9a"}}`,
	`{"collection":"products","id":"P1","op":"delete","rev":4}`,
	` { "collection" : "products" , "id" : "P1" , "op" : "delete" , "rev" : 4 } `,
	`{"collection":"products","id":"P1","op":"delete","rev":4,"rev":5}`,
	`{"collection":"products","id":"P1","op":"delete","rev":4.0}`,
	`{"collection":"products","id":"P1","op":"delete","rev":-0}`,
	`{"collection":"prices","id":"P0000001","op":"upsert","rev":200001,"doc":{"product_id":"P0000001","currency":"EUR","amount":519,"tax_rate":550}}`,
	`{"collection":"prices","id":"P1","op":"upsert","rev":1,"doc":{"product_id":"P1","currency":"EUR","amount":1e3}}`,
	`{"collection":"prices","id":"P1","op":"upsert","rev":1,"doc":{"product_id":"P1","currency":"EUR","amount":-0,"list_amount":0012}}`,
	`{"collection":"stock","id":"P0000002","op":"upsert","rev":400002,"doc":{"product_id":"P0000002","quantity":61,"reserved":2,"updated_at":"2026-01-05T07:45:15Z"}}`,
	`{"collection":"stock","id":"P1","op":"upsert","rev":4,"doc":{"product_id":"P1","quantity":null}}`,
	`{"collection":"media","id":"M0000001","op":"upsert","rev":600001,"doc":{"id":"M0000001","blob":"products/M0000001.jpg","size":383864,"md5":"ylgKCn8hBz9D2O5yO+a1QA==","content_type":"image/jpeg"}}`,
	`{"collection":"media","id":"M1","op":"upsert","rev":6,"doc":{"id":"M1","blob":"a","size":1,"md5":"ylgKCn8hBz9D2O5yO+a1QA=="}} x`,
	`{"collection":"settings","id":"currency","op":"upsert","rev":650001,"doc":{"key":"currency","value":"EUR"}}`,
}

// FuzzFastPathAgrees checks the fast path of DecodeLine against encoding/json: whatever line it
// accepts, the slow path accepts too and reads the same change.
func FuzzFastPathAgrees(f *testing.F) {
	for _, s := range fastPathSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, coll := range Collections {
			fast, ok := fastChange(line, coll)
			if !ok {
				continue
			}
			slow := decodeLine(line, coll, 1)
			if slow.Change == nil {
				t.Fatalf("%s: fast path accepted a line encoding/json refuses (%v): %s", coll, slow.Malformed, line)
			}
			if !reflect.DeepEqual(fast, slow.Change) {
				t.Fatalf("%s: fast path read\n%+v\nencoding/json read\n%+v\nfrom %s", coll, fast, slow.Change, line)
			}
		}
	})
}

// A malformed line of a megabyte leaves a reason of at most 512 bytes, and no unchecked id, so
// that a page of 10,000 such lines holds little memory and the quarantine little disk.
// A malformed line keeps its rev when the whole line gives it, though the 512 bytes it keeps
// (Raw) are cut in the middle of its document: a valid change of a lower rev must not clear it
// (cloud-api.md).
func TestMalformedLineKeepsItsRev(t *testing.T) {
	long := `{"collection":"products","doc":{"id":"P1","name":"Tea ` + strings.Repeat("x", 700) + `","barcodes":["not a code"]},"id":"P1","op":"upsert","rev":10}`
	for name, c := range map[string]struct {
		line string
		rev  int64
	}{
		"long":         {long, 10},
		"short":        {`{"collection":"products","id":"P1","op":"upsert","rev":7}`, 7},
		"wrong type":   {`{"collection":"products","id":"P1","op":"upsert","rev":7,"doc":{"id":"P1","name":3}}`, 7},
		"rev a string": {`{"collection":"products","id":"P1","op":"upsert","rev":"7","doc":{"id":"P1","name":"Tea"}}`, 0},
		"rev negative": {`{"collection":"products","id":"P1","op":"upsert","rev":-3,"doc":{"id":"P1","name":"Tea"}}`, 0},
		"not JSON":     {`{"collection":"products","id":"P1","rev":7,`, 0},
	} {
		l := DecodeLine([]byte(c.line), Products, 1)
		if l.Malformed == nil {
			t.Errorf("%s: not malformed: %+v", name, l)
			continue
		}
		if l.Malformed.Rev != c.rev || l.Malformed.ID != "P1" {
			t.Errorf("%s: rev %d of item %q, want %d of P1", name, l.Malformed.Rev, l.Malformed.ID, c.rev)
		}
	}
	if l := DecodeLine([]byte(long), Products, 1); len(l.Malformed.Raw) != 512 {
		t.Errorf("kept %d bytes of the long line, want its first 512 (the test's premise)", len(l.Malformed.Raw))
	}
}

func TestMalformedLineReasonIsCut(t *testing.T) {
	big := strings.Repeat("E", 900_000)
	for name, line := range map[string]string{
		"currency": `{"collection":"prices","id":"P1","op":"upsert","rev":1,"doc":{"product_id":"P1","currency":"` + big + `","amount":1}}`,
		"op":       `{"collection":"prices","id":"P1","op":"` + big + `","rev":1}`,
		"mixed":    `{"collection":"prices","id":"` + big + `","end":{"cursor":"c","count":0,"more":false}}`,
	} {
		l := DecodeLine([]byte(line), Prices, 1)
		if l.Malformed == nil || len(l.Malformed.Reason) > 520 || len(l.Malformed.ID) > MaxIDBytes || len(l.Malformed.Raw) > 512 {
			t.Errorf("%s: malformed %v, reason of %d bytes, id of %d", name, l.Malformed != nil, len(l.Malformed.Reason), len(l.Malformed.ID))
		}
	}
}

// A change carries its line number, as a malformed line does: storage orders a page's changes
// and malformed lines by it (a change clears the quarantine of a line before it only).
func TestChangesCarryTheirLine(t *testing.T) {
	for _, tc := range []struct{ coll, line string }{
		{Products, fastPathSeeds[0]}, // the fast path's
		{Settings, `{"collection":"settings","id":"tax","op":"delete","rev":4}`}, // encoding/json's: a setting never takes the fast path
	} {
		l := DecodeLine([]byte(tc.line), tc.coll, 7)
		if l.Change == nil || l.Change.Line != 7 {
			t.Errorf("%s: got %+v (%+v), want a change at line 7", tc.line, l.Change, l.Malformed)
		}
	}
}

func TestFastPathTakesTheCloudsLines(t *testing.T) {
	for i, s := range fastPathSeeds[:1] {
		if _, ok := fastChange([]byte(s), Products); !ok {
			t.Errorf("seed %d not taken by the fast path", i)
		}
	}
	for _, tc := range []struct{ coll, line string }{{Prices, fastPathSeeds[10]}, {Stock, fastPathSeeds[13]}, {Media, fastPathSeeds[15]}, {Products, fastPathSeeds[5]}} {
		if _, ok := fastChange([]byte(tc.line), tc.coll); !ok {
			t.Errorf("%s line not taken by the fast path: %s", tc.coll, tc.line)
		}
	}
}

// A line with an end key is an end line only without a change's fields: its faults fail the
// page. A change line that also has an end key ("End" matches too) is a malformed change,
// quarantined like any other, and the page goes on.
func TestEndLinesAndChangesWithAnEndKey(t *testing.T) {
	for _, tc := range []struct {
		line string
		end  bool // a faulty end line, else a malformed change
	}{
		{`{"collection":"products","id":"P1","op":"delete","rev":1,"End":{}}`, false},
		{`{"collection":"products","id":"P1","op":"delete","rev":"1","end":{"cursor":"c","count":0,"more":false}}`, false},
		{`{"end":{"cursor":"c","count":0}}`, true},
		{`{"end":{"cursor":"c","count":0,"more":false},"rev":"x"}`, true},
	} {
		l := DecodeLine([]byte(tc.line), Products, 1)
		if l.Malformed == nil || l.Malformed.End != tc.end {
			t.Errorf("%s: got %+v, want malformed with End %v", tc.line, l.Malformed, tc.end)
		}
	}
	if l := DecodeLine([]byte(`{"end":{"cursor":"c","count":0,"more":true}}`), Products, 1); l.End == nil || !l.End.More || l.End.Remaining != 0 {
		t.Errorf("an end line without remaining: %+v", l)
	}
}

// A line that is not JSON names its item even when the cloud's encoder escaped the id (an
// accented letter as \u00e9, a quote): the quarantine names the item, and a re-snapshot counts
// it as mentioned rather than deleting it.
func TestSalvageIDTakesEscapes(t *testing.T) {
	for line, want := range map[string]string{
		`{"collection":"products","id":"caf\u00e9-1","op":"upsert","rev":3,"doc":{` + "\x01":      "café-1",
		`{"collection":"products","id":"say \"hi\"","op":"upsert","rev":3,"doc":{` + "\x01":       `say "hi"`,
		`{"collection":"products","id" : "a\/b","op":"upsert",`:                                   "a/b",
		`{"collection":"products","id":"P1","op":"upsert","rev":3,"doc":{` + "\x01":               "P1",
		`{"collection":"products","id":"\u0001","op":"upsert",`:                                   "", // a control character: no id
		`{"collection":"products","id":"` + strings.Repeat("x", MaxIDBytes+1) + `","op":"upsert"`: "",
		`{"collection":"products","id":"","op":"upsert"`:                                          "",
		`{"collection":"products","id":"a\x","doc":{"id":"NESTED"},`:                              "", // not the document's
	} {
		if got := salvageID([]byte(line)); got != want {
			t.Errorf("%.60q: id %q, want %q", line, got, want)
		}
	}
}

// A line that is valid JSON with a field of the wrong type (a rev sent as a string, as a cloud
// written in JavaScript may) names the item of its top-level id, not of the first "id" in its
// text: with the keys in sorted order the document's comes first, and it may be another item's,
// which a re-snapshot would then keep while deleting this one.
func TestWrongTypedLineNamesItsTopLevelID(t *testing.T) {
	for line, want := range map[string]string{
		`{"collection":"products","doc":{"attributes":{"id":"X"},"id":"X","name":"Tea"},"id":"Y","op":"upsert","rev":"7"}`: "Y",
		`{"collection":"products","id":"Y","op":"upsert","rev":"7","doc":{"id":"X"}}`:                                      "Y",
		`{"collection":"products","doc":{"id":"X"},"id":7,"op":"upsert","rev":7}`:                                          "",
		`{"collection":"products","doc":{"id":"X"},"id":"Y","ID":"Z","op":"upsert","rev":"7"}`:                             "",
	} {
		l := DecodeLine([]byte(line), Products, 1)
		if l.Malformed == nil || l.Malformed.ID != want {
			t.Errorf("%s: %+v; want malformed with id %q", line, l.Malformed, want)
			continue
		}
		if !strings.Contains(l.Malformed.Reason, "wrong type") {
			t.Errorf("%s: reason %q, want one naming a field of the wrong type", line, l.Malformed.Reason)
		}
	}
	// Valid JSON that is not an object is said to be so.
	for _, line := range []string{`["id","X"]`, `"X"`, `7`} {
		if l := DecodeLine([]byte(line), Products, 1); l.Malformed == nil || l.Malformed.ID != "" || !strings.HasPrefix(l.Malformed.Reason, "not a JSON object") {
			t.Errorf("%s: %+v; want malformed, naming no item, as not a JSON object", line, l.Malformed)
		}
	}
}

// A malformed line with two "id" keys (encoding/json keeps the last, in any case) names no item
// for sure: its id is left empty, so that a re-snapshot deletes nothing rather than the item the
// line may be. An "id" inside the document does not count: keys in sorted order put "doc" first.
func TestMalformedLineWithTwoIDsNamesNone(t *testing.T) {
	for line, want := range map[string]string{
		`{"collection":"prices","id":"P04","op":"delete","rev":0,"ID":"P01"}`:                                               "",
		`{"collection":"prices","id":"P04","op":"delete","rev":0,"id":"P01"}`:                                               "",
		`{"collection":"prices","id":"P04","op":"delete","rev":0}`:                                                          "P04",
		`{"collection":"products","doc":{"attributes":{"id":"L77"},"id":"P01","name":""},"id":"P01","op":"upsert","rev":3}`: "P01",
	} {
		d := NewDecoder(strings.NewReader(line+"\n"+`{"end":{"cursor":"c","count":1,"more":false}}`+"\n"), Prices)
		l, err := d.Next()
		if err != nil || l.Malformed == nil || l.Malformed.ID != want {
			t.Errorf("%s: %+v, %v; want malformed with id %q", line, l.Malformed, err, want)
		}
	}
}

// An end line whose key is in another case, or given twice, is a faulty end line, which fails its
// page with the reason (not a change line, which would leave the page "cut short"); a line whose
// rev is given twice, in any case, has no rev that can be read.
func TestKeysOfEndLinesAndRevs(t *testing.T) {
	for _, line := range []string{`{"End":{"cursor":"c","count":1,"more":true}}`, `{"end":{"cursor":"c","count":1,"more":true},"end":{"cursor":"d","count":1,"more":true}}`} {
		l := DecodeLine([]byte(line), Products, 1)
		if l.Malformed == nil || !l.Malformed.End || !strings.Contains(l.Malformed.Reason, "end line: key") {
			t.Errorf("%s: %+v; want a faulty end line", line, l.Malformed)
		}
	}
	for _, line := range []string{`{"collection":"products","id":"P1","op":"delete","rev":1,"Rev":100}`, `{"collection":"products","id":"P1","op":"delete","rev":100,"rev":1}`,
		`{"collection":"products","id":"P1","Op":"delete","rev":1,"rev":9}`} { // another key's fault first
		l := DecodeLine([]byte(line), Products, 1)
		if l.Malformed == nil || l.Malformed.Rev != 0 || l.Malformed.ID != "P1" {
			t.Errorf("%s: %+v; want malformed, P1's, with no rev", line, l.Malformed)
		}
	}
}
