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

// Reference is the ratios measured on a known machine, and how.
type Reference struct {
	Measured string             `json:"measured"` // when, on what machine, under what load
	Command  string             `json:"command"`  // how to measure them again
	Ratios   map[string]float64 `json:"ratios"`   // storeedge / baseline, higher is better
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
}

// NewFigure takes the medians of each side's rounds, and of the rounds' ratios: the two sides
// of a round ran next to each other, under the same load from the rest of the machine, so
// their ratio is steadier than the ratio of the two medians.
func NewFigure(name, unit string, daemon, baseline []float64) Figure {
	ratios := make([]float64, min(len(daemon), len(baseline)))
	for i := range ratios {
		ratios[i] = daemon[i] / baseline[i]
	}
	return Figure{Name: name, Unit: unit, Daemon: harness.Median(slices.Clone(daemon)), Baseline: harness.Median(slices.Clone(baseline)), Ratio: harness.Median(ratios)}
}

// Check tells whether the figure's ratio is within MaxDrop of its reference ("" when it is).
func (f Figure) Check(ref Reference) string {
	want, ok := ref.Ratios[f.Name]
	switch {
	case !ok:
		return fmt.Sprintf("%s: no reference ratio in %s", f.Name, ReferenceFile)
	case f.Ratio < want*(1-MaxDrop):
		return fmt.Sprintf("%s: ratio %.3f is %.0f %% below its reference %.3f (more than %.0f %%): daemon %.0f %s, baseline %.0f %s",
			f.Name, f.Ratio, 100*(1-f.Ratio/want), want, 100*MaxDrop, f.Daemon, f.Unit, f.Baseline, f.Unit)
	}
	return ""
}
