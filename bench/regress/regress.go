// Package regress is the regression bench that CI runs (regress_test.go): three small
// benchmarks of a few seconds each, every one a ratio of storeedge to a baseline measured in
// the same run, the two sides interleaved and each a median of several rounds:
//
//	sync    the daemon's first sync of a small catalog vs the plain loader of bench/syncbench
//	lookup  product-by-id requests vs fixedserver answering the same size, same client
//	push    one command pushed to every paired device vs the same bytes to as many plain TCP
//	        peers and back
//
// A ratio more than MaxDrop below its reference in reference.json fails the test. The figures
// are ratios so that a slower or busier machine moves both sides; docs/PERFORMANCE.md has them.
package regress

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/storeedge/storeedge/bench/harness"
)

// MaxDrop is the largest drop of a ratio below its reference that is not a regression (30 %).
const MaxDrop = 0.30

// ReferenceFile is the reference ratios, checked in next to this file.
const ReferenceFile = "reference.json"

// Reference is the ratios measured on a known machine, and how: one set for the test built
// without -race, one for it built with -race (what CI runs), since -race slows the test's own
// side (the lookup client, the in-process devices) and so moves every ratio.
type Reference struct {
	Command      string             `json:"command"`       // how to measure them again
	Measured     string             `json:"measured"`      // when, on what machine, under what load: Ratios
	Ratios       map[string]float64 `json:"ratios"`        // storeedge / baseline without -race, higher is better
	RaceMeasured string             `json:"race_measured"` // the same of RaceRatios
	RaceRatios   map[string]float64 `json:"race_ratios"`   // the same, measured with -race
}

// ratios returns the set of the build the test runs in.
func (r *Reference) ratios(race bool) map[string]float64 {
	if race {
		if r.RaceRatios == nil {
			r.RaceRatios = map[string]float64{}
		}
		return r.RaceRatios
	}
	if r.Ratios == nil {
		r.Ratios = map[string]float64{}
	}
	return r.Ratios
}

// ReadReference reads the reference ratios.
func ReadReference(path string) (Reference, error) {
	var r Reference
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// WriteReference writes the reference ratios.
func WriteReference(path string, r Reference) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Figure is one benchmark's outcome: each side's median rate and their ratio.
type Figure struct {
	Name             string
	Unit             string
	Daemon, Baseline float64 // medians, in Unit
	Ratio            float64 // the median of each round's daemon / baseline
	Empty            int     // rounds in which a side measured nothing
}

// NewFigure takes the medians of each side's rounds, and of the rounds' ratios: the two sides
// of a round ran next to each other, under the same load from the rest of the machine, so
// their ratio is steadier than the ratio of the two medians.
func NewFigure(name, unit string, daemon, baseline []float64) Figure {
	n := min(len(daemon), len(baseline))
	ratios := make([]float64, 0, n)
	empty := 0
	for i := range n {
		if !(daemon[i] > 0 && baseline[i] > 0) {
			empty++ // no ratio: 0/0 is NaN, which no comparison fails, and x/0 is infinite
			continue
		}
		ratios = append(ratios, daemon[i]/baseline[i])
	}
	return Figure{Name: name, Unit: unit, Daemon: harness.Median(slices.Clone(daemon)), Baseline: harness.Median(slices.Clone(baseline)),
		Ratio: harness.Median(ratios), Empty: empty + max(len(daemon), len(baseline)) - n}
}

// Check tells whether the figure's ratio is within MaxDrop of its reference for the build the
// test runs in ("" when it is). A round in which a side measured nothing fails it.
func (f Figure) Check(ref Reference) string {
	return f.check(ref, raceBuild)
}

func (f Figure) check(ref Reference, race bool) string {
	want, ok := ref.ratios(race)[f.Name]
	build := "without -race"
	if race {
		build = "with -race"
	}
	switch {
	case !ok:
		return fmt.Sprintf("%s: no reference ratio %s in %s", f.Name, build, ReferenceFile)
	case f.Empty > 0:
		return fmt.Sprintf("%s: %d rounds measured nothing on a side: daemon %.0f %s, baseline %.0f %s (medians)", f.Name, f.Empty, f.Daemon, f.Unit, f.Baseline, f.Unit)
	case !(f.Ratio >= want*(1-MaxDrop)):
		return fmt.Sprintf("%s: ratio %.3f is %.0f %% below its reference %.3f (more than %.0f %%): daemon %.0f %s, baseline %.0f %s",
			f.Name, f.Ratio, 100*(1-f.Ratio/want), want, 100*MaxDrop, f.Daemon, f.Unit, f.Baseline, f.Unit)
	}
	return ""
}
