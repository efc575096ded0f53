package cloudsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func event(key, typ, data string) cloudapi.Event {
	ev := cloudapi.Event{Key: key, Type: typ, At: "2026-11-23T10:00:00Z"}
	if data != "" {
		ev.Data = json.RawMessage(data)
	}
	return ev
}

func upload(t *testing.T, h *harness, events ...cloudapi.Event) (int, cloudapi.UploadResponse) {
	t.Helper()
	var res cloudapi.UploadResponse
	status := h.callJSON(http.MethodPost, "/v1/events", cloudapi.UploadRequest{Events: events}, &res)
	return status, res
}

func TestUploadIsIdempotent(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	status, res := upload(t, h,
		event("order:1:created", "order.created", `{"total":1299}`),
		event("order:2:created", "order.created", `{"total":5}`),
		event("order:1:created", "order.created", `{"total":1299}`), // repeated within the batch
		event("", "order.created", `{}`),
		event(strings.Repeat("k", MaxEventKey+1), "order.created", `{}`),
		event("order:3:created", "", `{}`),
		event("order:4:created", "order.created", `[1,2]`),
		event("order:5:created", "order.created", ``),
		event("order:6:created", "order.created", `"text"`),
	)
	if status != http.StatusOK {
		t.Fatalf("upload: %d", status)
	}
	if want := []string{"order:1:created", "order:2:created"}; !reflect.DeepEqual(res.Accepted, want) {
		t.Errorf("accepted %v", res.Accepted)
	}
	if want := []string{"order:1:created"}; !reflect.DeepEqual(res.Duplicate, want) {
		t.Errorf("duplicate %v", res.Duplicate)
	}
	if len(res.Rejected) != 6 {
		t.Fatalf("rejected %+v", res.Rejected)
	}
	for _, r := range res.Rejected {
		if r.Reason == "" {
			t.Errorf("rejection of %q without a reason", r.Key)
		}
	}

	// A retried batch is answered with duplicates; a rejected key may come back valid.
	status, res = upload(t, h,
		event("order:2:created", "order.created", `{"total":5}`),
		event("order:3:created", "order.created", `{}`),
	)
	if status != http.StatusOK || !reflect.DeepEqual(res.Accepted, []string{"order:3:created"}) ||
		!reflect.DeepEqual(res.Duplicate, []string{"order:2:created"}) || len(res.Rejected) != 0 {
		t.Errorf("second upload: %d %+v", status, res)
	}
	// Empty lists are [] on the wire, not null.
	_, _, body := h.call(http.MethodPost, "/v1/events", []byte(`{"events":[]}`))
	if string(body) != `{"accepted":[],"duplicate":[],"rejected":[]}`+"\n" {
		t.Errorf("empty batch answered %s", body)
	}

	var stored []cloudapi.Event
	h.callJSON(http.MethodGet, "/_sim/events", nil, &stored)
	var keys []string
	for _, ev := range stored {
		keys = append(keys, ev.Key)
	}
	if want := []string{"order:1:created", "order:2:created", "order:3:created"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("stored %v", keys)
	}
	if string(stored[0].Data) != `{"total":1299}` {
		t.Errorf("stored data %s", stored[0].Data)
	}
}

func TestUploadLimits(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	big := make([]cloudapi.Event, 1)
	big[0] = event("big", "blob", fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", MaxUploadBytes)))
	body, _ := json.Marshal(cloudapi.UploadRequest{Events: big})
	status, hdr, b := h.call(http.MethodPost, "/v1/events", body)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("body of %d bytes: %d", len(body), status)
	}
	assertProblem(t, "large body", status, hdr, b)

	many := make([]cloudapi.Event, MaxUploadEvents+1)
	for i := range many {
		many[i] = event(fmt.Sprint("k", i), "t", `{}`)
	}
	if status, _ := upload(t, h, many...); status != http.StatusRequestEntityTooLarge {
		t.Errorf("%d events: %d", len(many), status)
	}
	if status, _ := upload(t, h, many[:MaxUploadEvents]...); status != http.StatusOK {
		t.Errorf("%d events: %d", MaxUploadEvents, status)
	}
	if status, _, _ := h.call(http.MethodPost, "/v1/events", []byte(`{"events":`)); status != http.StatusBadRequest {
		t.Errorf("broken JSON: %d", status)
	}

	h.setFaults(Faults{UploadErrorRate: 1})
	status, hdr, b = h.call(http.MethodPost, "/v1/events", []byte(`{"events":[{"key":"x","type":"t","data":{}}]}`))
	if status != http.StatusServiceUnavailable {
		t.Errorf("upload error fault: %d", status)
	}
	assertProblem(t, "upload error", status, hdr, b)
	if n := len(h.sim.Events()); n != MaxUploadEvents {
		t.Errorf("%d events stored, want %d", n, MaxUploadEvents)
	}
	if st := h.sim.Stats(); st.Faults.UploadError != 1 || st.Events != MaxUploadEvents {
		t.Errorf("stats %+v", st)
	}
}
