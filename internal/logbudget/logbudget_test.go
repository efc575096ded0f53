package logbudget

import (
	"slices"
	"testing"
	"time"
)

func TestBudgetCountsWhatItLeavesOut(t *testing.T) {
	b := &Budget{PerMinute: 3}
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var got []bool
	for i := range 5 {
		ok, dropped := b.Allow(t0.Add(time.Duration(i) * time.Second))
		if dropped != 0 {
			t.Fatalf("line %d: %d dropped reported within the first minute", i, dropped)
		}
		got = append(got, ok)
	}
	if want := []bool{true, true, true, false, false}; !slices.Equal(got, want) {
		t.Fatalf("first minute: %v, want %v", got, want)
	}
	// The first line of the next minute passes, and says two were left out; only once.
	if ok, dropped := b.Allow(t0.Add(time.Minute)); !ok || dropped != 2 {
		t.Fatalf("next minute: %v, %d dropped; want true, 2", ok, dropped)
	}
	if ok, dropped := b.Allow(t0.Add(time.Minute + time.Second)); !ok || dropped != 0 {
		t.Fatalf("second line of the next minute: %v, %d", ok, dropped)
	}
}
