package server

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/ops/support"
)

// supportStatusSample has every field of the support channel's status set.
var supportStatusSample = support.Status{State: support.LinkConnected, Queue: "support-lyon-01", ReplyQueue: "support-replies",
	Allowed: []string{support.KindPing, support.KindDiagnostics}, Answered: 2, Refused: 1, LastError: "",
	Recent: []support.Handled{
		{At: testNow.Add(-time.Minute), MessageID: "m-3", Result: support.ReasonForged, Detail: "the signature does not verify"},
		{At: testNow.Add(-2 * time.Minute), MessageID: "m-2", ID: "req-2", Kind: support.KindDiagnostics, Result: support.ResultOK},
		{At: testNow.Add(-3 * time.Minute), MessageID: "m-1", ID: "req-1", Kind: support.KindPing, Result: support.ResultError, Detail: "the database is locked"},
	}}

// The status shows the support channel as the worker reports it, and null when it is off.
func TestStatusShowsSupport(t *testing.T) {
	off := newFixture(t)
	if body := off.get(t, "/api/v1/status").Body.String(); !strings.Contains(body, `"support":null`) {
		t.Errorf("support off: %s", body)
	}
	on := newFixture(t, func(o *Options) { o.Support = func() support.Status { return supportStatusSample } })
	st := decodeOK[statusJSON](t, on.get(t, "/api/v1/status"))
	if st.Support == nil || !reflect.DeepEqual(st.Support.Recent[0], supportStatusSample.Recent[0]) || st.Support.Refused != 1 ||
		st.Support.State != support.LinkConnected || len(st.Support.Recent) != 3 {
		t.Errorf("support %+v, want %+v", st.Support, supportStatusSample)
	}
}
