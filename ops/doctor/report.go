package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Status is the outcome of one check.
type Status string

// The outcomes: PASS needs nothing; WARN works but deserves a look; FAIL breaks something.
const (
	Pass Status = "PASS"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is one check's line.
type Result struct {
	Group  string `json:"group"`  // config, data, lan, wan, clock
	Check  string `json:"check"`  // what was checked, e.g. "cloud api.example.com:443 tls"
	Status Status `json:"status"` // PASS, WARN or FAIL
	Detail string `json:"detail"` // what was found
	Fix    string `json:"fix,omitempty"`
}

// Report is every result, in the order the checks ran.
type Report struct {
	Version string   `json:"version"`
	Results []Result `json:"results"`
}

// Counts returns how many results have each status.
func (r Report) Counts() map[Status]int {
	n := map[Status]int{Pass: 0, Warn: 0, Fail: 0}
	for _, res := range r.Results {
		n[res.Status]++
	}
	return n
}

// Failed reports whether any check failed.
func (r Report) Failed() bool { return r.Counts()[Fail] > 0 }

// Find returns the first result whose check starts with prefix, for tests and tools.
func (r Report) Find(group, prefix string) (Result, bool) {
	for _, res := range r.Results {
		if res.Group == group && strings.HasPrefix(res.Check, prefix) {
			return res, true
		}
	}
	return Result{}, false
}

// WriteTable writes the report for people: one line per check, the fix under a line that did
// not pass, and a summary.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tGROUP\tCHECK\tDETAIL")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Status, res.Group, res.Check, oneLine(res.Detail))
		if res.Fix != "" {
			fmt.Fprintf(tw, "\t\t\t-> %s\n", oneLine(res.Fix))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	n := r.Counts()
	_, err := fmt.Fprintf(w, "\n%d passed, %d warnings, %d failed\n", n[Pass], n[Warn], n[Fail])
	return err
}

// WriteJSON writes the report for tools.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.WithSummary())
}

// WithSummary is the report as "storeedge doctor --json" writes it: with its counts.
func (r Report) WithSummary() any {
	return struct {
		Report
		Summary map[Status]int `json:"summary"`
	}{r, r.Counts()}
}

// oneLine keeps a detail from breaking the table: outside text (an error from a proxy, a
// certificate name) may hold line breaks.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func pass(group, check, detail string) Result {
	return Result{Group: group, Check: check, Status: Pass, Detail: detail}
}

func warn(group, check, detail, fix string) Result {
	return Result{Group: group, Check: check, Status: Warn, Detail: detail, Fix: fix}
}

func fail(group, check, detail, fix string) Result {
	return Result{Group: group, Check: check, Status: Fail, Detail: detail, Fix: fix}
}
