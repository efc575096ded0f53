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
		if got := f.check(ref, false) != ""; got != tc.fails {
			t.Errorf("%v / %v: ratio %.3f, failed %v, want %v", tc.daemon, tc.baseline, f.Ratio, got, tc.fails)
		}
	}
	if NewFigure("push", "rounds/s", []float64{1}, []float64{1}).check(ref, false) == "" {
		t.Error("a figure without a reference passed")
	}
	// A round in which a side measured nothing has no ratio: 0/0 is NaN, which compares false
	// with any floor, and x/0 is infinite.
	for _, tc := range [][2][]float64{
		{{0, 0, 0}, {0, 0, 0}},
		{{0, 0, 100, 0}, {0, 0, 100, 100}},
		{{80, 80, 80}, {100, 0, 100}},
		{{80, 80}, {100, 100, 100}},
	} {
		if msg := NewFigure("lookup", "req/s", tc[0], tc[1]).check(ref, false); msg == "" {
			t.Errorf("%v / %v: passed with a round that measured nothing", tc[0], tc[1])
		}
	}
}

// The test built with -race is held to the references measured with -race, and the one built
// without to those measured without: -race slows the test's own side, so the ratios differ.
func TestReferencePerBuild(t *testing.T) {
	ref := Reference{Ratios: map[string]float64{"push": 0.20}, RaceRatios: map[string]float64{"push": 0.30}}
	f := NewFigure("push", "rounds/s", []float64{20}, []float64{100}) // 0.20: 33 % below 0.30
	if msg := f.check(ref, false); msg != "" {
		t.Errorf("without -race: %s", msg)
	}
	if f.check(ref, true) == "" {
		t.Error("with -race, a ratio 33 % below the -race reference passed")
	}
	file, err := ReadReference(ReferenceFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sync", "lookup", "push"} {
		if file.Ratios[name] <= 0 || file.RaceRatios[name] <= 0 {
			t.Errorf("%s: %s lacks a reference for a build: %v, %v", name, ReferenceFile, file.Ratios[name], file.RaceRatios[name])
		}
	}
}
