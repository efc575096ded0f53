package devices

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
)

// After the order follower has worked again, its next failure is retried after the shortest
// wait, not after the wait its earlier failures had grown to: new orders would otherwise reach
// the devices up to a minute late after any passing database error.
func TestFollowerWaitsShortAgainAfterProgress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return nil
	}
	calls := 0
	follow := func(ctx context.Context, progressed func()) error {
		calls++
		switch {
		case calls == 6: // the database answers again, then fails later
			progressed()
		case calls == 8:
			cancel()
			return ctx.Err()
		}
		return errors.New("database is locked")
	}
	followRetrying(ctx, backoff.New(time.Second, time.Minute), sleep, follow, func(error, time.Duration) {})
	if len(waits) != 7 {
		t.Fatalf("waits %v, want 7", waits)
	}
	if waits[4] < 8*time.Second {
		t.Fatalf("the fifth failure in a row waited %v; the waits should grow (%v)", waits[4], waits)
	}
	if waits[5] > time.Second || waits[6] > 2*time.Second {
		t.Fatalf("after the follower read the database again, failures waited %v and %v, want the shortest waits again (%v)", waits[5], waits[6], waits)
	}
}
