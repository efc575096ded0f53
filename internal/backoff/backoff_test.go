package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNextGrowsWithJitterAndCap(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		b := New(time.Second, 8*time.Second)
		b.rand = func() float64 { return r }
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
		for i, full := range want {
			got := b.Next(0)
			lo, hi := full/2, full
			if got < lo || got > hi {
				t.Fatalf("rand %v attempt %d: %v outside [%v, %v]", r, i, got, lo, hi)
			}
		}
		b.Reset()
		if got := b.Next(0); got > time.Second {
			t.Fatalf("after reset: %v, want at most 1s", got)
		}
	}
}

func TestRetryAfterIsAFloor(t *testing.T) {
	b := New(time.Second, time.Minute)
	if got := b.Next(30 * time.Second); got != 30*time.Second {
		t.Fatalf("got %v, want the server's 30s", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"5", 5 * time.Second}, {" 120 ", 2 * time.Minute}, {"-3", 0}, {"soon", 0},
		{"999999", time.Hour}, {"99999999999999999999", time.Hour}, {"Mon, 23 Nov 2026 10:00:42 GMT", 42 * time.Second}, {"Mon, 23 Nov 2026 09:00:00 GMT", 0},
	} {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSleepStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context: %v", err)
	}
}

// FuzzParseRetryAfter feeds arbitrary Retry-After values, as the cloud, a webhook or a log
// intake may send them: the wait is never negative and never over the hour it is capped at.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"", "0", "-5", "120", "99999999999999999999", " 30 ", "Fri, 04 Dec 2026 12:01:00 GMT",
		"Thu, 03 Dec 2026 12:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "soon"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if d := ParseRetryAfter(v, now); d < 0 || d > time.Hour {
			t.Fatalf("ParseRetryAfter(%q) = %v", v, d)
		}
	})
}
