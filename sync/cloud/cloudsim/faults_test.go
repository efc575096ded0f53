package cloudsim

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func TestFaultErrorsAndRateLimits(t *testing.T) {
	h := newHarness(t, Options{Products: 10})
	h.setFaults(Faults{ErrorRate: 1})
	seen := map[int]int{}
	for range 20 {
		status, hdr, body := h.call(http.MethodGet, "/v1/config", nil)
		if status != http.StatusInternalServerError && status != http.StatusServiceUnavailable {
			t.Fatalf("error fault: status %d", status)
		}
		assertProblem(t, "error fault", status, hdr, body)
		seen[status]++
	}
	if len(seen) != 2 {
		t.Errorf("error fault statuses %v, want both 500 and 503", seen)
	}

	h.setFaults(Faults{RateLimitRate: 1, RetryAfterSeconds: 7})
	status, hdr, body := h.call(http.MethodGet, "/v1/feed/products", nil)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") != "7" {
		t.Errorf("rate limit fault: status %d, Retry-After %q", status, hdr.Get("Retry-After"))
	}
	assertProblem(t, "rate limit", status, hdr, body)

	h.setFaults(Faults{LatencyMS: 40})
	start := time.Now()
	if status, _, _ := h.call(http.MethodGet, "/v1/config", nil); status != http.StatusOK {
		t.Errorf("latency fault: status %d", status)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("latency fault: answered in %v", d)
	}

	// Faults touch /v1 only.
	h.setFaults(Faults{ErrorRate: 1, RateLimitRate: 1})
	if status, _, _ := h.call(http.MethodGet, "/_sim/stats", nil); status != http.StatusOK {
		t.Errorf("control API hit by faults: %d", status)
	}
	st := h.sim.Stats()
	if st.Faults.Errors != 20 || st.Faults.RateLimits != 1 || st.Faults.Latency != 1 || st.Requests != 22 {
		t.Errorf("fault counts %+v, requests %d", st.Faults, st.Requests)
	}
}

// The 503s carry a Retry-After when asked, in seconds or as an HTTP date (cloud-api.md allows
// both); the 500s never do.
func TestFaultRetryAfter(t *testing.T) {
	h := newHarness(t, Options{Products: 10})
	h.setFaults(Faults{ErrorRate: 1, RetryAfter503: 30})
	for range 20 {
		status, hdr, _ := h.call(http.MethodGet, "/v1/config", nil)
		if want := map[int]string{500: "", 503: "30"}[status]; hdr.Get("Retry-After") != want {
			t.Errorf("error fault %d: Retry-After %q, want %q", status, hdr.Get("Retry-After"), want)
		}
	}
	h.setFaults(Faults{RateLimitRate: 1, RetryAfterSeconds: 30, RetryAfterDate: true})
	_, hdr, _ := h.call(http.MethodGet, "/v1/config", nil)
	if at, err := http.ParseTime(hdr.Get("Retry-After")); err != nil || time.Until(at) < 28*time.Second || time.Until(at) > 30*time.Second {
		t.Errorf("rate limit fault with an HTTP date: Retry-After %q (%v)", hdr.Get("Retry-After"), err)
	}
	h.setFaults(Faults{UploadErrorRate: 1, RetryAfter503: 30})
	status, hdr, _ := h.call(http.MethodPost, "/v1/events", []byte(`{"events":[]}`))
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "30" {
		t.Errorf("upload error fault: status %d, Retry-After %q", status, hdr.Get("Retry-After"))
	}
	h.setFaults(Faults{LostAnswerRate: 1, RetryAfter503: 30, RetryAfterDate: true})
	status, hdr, _ = h.call(http.MethodPost, "/v1/events", []byte(`{"events":[]}`))
	if _, err := http.ParseTime(hdr.Get("Retry-After")); status != http.StatusServiceUnavailable || err != nil {
		t.Errorf("lost answer fault: status %d, Retry-After %q", status, hdr.Get("Retry-After"))
	}
}

func TestFaultCutStream(t *testing.T) {
	h := newHarness(t, Options{Products: 300})
	h.setFaults(Faults{CutRate: 1})
	for _, stream := range []bool{false, true} {
		for range 10 {
			resp := h.do(http.MethodGet, feedPath(cloudapi.Products, "", 40, stream), testKey, nil)
			dec := cloudapi.NewDecoder(resp.Body, cloudapi.Products)
			var err error
			for err == nil {
				_, err = dec.Next()
			}
			resp.Body.Close()
			if err == io.EOF || !(errors.Is(err, cloudapi.ErrTruncated) || errors.Is(err, io.ErrUnexpectedEOF)) {
				t.Fatalf("stream=%v: a cut response ended with %v", stream, err)
			}
		}
	}
	if got := h.sim.Stats().Faults.Cuts; got != 20 {
		t.Errorf("%d cuts counted, want 20", got)
	}

	// With half the responses cut, a client that applies only whole pages still converges.
	h.setFaults(Faults{CutRate: 0.5})
	for _, stream := range []bool{false, true} {
		rep := replica{}
		cur, st := h.sync(cloudapi.Products, "", 25, stream, rep)
		failures := st.failures
		for range 5 {
			h.sim.Mutate(Mutation{PriceChanges: 30, Renames: 30, Deletes: 10, Adds: 10})
			cur, st = h.sync(cloudapi.Products, cur, 25, stream, rep)
			failures += st.failures
		}
		if failures == 0 {
			t.Errorf("stream=%v: no response was cut", stream)
		}
		h.assertMatchesExport(cloudapi.Products, rep)
	}
}

func TestFaultMalformedLines(t *testing.T) {
	h := newHarness(t, Options{Seed: 9, Products: 1000})
	h.setFaults(Faults{MalformedRate: 0.2})
	for _, coll := range cloudapi.Collections {
		exported := h.export(coll)
		corrupted := map[string]string{}
		for _, it := range exported {
			if it.Corrupted {
				corrupted[it.ID] = it.Corruption
			}
		}
		if coll != cloudapi.Settings && (len(corrupted) < len(exported)/10 || len(corrupted) > len(exported)*3/10) {
			t.Errorf("%s: %d of %d items corrupted at rate 0.2", coll, len(corrupted), len(exported))
		}
		var firstIDs []string
		for round := range 2 {
			rep := replica{}
			_, st := h.sync(coll, "", 100, false, rep)
			if len(st.malformed) != len(corrupted) {
				t.Errorf("%s: %d malformed lines, export says %d corrupted", coll, len(st.malformed), len(corrupted))
			}
			// Every malformed line whose id could be read is an item the export calls
			// corrupted, and every corrupted item whose line is still JSON is named.
			var ids []string
			named := map[string]bool{}
			for _, m := range st.malformed {
				if m.ID == "" {
					continue
				}
				ids = append(ids, m.ID)
				named[m.ID] = true
				if _, ok := corrupted[m.ID]; !ok {
					t.Errorf("%s: %s malformed (%s) but export says it is sound", coll, m.ID, m.Reason)
				}
			}
			for id, kind := range corrupted {
				if kind != corruptInvalidJSON.String() && !named[id] {
					t.Errorf("%s: %s corrupted (%s) but no malformed line names it", coll, id, kind)
				}
			}
			// Everything else arrived intact.
			for _, it := range exported {
				if got, ok := rep[it.ID]; ok == it.Corrupted || (ok && got.doc != string(it.Doc)) {
					t.Errorf("%s: %s held %v, corrupted %v", coll, it.ID, ok, it.Corrupted)
				}
			}
			// The same changes are corrupted every time they are sent.
			if round == 0 {
				firstIDs = ids
			} else if strings.Join(ids, ",") != strings.Join(firstIDs, ",") {
				t.Errorf("%s: a second read corrupted different items", coll)
			}
		}
	}
	if h.sim.Stats().Faults.Malformed == 0 {
		t.Errorf("no malformed lines counted")
	}
}

// TestEveryCorruptionIsDetected sets the malformed rate to 1 and checks that the contract's
// decoder refuses every line, whichever way it was corrupted.
func TestEveryCorruptionIsDetected(t *testing.T) {
	h := newHarness(t, Options{Seed: 4, Products: 400})
	h.setFaults(Faults{MalformedRate: 1})
	for ci, coll := range cloudapi.Collections {
		kinds := map[string]bool{}
		for _, it := range h.export(coll) {
			if !it.Corrupted {
				t.Fatalf("%s: %s not corrupted at rate 1", coll, it.ID)
			}
			kinds[it.Corruption] = true
		}
		if coll != cloudapi.Settings && len(kinds) != len(collCorruptions[ci]) {
			t.Errorf("%s: corruptions %v, want all %d kinds", coll, kinds, len(collCorruptions[ci]))
		}
		rep := replica{}
		_, st := h.sync(coll, "", 0, false, rep)
		if len(st.changes) != 0 {
			t.Errorf("%s: %d lines passed the decoder, first %+v", coll, len(st.changes), st.changes[0])
		}
	}
	// Deletes are sent intact.
	res := h.sim.Mutate(Mutation{Deletes: 3})
	rep := replica{}
	_, st := h.sync(cloudapi.Prices, h.sim.formatCursor(cPrices, cursor{rev: res.Head - 9}), 0, false, rep)
	if len(st.changes) != 3 {
		t.Errorf("%d delete lines decoded, want 3", len(st.changes))
	}
}
