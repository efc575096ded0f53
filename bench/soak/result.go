package soak

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// Result is what a soak saw.
type Result struct {
	Options       Options
	Elapsed       time.Duration
	Devices       int
	Created       int
	Counts        map[string]int64 // requests that succeeded, by kind
	Errors        map[string]int64 // requests that failed, by kind
	FirstErrors   []string
	Behind        map[string]int64 // by kind, ticks the load generator skipped because every worker was busy
	Samples       []Sample
	MissingCloud  []string // orders created that cloudsim never received
	CloudErr      error
	MissingStream []string // orders created that a follower never saw announced
	Final         *status  // the status after the load settled
	StatusErr     error
}

// Growth is one resource's growth after the warm-up.
type Growth struct {
	Name       string
	Ref, End   float64 // the level after the warm-up and at the end (see Growths)
	Growth     float64 // End/Ref - 1
	Passed     bool
	Unmeasured bool
}

// Growths compares each resource at the end of the run with its level just after the warm-up.
// Samples of the warm-up are ignored. For RSS the reference is the largest value of the next
// tenth of the measured run (a level the daemon already reached, so that a garbage collection
// that happened to run just then is not taken for the level), the end is the median of the last
// tenth. Goroutines and open files come and go with the requests in flight, which under load
// are in most samples: each level is the least value of its tenth, the count with no request
// between, which is what a leak lifts. A steady leak shows either way: it lifts the whole last
// tenth above the reference.
func (r *Result) Growths() []Growth {
	total, warm := r.Options.phases()
	tenth := (total - warm) / 10
	var ref, end []Sample
	for _, s := range r.Samples {
		switch {
		case s.At >= warm && s.At < warm+tenth:
			ref = append(ref, s)
		case s.At >= total-tenth:
			end = append(end, s)
		}
	}
	pick := []struct {
		name     string
		get      func(Sample) float64
		ref, end func([]float64) float64
	}{
		{"RSS (kB)", func(s Sample) float64 { return float64(s.RSSKB) }, slices.Max[[]float64], harness.Median},
		{"goroutines", func(s Sample) float64 { return float64(s.Goroutines) }, slices.Min[[]float64], slices.Min[[]float64]},
		{"open files", func(s Sample) float64 { return float64(s.FDs) }, slices.Min[[]float64], slices.Min[[]float64]},
	}
	var out []Growth
	for _, p := range pick {
		g := Growth{Name: p.name, Unmeasured: len(ref) == 0 || len(end) == 0}
		if !g.Unmeasured {
			g.Ref = p.ref(values(ref, p.get))
			g.End = p.end(values(end, p.get))
			g.Growth = g.End/g.Ref - 1
			g.Passed = g.Growth <= MaxGrowth
		}
		out = append(out, g)
	}
	return out
}

func values(ss []Sample, get func(Sample) float64) []float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = get(s)
	}
	return v
}

// Failures is every check that failed, in words; none means the soak passed.
func (r *Result) Failures() []string {
	var f []string
	for _, g := range r.Growths() {
		switch {
		case g.Unmeasured:
			f = append(f, fmt.Sprintf("%s: too few samples to judge growth (%d in all)", g.Name, len(r.Samples)))
		case !g.Passed:
			f = append(f, fmt.Sprintf("%s grew %.1f %% after the warm-up (%.0f → %.0f), more than %.0f %%", g.Name, 100*g.Growth, g.Ref, g.End, 100*MaxGrowth))
		}
	}
	for _, kind := range slices.Sorted(maps.Keys(r.Errors)) {
		f = append(f, fmt.Sprintf("%d %s errors", r.Errors[kind], kind))
	}
	if r.Created == 0 {
		f = append(f, "no order was created")
	}
	if r.CloudErr != nil {
		f = append(f, "reading the cloud's events: "+r.CloudErr.Error())
	}
	if n := len(r.MissingCloud); n > 0 {
		f = append(f, fmt.Sprintf("%d of %d orders never reached the cloud, e.g. %s", n, r.Created, r.MissingCloud[0]))
	}
	if n := len(r.MissingStream); n > 0 {
		f = append(f, fmt.Sprintf("%d order announcements missing on the event streams, e.g. %s", n, r.MissingStream[0]))
	}
	switch {
	case r.StatusErr != nil:
		f = append(f, "final status: "+r.StatusErr.Error())
	case r.Final.Devices.Queued != 0 || r.Final.Devices.StuckCommands != 0:
		f = append(f, fmt.Sprintf("push queues not empty at the end: devices.queued %d, stuck_commands %d", r.Final.Devices.Queued, r.Final.Devices.StuckCommands))
	case r.Final.Orders.OutboxPending != 0 || r.Final.Orders.OutboxRejected != 0:
		f = append(f, fmt.Sprintf("outbox not drained at the end: %d pending, %d rejected", r.Final.Orders.OutboxPending, r.Final.Orders.OutboxRejected))
	}
	return f
}

// Print writes the report: the load, the resources and every check.
func (r *Result) Print(w io.Writer) {
	t := &harness.Table{Title: fmt.Sprintf("Soak: %d devices, %d orders/s, catalog change every %v, %v", r.Devices, r.Options.OrderRate, r.Options.CatalogEvery, r.Options.Duration),
		Head: []string{"load", "done", "per second", "errors", "skipped ticks"}}
	for _, kind := range slices.Sorted(maps.Keys(r.Counts)) {
		t.Add(kind, harness.FmtInt(r.Counts[kind]), fmt.Sprintf("%.1f", float64(r.Counts[kind])/r.Options.Duration.Seconds()),
			harness.FmtInt(r.Errors[kind]), harness.FmtInt(r.Behind[kind]))
	}
	t.Note("%d orders created; %d missing in the cloud, %d announcements missing on %d streams", r.Created, len(r.MissingCloud), len(r.MissingStream), r.Options.Followers)
	t.Note("a skipped tick found every worker of the load busy: the daemon or this machine did not keep up with the rate")
	if r.Final != nil {
		t.Note("at the end: devices.queued %d, stuck_commands %d, outbox pending %d, rejected %d, devices online %d of %d",
			r.Final.Devices.Queued, r.Final.Devices.StuckCommands, r.Final.Orders.OutboxPending, r.Final.Orders.OutboxRejected, r.Final.Devices.Online, r.Final.Devices.Paired)
	}
	t.Print(w)
	g := &harness.Table{Title: "Soak: the daemon's resources after the warm-up", Head: []string{"resource", "after warm-up", "at the end", "growth", "≤ 5 %"}}
	for _, x := range r.Growths() {
		if x.Unmeasured {
			g.Add(x.Name, "-", "-", "-", "MISSED")
			continue
		}
		g.Add(x.Name, fmt.Sprintf("%.0f", x.Ref), fmt.Sprintf("%.0f", x.End), fmt.Sprintf("%+.1f %%", 100*x.Growth), harness.Verdict(x.Passed))
	}
	total, warm := r.Options.phases()
	g.Note("%d samples every %v; the first %v of the %v run is the warm-up, not checked; %s", len(r.Samples), r.Options.SampleEvery, warm, total, harness.LoadAvg())
	g.Print(w)
	for _, e := range r.FirstErrors {
		fmt.Fprintln(w, "first errors: "+e)
	}
	if f := r.Failures(); len(f) > 0 {
		fmt.Fprintln(w, "\nsoak FAILED:")
		for _, x := range f {
			fmt.Fprintln(w, "  - "+x)
		}
		return
	}
	fmt.Fprintln(w, "\nsoak passed: resources flat, no error, every order in the cloud and on every stream, push queues empty")
}
