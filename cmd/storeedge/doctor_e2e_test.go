package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestDoctorOnARunningShop runs storeedge doctor beside a running server: its ports are the
// service's own, the cloud accepts the store key, and the exit code says all is well.
func TestDoctorOnARunningShop(t *testing.T) {
	cloud := startCloud(t, "-products", "5")
	dir := t.TempDir()
	s := startShop(t, shopOptions{dataDir: dir, cloud: cloud.url})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	args := append([]string{"doctor", "--json"}, s.cmd.Args[2:]...) // the running shop's --set flags
	out, code := cli(t, args...)
	var report struct {
		Results []struct{ Group, Check, Status, Detail, Fix string }
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	ports := 0
	for _, r := range report.Results {
		if r.Status == "FAIL" {
			t.Errorf("FAIL %s %s: %s (%s)", r.Group, r.Check, r.Detail, r.Fix)
		}
		if r.Group == "lan" && strings.HasPrefix(r.Check, "tcp ") {
			ports++
			if !strings.Contains(r.Detail, "running storeedge service") {
				t.Errorf("%s: %s, want it recognised as the running service", r.Check, r.Detail)
			}
		}
	}
	if code != 0 || ports != 3 {
		t.Fatalf("doctor: exit %d, %d ports checked\n%s", code, ports, out)
	}
	s.stop(t)
	// The cloud gone, doctor says so and exits 1.
	cloud.stop()
	if out, code := cli(t, args...); code != 1 || !strings.Contains(out, `"FAIL"`) {
		t.Fatalf("doctor without a cloud: exit %d\n%s", code, out)
	}
}
