package regress

import "testing"

// A ratio within 30 % of its reference passes, one further below fails, a missing reference
// fails, and a round's ratio is taken between the two sides of that round.
func TestFigureCheck(t *testing.T) {
	ref := Reference{Ratios: map[string]float64{"lookup": 0.80}}
	for _, tc := range []struct {
		daemon, baseline []float64
		fails            bool
	}{
		{[]float64{80, 70, 90}, []float64{100, 100, 100}, false},
		{[]float64{57, 56, 58}, []float64{100, 100, 100}, false}, // 0.57: 29 % below
		{[]float64{50, 55, 54}, []float64{100, 100, 100}, true},  // 0.54: 32 % below
		{[]float64{40, 160, 80}, []float64{50, 200, 100}, false}, // each round 0.80, whatever the machine's speed
	} {
		f := NewFigure("lookup", "req/s", tc.daemon, tc.baseline)
		if got := f.Check(ref) != ""; got != tc.fails {
			t.Errorf("%v / %v: ratio %.3f, failed %v, want %v", tc.daemon, tc.baseline, f.Ratio, got, tc.fails)
		}
	}
	if NewFigure("push", "rounds/s", []float64{1}, []float64{1}).Check(ref) == "" {
		t.Error("a figure without a reference passed")
	}
}
