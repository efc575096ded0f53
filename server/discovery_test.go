package server

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/discovery"
)

// discoveryBoth puts a real UDP discovery server behind the Discovery interface.
type discoveryBoth struct{ udp *discovery.Server }

func (d discoveryBoth) Status() discovery.Status {
	st := d.udp.Status()
	return discovery.Status{UDP: &st}
}
func (d discoveryBoth) Seen() []discovery.SeenDevice { return d.udp.Seen() }

// A device that says hello on the LAN shows in admin's seen list and in the status counters.
func TestSeenDevicesAndDiscoveryStatus(t *testing.T) {
	udp := startDiscovery(t)
	f := newFixture(t, func(o *Options) { o.Discovery = discoveryBoth{udp} })

	empty := decodeOK[struct {
		Items []discovery.SeenDevice `json:"items"`
	}](t, f.get(t, "/api/v1/admin/discovery/seen"))
	if empty.Items == nil || len(empty.Items) != 0 {
		t.Fatalf("before any hello: %+v", empty.Items)
	}

	if err := discovery.SayHello(discovery.Hello{DeviceID: "kiosk-3", Kind: "kiosk", PushPort: 18081}, udp.Addr().AddrPort()); err != nil {
		t.Fatal(err)
	}
	var seen []discovery.SeenDevice
	for deadline := time.Now().Add(3 * time.Second); len(seen) == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		seen = decodeOK[struct {
			Items []discovery.SeenDevice `json:"items"`
		}](t, f.get(t, "/api/v1/admin/discovery/seen")).Items
	}
	if len(seen) != 1 || seen[0].DeviceID != "kiosk-3" || seen[0].PushPort != 18081 || seen[0].Addr != "127.0.0.1" || seen[0].PairedAs != "" {
		t.Fatalf("seen %+v", seen)
	}

	// Once it pairs (from the same address, with the same push port), the list says as what.
	creds, err := f.dm.Pair(context.Background(), devices.PairRequest{EnrollmentSecret: testEnrollment, Kind: "kiosk", PushPort: 18081}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	seen = decodeOK[struct {
		Items []discovery.SeenDevice `json:"items"`
	}](t, f.get(t, "/api/v1/admin/discovery/seen")).Items
	if len(seen) != 1 || seen[0].PairedAs != creds.DeviceID {
		t.Errorf("after pairing as %s: seen %+v", creds.DeviceID, seen)
	}
	raw := decodeOK[map[string]json.RawMessage](t, f.get(t, "/api/v1/status"))
	var st discovery.Status
	if err := json.Unmarshal(raw["discovery"], &st); err != nil {
		t.Fatal(err)
	}
	if st.UDP == nil || st.UDP.Hellos != 1 || st.UDP.SeenCount != 1 || st.MDNS != nil {
		t.Errorf("status discovery %s", raw["discovery"])
	}
}

func TestDiscoveryOffInStatus(t *testing.T) {
	f := newFixture(t)
	st := decodeOK[map[string]any](t, f.get(t, "/api/v1/status"))
	d, ok := st["discovery"].(map[string]any)
	if !ok || d["udp"] != nil || d["mdns"] != nil {
		t.Errorf("discovery off: %v", st["discovery"])
	}
	if items := decodeOK[map[string][]any](t, f.get(t, "/api/v1/admin/discovery/seen"))["items"]; items == nil || len(items) != 0 {
		t.Errorf("seen with discovery off: %v", items)
	}
}
