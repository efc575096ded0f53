package server

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/storeedge/storeedge/internal/clip"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Limits of the query parameters, as documented in docs/openapi.yaml.
const (
	defaultLimit  = 100
	maxLimit      = 1000
	maxQueryRunes = 200
	maxSearchSkip = 10000 // deepest search result reachable by paging
	maxSettings   = 1000
)

// badParamf refuses a query parameter that breaks its rules; its text names the parameter, the
// value and what is allowed.
func badParamf(format string, args ...any) error {
	return refuse(probBadParameter, fmt.Sprintf(format, args...))
}

// query reads the request's query parameters, names being those the route reads. A query that
// is not well formed (a bad %-escape, a ";") and one of names given more than once are refused:
// read as r.URL.Query() does, the first would be dropped and the second cut to its first value,
// answering another question than the one asked (collections=prices&collections=stock would be
// the prices only). Other parameters are ignored, repeated or not.
func query(r *http.Request, names ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badParamf("the query is not well formed (%s); escape it as a URL query (RFC 3986), parameters separated by &", clip.String(err.Error(), 200))
	}
	for _, name := range names {
		if v := q[name]; len(v) > 1 {
			return nil, badParamf("%s: given %d times; give it once (a list, such as collections, is one comma-separated value)", name, len(v))
		}
	}
	return q, nil
}

// wholeNumber reads a whole number written as decimal digits only, as the documents define the
// numbers of queries and paths: no sign, no space, at most 9223372036854775807.
func wholeNumber(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// limitParam reads limit: absent means the default, anything but a whole number in range is an
// error.
func limitParam(q url.Values) (int, error) {
	v, ok := q["limit"]
	if !ok {
		return defaultLimit, nil
	}
	n, ok := wholeNumber(v[0])
	if !ok || n < 1 || n > maxLimit {
		return 0, badParamf("limit: %q is not allowed; want a whole number from 1 to %d (default %d)", v[0], maxLimit, defaultLimit)
	}
	return int(n), nil
}

// sinceParam reads since: absent means 0 (everything), else a whole number ≥ 0.
func sinceParam(q url.Values) (int64, error) {
	v, ok := q["since"]
	if !ok {
		return 0, nil
	}
	n, ok := wholeNumber(v[0])
	if !ok {
		return 0, badParamf("since: %q is not allowed; want a whole number from 0 to %d: 0 for everything, then the next_since of the previous answer", v[0], int64(math.MaxInt64))
	}
	return n, nil
}

// epochParam reads epoch: absent means "" (not checked), else the 16 lower-case hexadecimal digits
// of an epoch a previous answer gave.
func epochParam(q url.Values) (string, error) {
	v, ok := q["epoch"]
	if !ok {
		return "", nil
	}
	if !storage.IsEpoch(v[0]) {
		return "", badParamf("epoch: %q is not allowed; want the epoch of a previous answer, 16 lower-case hexadecimal digits, or no epoch", v[0])
	}
	return v[0], nil
}

// collectionsParam reads collections, a comma-separated list of collection names; absent means
// every collection.
func collectionsParam(q url.Values) ([]string, error) {
	v, ok := q["collections"]
	if !ok {
		return cloudapi.Collections, nil
	}
	var out []string
	for name := range strings.SplitSeq(v[0], ",") {
		if !cloudapi.IsCollection(name) {
			return nil, badParamf("collections: unknown collection %q; want a comma-separated list of %s", name, strings.Join(cloudapi.Collections, ", "))
		}
		dup := false
		for _, seen := range out {
			dup = dup || seen == name
		}
		if !dup {
			out = append(out, name)
		}
	}
	return out, nil
}

// searchParams reads q and cursor. The cursor is opaque to devices; it is the offset of the next
// result.
func searchParams(q url.Values) (query string, offset int, err error) {
	// The limit holds for what was sent, spaces around it too; the words are what is searched.
	raw := q.Get("q")
	if n := utf8.RuneCountInString(raw); n > maxQueryRunes {
		return "", 0, badParamf("q: %d characters is too long; want 1 to %d", n, maxQueryRunes)
	}
	query = strings.TrimSpace(raw)
	if query == "" {
		return "", 0, badParamf("q: missing; want the text to search for, 1 to %d characters", maxQueryRunes)
	}
	if n := len(storage.SearchWords(query)); n > storage.MaxSearchWords {
		return "", 0, badParamf("q: %d words; every word must match, and a search takes at most %d", n, storage.MaxSearchWords)
	}
	if c, ok := q["cursor"]; ok && c[0] != "" {
		n, ok := wholeNumber(c[0])
		if !ok || n >= maxSearchSkip {
			return "", 0, badParamf("cursor: %q is not a cursor of this server; pass the next value of the previous answer unchanged (search pages reach the first %d results)", c[0], maxSearchSkip)
		}
		offset = int(n)
	}
	return query, offset, nil
}
