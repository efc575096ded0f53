// Package backoff is the one retry delay policy of storeedge: exponential, capped, with full
// jitter, reset on success, and never shorter than a server's Retry-After.
package backoff

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Backoff computes successive retry delays. The zero value is not usable; use New.
// It is not safe for concurrent use: each retry loop owns one.
type Backoff struct {
	min, max time.Duration
	attempt  int
	rand     func() float64 // in [0, 1)
}

// New returns a Backoff whose delays start near min and double up to max.
func New(min, max time.Duration) *Backoff {
	if min <= 0 {
		min = time.Second
	}
	if max < min {
		max = min
	}
	return &Backoff{min: min, max: max, rand: rand.Float64}
}

// Next returns the delay before the next attempt and counts the attempt. The delay is drawn
// uniformly from [d/2, d] where d = min·2^attempts, capped at max, so many shops that lost the WAN
// together do not come back in step. A positive retryAfter (what the server asked for) is a floor.
func (b *Backoff) Next(retryAfter time.Duration) time.Duration {
	d := b.min
	for i := 0; i < b.attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.attempt++
	d = d/2 + time.Duration(b.rand()*float64(d/2))
	return max(d, retryAfter)
}

// Attempts is the number of delays handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts again from min, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits for d or until ctx ends, and returns ctx.Err() in the latter case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ParseRetryAfter reads a Retry-After header value (delay-seconds or an HTTP date) relative to
// now. It returns 0 when the value is absent or unreadable, and caps the answer at one hour so a
// broken server cannot park the shop for days.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		d = time.Duration(min(secs, 3600)) * time.Second
	} else if isDigits(v) {
		return time.Hour // delay-seconds too large for a number: longer than an hour
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), time.Hour)
}

// isDigits tells whether s is all decimal digits.
func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
