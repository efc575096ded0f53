package media

import (
	"testing"
	"time"
)

// The waits between attempts at a failed blob are those media.md gives: the n-th drawn between
// half and all of 5 s·2ⁿ⁻¹, capped at media.retry_max.
func TestRetryDelayAsDocumented(t *testing.T) {
	const retryMax = time.Hour
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 8: 640 * time.Second, 20: retryMax} {
		lo, hi := want, want/2
		for range 200 {
			d := retryDelay(n, retryMax)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < want/2 || hi > want || hi-lo < want/4 {
			t.Errorf("wait %d: drawn from %v to %v, want from %v to %v, spread out", n, lo, hi, want/2, want)
		}
	}
}
