package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/cloud/cloudsim"
)

// The daemon's heartbeat as the cloud receives it (cloud-api.md, "Heartbeat"): sent at start,
// naming the server as its status does, with every collection and a WAN state of the documented
// set.
func TestHeartbeatReachesTheCloud(t *testing.T) {
	cloud := startCloud(t, "-products", "20")
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url})
	var hb cloudsim.HeartbeatRecord
	waitFor(t, s, "the first heartbeat", 30*time.Second, func() bool {
		resp, err := http.Get(cloud.url + "/_sim/heartbeat")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&hb) == nil
	})
	var st struct {
		ServerID  string    `json:"server_id"`
		Version   string    `json:"version"`
		StartedAt time.Time `json:"started_at"`
	}
	s.get(t, "/api/v1/status", &st)
	got := hb.Heartbeat
	if got.ServerID == "" || got.ServerID != st.ServerID || got.Version != st.Version {
		t.Errorf("heartbeat names server %q version %q; status says %q version %q", got.ServerID, got.Version, st.ServerID, st.Version)
	}
	if at, err := time.Parse(time.RFC3339, got.StartedAt); err != nil || !at.Equal(st.StartedAt.Truncate(time.Second)) {
		t.Errorf("heartbeat started_at %q, status %v (%v)", got.StartedAt, st.StartedAt, err)
	}
	if !slices.Contains([]string{"never", "ok", "unreachable", "proxy_error", "unauthorized", "cloud_error"}, got.WAN) {
		t.Errorf("heartbeat wan %q: not one of cloud-api.md's states", got.WAN)
	}
	for _, c := range cloudapi.Collections {
		if _, ok := got.Collections[c]; !ok {
			t.Errorf("heartbeat without collection %s: %+v", c, got.Collections)
		}
	}
	s.stop(t)
}
