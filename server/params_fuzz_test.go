package server

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// FuzzQueryParams feeds arbitrary query strings and Last-Event-ID headers, as any device may
// send them, to the parameter readers: never a panic, every refusal a bad-parameter problem,
// and whatever is accepted within its documented range.
func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{"", "limit=10&since=5", "limit=0", "limit=1001", "since=-1", "epoch=0123456789abcdef",
		"collections=products,prices,products", "collections=", "q=tea&cursor=20", "q=%20&cursor=x", "types=order.created,order.updated",
		"after=12", "after=-3", "types=", "since=%2B5&limit=%2B5&after=%2B1", "since=007", "q=" + string(make([]byte, 300)),
		"collections=prices&collections=stock", "since=1&since=2", "q=%zz", "limit=1;since=2"} {
		f.Add(s, "")
	}
	f.Add("after=1", "7")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, raw, lastEventID string) {
		bad := func(what string, err error) {
			var ae *apiError
			if !errors.As(err, &ae) || ae.typ != probBadParameter {
				t.Fatalf("%s: %v is not a bad-parameter problem", what, err)
			}
		}
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: raw}}
		q, err := query(r, "limit", "since", "epoch", "collections", "q", "cursor", "types", "after")
		if err != nil {
			bad("query", err)
			return
		}
		if n, err := limitParam(q); err != nil {
			bad("limit", err)
		} else if n < 1 || n > maxLimit {
			t.Fatalf("limit %d accepted", n)
		}
		if n, err := sinceParam(q); err != nil {
			bad("since", err)
		} else if n < 0 {
			t.Fatalf("since %d accepted", n)
		} else if v, ok := q["since"]; ok && strings.TrimLeft(v[0], "0") != strings.TrimLeft(strconv.FormatInt(n, 10), "0") {
			t.Fatalf("since %q accepted as %d: only digits make a number", v[0], n)
		}
		if _, err := epochParam(q); err != nil {
			bad("epoch", err)
		}
		if cs, err := collectionsParam(q); err != nil {
			bad("collections", err)
		} else if len(cs) == 0 {
			t.Fatal("no collection accepted")
		}
		if _, n, err := searchParams(q); err != nil {
			bad("search", err)
		} else if n < 0 || n >= maxSearchSkip {
			t.Fatalf("cursor %d accepted", n)
		}
		if _, err := eventTypes(q.Get("types")); err != nil {
			bad("types", err)
		}
		if lastEventID != "" {
			r.Header.Set("Last-Event-ID", lastEventID)
		}
		if n, given, err := eventCursor(r, q); err != nil {
			bad("cursor", err)
		} else if n < 0 || given != (lastEventID != "" || q.Get("after") != "") {
			t.Fatalf("event id %d (given %v) accepted", n, given)
		}
	})
}
