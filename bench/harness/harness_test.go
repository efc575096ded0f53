package harness

import (
	"testing"
	"time"
)

func TestLogField(t *testing.T) {
	line := `time=2026-11-23T20:02:27.264Z level=INFO msg="feed: pages applied" collection=products pages=200 applied=1000000 quarantined=0 caught_up=true`
	for key, want := range map[string]string{"collection": "products", "caught_up": "true", "msg": "feed: pages applied", "missing": ""} {
		if got := LogField(line, key); got != want {
			t.Errorf("%s: got %q, want %q", key, got, want)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := ShellJoin([]string{"/bin/storeedge", "run", "--set", "shop.name=My shop", "it's"})
	want := `/bin/storeedge run --set 'shop.name=My shop' 'it'\''s'`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestLoopbackOnly(t *testing.T) {
	c := NewClient(time.Second, false)
	if _, err := c.Get("http://192.0.2.1:80/"); err == nil {
		t.Fatal("a request to a non-loopback address was sent")
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {0, 1}} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if Percentile(nil, 99) != 0 {
		t.Error("Percentile of nothing")
	}
}
