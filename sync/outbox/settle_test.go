package outbox

import (
	"encoding/json"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// FuzzSettle feeds arbitrary upload answers (cloud-api.md: accepted, duplicate, rejected) about a
// batch of three keys: whatever the cloud says, only keys of the batch are settled, each at most
// once, delivered or set aside but not both, with a reason of at most maxReasonBytes and valid
// UTF-8; every key named outside the batch, or named again, counts as stray.
func FuzzSettle(f *testing.F) {
	for _, s := range []string{
		`{"accepted":["k1","k2"],"duplicate":["k3"],"rejected":[]}`,
		`{"accepted":["k1"],"duplicate":[],"rejected":[{"key":"k2","reason":"unknown product"}]}`,
		`{"accepted":["k1","k1","other"],"duplicate":["k1"],"rejected":[{"key":"k1","reason":"late"}]}`,
		`{"accepted":[],"duplicate":[],"rejected":[{"key":"k3","reason":"\xff\xfe"}]}`,
		`{"accepted":null,"duplicate":null,"rejected":null}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	keys := []string{"k1", "k2", "k3"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp cloudapi.UploadResponse
		if json.Unmarshal(data, &resp) != nil {
			return // the client refuses the answer before settle
		}
		res, rejected, stray := settle(keys, resp)
		seen := map[string]bool{}
		for _, k := range res.Delivered {
			if !slices.Contains(keys, k) || seen[k] {
				t.Fatalf("delivered %q: not in the batch, or twice (%v)", k, res.Delivered)
			}
			seen[k] = true
		}
		for k, reason := range res.Rejected {
			if !slices.Contains(keys, k) || seen[k] {
				t.Fatalf("set aside %q: not in the batch, or delivered too", k)
			}
			if len(reason) > maxReasonBytes+len("…") || !utf8.ValidString(reason) {
				t.Fatalf("reason of %d bytes, valid UTF-8 %v", len(reason), utf8.ValidString(reason))
			}
			seen[k] = true
		}
		if len(rejected) != len(res.Rejected) {
			t.Fatalf("%d keys set aside, %d listed in order", len(res.Rejected), len(rejected))
		}
		named := len(resp.Accepted) + len(resp.Duplicate) + len(resp.Rejected)
		if stray != named-len(seen) {
			t.Fatalf("%d keys named, %d settled, %d stray", named, len(seen), stray)
		}
	})
}

// The entries the cloud refused are listed in the order its answer gives them (the warnings
// follow it), whatever the order of the batch.
func TestSettleKeepsTheAnswersOrder(t *testing.T) {
	resp := cloudapi.UploadResponse{Rejected: []cloudapi.Rejection{{Key: "k3", Reason: "c"}, {Key: "k1", Reason: "a"}, {Key: "k2", Reason: "b"}}}
	_, rejected, stray := settle([]string{"k1", "k2", "k3"}, resp)
	if !slices.Equal(rejected, []string{"k3", "k1", "k2"}) || stray != 0 {
		t.Fatalf("set aside %v (%d stray), want k3, k1, k2", rejected, stray)
	}
}
