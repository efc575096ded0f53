package cloudsim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "test-store-key"

// harness is a sim behind a real HTTP server, with a client that carries the store key.
type harness struct {
	t   testing.TB
	sim *Sim
	srv *httptest.Server
	hc  *http.Client
}

func newHarness(t testing.TB, opts Options) *harness {
	t.Helper()
	if opts.StoreKey == "" {
		opts.StoreKey = testKey
	}
	sim := New(opts)
	srv := httptest.NewServer(sim.Handler())
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		hc.CloseIdleConnections()
		srv.Close()
	})
	return &harness{t: t, sim: sim, srv: srv, hc: hc}
}

// with returns a copy of h that reports to t, for subtests.
func (h *harness) with(t testing.TB) *harness {
	c := *h
	c.t = t
	return &c
}

// do sends a request; key "" sends no Authorization header.
func (h *harness) do(method, path, key string, body []byte) *http.Response {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// call sends a request with the store key and returns the status and the whole body.
func (h *harness) call(method, path string, body []byte) (int, http.Header, []byte) {
	h.t.Helper()
	resp := h.do(method, path, testKey, body)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// callJSON sends v as JSON (nil for no body) and decodes a 2xx answer into out.
func (h *harness) callJSON(method, path string, v, out any) int {
	h.t.Helper()
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			h.t.Fatal(err)
		}
	}
	status, _, b := h.call(method, path, body)
	if out != nil && status/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return status
}

func feedPath(coll, cursor string, limit int, stream bool) string {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if stream {
		q.Set("stream", "true")
	}
	return "/v1/feed/" + coll + "?" + q.Encode()
}

// held is what a replica holds of one item.
type held struct {
	rev     int64
	doc     string
	deleted bool
}

// replica is a client's copy of one collection, applying the contract's revision rule.
type replica map[string]held

func (r replica) apply(c *cloudapi.Change) {
	if h, ok := r[c.ID]; ok && c.Rev <= h.rev {
		return
	}
	if c.Op == cloudapi.OpDelete {
		r[c.ID] = held{rev: c.Rev, deleted: true}
		return
	}
	r[c.ID] = held{rev: c.Rev, doc: string(c.Doc)}
}

func (r replica) live() map[string]held {
	out := make(map[string]held)
	for id, h := range r {
		if !h.deleted {
			out[id] = h
		}
	}
	return out
}

// syncStats reports what a sync read.
type syncStats struct {
	requests  int
	pages     int
	changes   []*cloudapi.Change
	malformed []*cloudapi.MalformedError
	lastEnd   cloudapi.PageEnd
	failures  int // responses cut short or answered with an error
}

// sync reads coll from cursor until caught up, the way storeedge does: a page is applied only
// once its end line has arrived with a matching count, and a response that fails is asked for
// again from the last applied cursor. It returns the final cursor.
func (h *harness) sync(coll, cursor string, limit int, stream bool, rep replica) (string, syncStats) {
	h.t.Helper()
	var st syncStats
	for {
		st.requests++
		if st.requests > 100000 || st.failures > 1000 {
			h.t.Fatalf("sync %s: no progress after %d requests, %d failures", coll, st.requests, st.failures)
		}
		resp := h.do(http.MethodGet, feedPath(coll, cursor, limit, stream), testKey, nil)
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			st.failures++
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			h.t.Fatalf("feed Content-Type %q", ct)
		}
		dec := cloudapi.NewDecoder(resp.Body, coll)
		var pending []*cloudapi.Change
		var pendingBad []*cloudapi.MalformedError
		caughtUp, failed := false, false
		for {
			line, err := dec.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, cloudapi.ErrTruncated) && !errors.Is(err, io.ErrUnexpectedEOF) {
					h.t.Fatalf("feed %s: %v", coll, err)
				}
				failed = true
				break
			}
			switch {
			case line.Change != nil:
				pending = append(pending, line.Change)
			case line.Malformed != nil:
				pendingBad = append(pendingBad, line.Malformed)
			case line.End != nil:
				if got := len(pending) + len(pendingBad); got != line.End.Count {
					h.t.Fatalf("feed %s: page has %d lines, end line says %d", coll, got, line.End.Count)
				}
				for _, c := range pending {
					rep.apply(c)
				}
				st.changes = append(st.changes, pending...)
				st.malformed = append(st.malformed, pendingBad...)
				pending, pendingBad = nil, nil
				cursor, st.lastEnd = line.End.Cursor, *line.End
				st.pages++
				caughtUp = !line.End.More
			}
		}
		resp.Body.Close()
		if failed {
			st.failures++
			continue
		}
		if len(pending)+len(pendingBad) > 0 {
			h.t.Fatalf("feed %s: response ended after %d lines without an end line", coll, len(pending)+len(pendingBad))
		}
		if caughtUp {
			return cursor, st
		}
	}
}

// exportItem is one decoded line of /_sim/export.
type exportItem struct {
	ID         string          `json:"id"`
	Rev        int64           `json:"rev"`
	Doc        json.RawMessage `json:"doc"`
	Corrupted  bool            `json:"corrupted"`
	Corruption string          `json:"corruption"`
}

// export reads /_sim/export/coll, checking that ids come in order.
func (h *harness) export(coll string) []exportItem {
	h.t.Helper()
	status, _, body := h.call(http.MethodGet, "/_sim/export/"+coll, nil)
	if status != http.StatusOK {
		h.t.Fatalf("export %s: status %d: %s", coll, status, body)
	}
	var items []exportItem
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var it exportItem
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			h.t.Fatalf("export %s: %v in %s", coll, err, sc.Bytes())
		}
		if n := len(items); n > 0 && items[n-1].ID >= it.ID {
			h.t.Fatalf("export %s: %q after %q", coll, it.ID, items[n-1].ID)
		}
		items = append(items, it)
	}
	return items
}

// assertMatchesExport checks that the replica's live items are exactly the export.
func (h *harness) assertMatchesExport(coll string, rep replica) {
	h.t.Helper()
	live := rep.live()
	items := h.export(coll)
	if len(live) != len(items) {
		h.t.Errorf("%s: replica has %d live items, export %d", coll, len(live), len(items))
	}
	bad := 0
	for _, it := range items {
		got, ok := live[it.ID]
		switch {
		case !ok:
			h.t.Errorf("%s: replica lacks %s", coll, it.ID)
		case got.rev != it.Rev || got.doc != string(it.Doc):
			h.t.Errorf("%s: %s: replica rev %d doc %s, export rev %d doc %s", coll, it.ID, got.rev, got.doc, it.Rev, it.Doc)
		default:
			continue
		}
		if bad++; bad > 5 {
			h.t.FailNow()
		}
	}
}

func (h *harness) setFaults(f Faults) {
	h.t.Helper()
	if status := h.callJSON(http.MethodPost, "/_sim/faults", f, nil); status != http.StatusOK {
		h.t.Fatalf("set faults: status %d", status)
	}
}

func idSet(lists ...[]string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lists {
		for _, id := range l {
			m[id] = true
		}
	}
	return m
}

func readAll(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}
