package cloudsim

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func TestSnapshotThenDeltas(t *testing.T) {
	cases := []struct {
		name   string
		limit  int
		stream bool
	}{
		{"default limit", 0, false},
		{"limit 7", 7, false},
		{"stream", 50, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{Seed: 3, Products: 1000})
			reps := map[string]replica{}
			cursors := map[string]string{}
			for _, coll := range cloudapi.Collections {
				reps[coll] = replica{}
				cur, st := h.sync(coll, "", tc.limit, tc.stream, reps[coll])
				if tc.stream && st.requests != 1 {
					t.Errorf("%s: streamed snapshot took %d requests", coll, st.requests)
				}
				if st.lastEnd.Remaining != 0 || st.lastEnd.More {
					t.Errorf("%s: caught-up end line %+v", coll, st.lastEnd)
				}
				for _, c := range st.changes {
					if c.Op != cloudapi.OpUpsert {
						t.Fatalf("%s: snapshot carries a %s", coll, c.Op)
					}
				}
				cursors[coll] = cur
				h.assertMatchesExport(coll, reps[coll])
			}
			if n := len(reps[cloudapi.Products]); n != 1000 {
				t.Fatalf("snapshot has %d products", n)
			}

			res := h.sim.Mutate(Mutation{PriceChanges: 5, StockChanges: 6, Deletes: 3, Adds: 6, Renames: 4})
			if got := len(res.Deleted[cloudapi.Products]); got != 3 {
				t.Fatalf("mutation deleted %d products", got)
			}
			if got := len(res.Upserted[cloudapi.Media]); got != 2 { // products 1001..1006 need M0000251, M0000252
				t.Errorf("mutation added %d media, want 2", got)
			}
			for _, coll := range cloudapi.Collections {
				cur, st := h.sync(coll, cursors[coll], tc.limit, tc.stream, reps[coll])
				want := idSet(res.Upserted[coll], res.Deleted[coll])
				got := map[string]bool{}
				for _, c := range st.changes {
					if got[c.ID] {
						t.Errorf("%s: %s sent twice", coll, c.ID)
					}
					got[c.ID] = true
					if isDel := slices.Contains(res.Deleted[coll], c.ID); isDel != (c.Op == cloudapi.OpDelete) {
						t.Errorf("%s: %s op %s", coll, c.ID, c.Op)
					}
				}
				if !mapsEqual(got, want) {
					t.Errorf("%s: deltas %v, mutation changed %v", coll, keys(got), keys(want))
				}
				h.assertMatchesExport(coll, reps[coll])

				// Caught up: the same cursor polls an empty page, and stays usable.
				status, _, body := h.call(http.MethodGet, feedPath(coll, cur, tc.limit, tc.stream), nil)
				if status != http.StatusOK {
					t.Fatalf("%s: poll: %d %s", coll, status, body)
				}
				var end struct{ End cloudapi.PageEnd }
				if err := json.Unmarshal(body, &end); err != nil || strings.Count(string(body), "\n") != 1 {
					t.Fatalf("%s: poll answered %q (%v)", coll, body, err)
				}
				if end.End.Count != 0 || end.End.More || end.End.Remaining != 0 || end.End.Cursor == "" {
					t.Errorf("%s: poll end %+v", coll, end.End)
				}
			}
		})
	}
}

func TestSupersededChangesAreSentOnce(t *testing.T) {
	h := newHarness(t, Options{Products: 20})
	rep := replica{}
	cur, _ := h.sync(cloudapi.Prices, "", 0, false, rep)
	// Twenty price changes over twenty products, five times: every product changes five times.
	for range 5 {
		h.sim.Mutate(Mutation{PriceChanges: 20})
	}
	_, st := h.sync(cloudapi.Prices, cur, 3, false, rep)
	if len(st.changes) != 20 {
		t.Errorf("got %d changes for 20 products changed 5 times each", len(st.changes))
	}
	h.assertMatchesExport(cloudapi.Prices, rep)
}

func TestMutationDuringSnapshotConverges(t *testing.T) {
	h := newHarness(t, Options{Seed: 11, Products: 400})
	for _, coll := range []string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock, cloudapi.Media} {
		t.Run(coll, func(t *testing.T) {
			h := h.with(t)
			rep := replica{}
			cursor := ""
			// Read the snapshot a few pages at a time, changing the catalog in between,
			// including items already sent and items not yet reached.
			for i := 0; ; i++ {
				status, _, body := h.call(http.MethodGet, feedPath(coll, cursor, 7, false), nil)
				if status != http.StatusOK {
					t.Fatalf("status %d: %s", status, body)
				}
				end := applyBody(t, coll, body, rep)
				cursor = end.Cursor
				if i%5 == 0 {
					h.sim.Mutate(Mutation{PriceChanges: 10, StockChanges: 10, Deletes: 4, Adds: 5, Renames: 10})
				}
				if !end.More {
					break
				}
			}
			// Catch up with what changed after the last page.
			h.sync(coll, cursor, 7, false, rep)
			h.assertMatchesExport(coll, rep)
		})
	}
}

// applyBody decodes a whole one-page response and applies it.
func applyBody(t *testing.T, coll string, body []byte, rep replica) cloudapi.PageEnd {
	t.Helper()
	dec := cloudapi.NewDecoder(strings.NewReader(string(body)), coll)
	n := 0
	for {
		line, err := dec.Next()
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		switch {
		case line.Malformed != nil:
			t.Fatalf("malformed line: %v", line.Malformed)
		case line.Change != nil:
			rep.apply(line.Change)
			n++
		case line.End != nil:
			if line.End.Count != n {
				t.Fatalf("end count %d, lines %d", line.End.Count, n)
			}
			return *line.End
		}
	}
}

func TestFeedRejectsBadRequests(t *testing.T) {
	h := newHarness(t, Options{Products: 10})
	_, _, body := h.call(http.MethodGet, feedPath(cloudapi.Prices, "", 0, false), nil)
	end := applyBody(t, cloudapi.Prices, body, replica{})
	other := h.sim.formatCursor(cProducts, cursor{rev: 1})
	future := h.sim.formatCursor(cPrices, cursor{rev: h.sim.Head() + 1})
	oldRun := strings.Replace(end.Cursor, h.sim.epoch, "0badcafe", 1)
	if h.sim.epoch == "0badcafe" {
		t.Skip("epoch collision")
	}

	cases := []struct {
		query  string
		status int
	}{
		{"/v1/feed/prices?limit=0", http.StatusBadRequest},
		{"/v1/feed/prices?limit=10001", http.StatusBadRequest},
		{"/v1/feed/prices?limit=-3", http.StatusBadRequest},
		{"/v1/feed/prices?limit=ten", http.StatusBadRequest},
		{"/v1/feed/prices?stream=maybe", http.StatusBadRequest},
		{"/v1/feed/prices?cursor=garbage", http.StatusGone},
		{"/v1/feed/prices?cursor=d1.x.y.z", http.StatusGone},
		{"/v1/feed/prices?cursor=" + other, http.StatusGone},
		{"/v1/feed/prices?cursor=" + future, http.StatusGone},
		{"/v1/feed/prices?cursor=" + oldRun, http.StatusGone},
		{"/v1/feed/orders", http.StatusNotFound},
		{"/v1/nowhere", http.StatusNotFound},
		{"/v1/feed/prices?limit=10000&stream=1&cursor=" + end.Cursor, http.StatusOK},
	}
	for _, tc := range cases {
		status, hdr, body := h.call(http.MethodGet, tc.query, nil)
		if status != tc.status {
			t.Errorf("GET %s: status %d, want %d (%s)", tc.query, status, tc.status, body)
			continue
		}
		if status == http.StatusOK {
			continue
		}
		assertProblem(t, tc.query, status, hdr, body)
	}
}

func assertProblem(t *testing.T, what string, status int, hdr http.Header, body []byte) {
	t.Helper()
	if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Errorf("%s: problem %s (%v)", what, body, err)
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t, Options{Products: 10})
	for _, key := range []string{"", "wrong", strings.ToUpper(testKey)} {
		for _, path := range []string{"/v1/config", "/v1/feed/products", "/v1/nowhere"} {
			resp := h.do(http.MethodGet, path, key, nil)
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s with key %q: status %d", path, key, resp.StatusCode)
				continue
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			assertProblem(t, path, http.StatusUnauthorized, resp.Header, body)
			if strings.Contains(string(body), testKey) {
				t.Errorf("401 body reveals the key")
			}
		}
	}
	if status, _, body := h.call(http.MethodGet, "/v1/config", nil); status != http.StatusOK {
		t.Errorf("with the key: %d %s", status, body)
	}
	// The control API needs no key.
	resp := h.do(http.MethodGet, "/_sim/stats", "", nil)
	readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("stats without key: %d", resp.StatusCode)
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestConcurrentReadersAndMutations reads feeds while another goroutine keeps changing the
// catalog and others export, then checks that the replicas converge.
func TestConcurrentReadersAndMutations(t *testing.T) {
	h := newHarness(t, Options{Seed: 21, Products: 2000})
	mutated := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(mutated)
		for range 200 {
			h.sim.Mutate(Mutation{PriceChanges: 20, StockChanges: 20, Deletes: 1, Adds: 2, Renames: 5})
			time.Sleep(200 * time.Microsecond) // a busy but not a runaway shop
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if resp, err := h.hc.Get(h.srv.URL + "/_sim/export/stock"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	})
	reps := map[string]replica{}
	cursors := map[string]string{}
	for _, coll := range cloudapi.Collections {
		reps[coll] = replica{}
		cursors[coll], _ = h.sync(coll, "", 300, true, reps[coll])
	}
	for running := true; running; {
		select {
		case <-mutated:
			running = false
		default:
		}
		for _, coll := range cloudapi.Collections {
			cursors[coll], _ = h.sync(coll, cursors[coll], 50, false, reps[coll])
		}
	}
	close(stop)
	wg.Wait()
	for _, coll := range cloudapi.Collections {
		h.sync(coll, cursors[coll], 0, true, reps[coll])
		h.assertMatchesExport(coll, reps[coll])
	}
}
