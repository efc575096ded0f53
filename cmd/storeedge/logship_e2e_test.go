package main

import (
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/logship/logshiptest"
	"github.com/storeedge/storeedge/tools/testenv"
)

const e2eLogsKey = "e2e-logs-key-0123456789"

// logShipSets turns log shipping on, to in, through proxy.
func logShipSets(in *logshiptest.Intake, proxy string, extra ...string) []string {
	return append([]string{
		"logs.ship.enabled=true", "logs.ship.url=" + in.URL, "logs.ship.api_key=" + e2eLogsKey,
		"logs.ship.batch_interval=1s", "wan.proxy=" + proxy, "wan.extra_ca_file=" + in.CAFile,
	}, extra...)
}

func hasMessage(prefix string) func([]logshiptest.Record) bool {
	return func(recs []logshiptest.Record) bool {
		for _, r := range recs {
			if strings.HasPrefix(r.Message, prefix) {
				return true
			}
		}
		return false
	}
}

// TestLogShippingThroughProxy runs the daemon with log shipping on: its records reach the
// intake through the HTTP CONNECT proxy.
func TestLogShippingThroughProxy(t *testing.T) {
	cloud := startCloud(t, "-products", "20")
	in := logshiptest.Start(t, e2eLogsKey)
	proxy := "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{})
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: logShipSets(in, proxy)})
	recs := in.Wait(t, "the daemon's start", time.Minute, hasMessage("storeedge: serving"))
	for _, r := range recs {
		if r.ServerID == "" || r.Version == "" || r.Seq == 0 {
			t.Fatalf("record without its origin: %+v", r)
		}
	}
	var st logStatus
	waitFor(t, s, "shipping in status", time.Minute, func() bool {
		s.get(t, "/api/v1/status", &st)
		return st.LogShipping != nil && st.LogShipping.Shipped > 0
	})
	if ls := st.LogShipping; ls.State != "ok" || !strings.Contains(ls.Route, "via") || ls.LastSuccess == nil {
		t.Errorf("logs_shipping in status: %+v", ls)
	}
	s.stop(t)

	off := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url})
	off.get(t, "/api/v1/status", &st)
	if st.LogShipping != nil {
		t.Errorf("shipping off, status shows %+v", st.LogShipping)
	}
	off.stop(t)
}

type logStatus struct {
	LogShipping *logship.Status `json:"logs_shipping"`
}
