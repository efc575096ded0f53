package harness

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Table is one result table: a title, a header row, rows and notes under it.
type Table struct {
	Title string
	Head  []string
	rows  [][]string
	notes []string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.rows = append(t.rows, cells) }

// Note appends a note, printed as a list item under the table.
func (t *Table) Note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

// Print writes the table as Markdown with padded columns: readable in a terminal and ready to
// paste into docs/PERFORMANCE.md.
func (t *Table) Print(w io.Writer) {
	fmt.Fprintf(w, "\n### %s\n\n", t.Title)
	width := t.widths()
	sep := make([]string, len(width))
	for i := range sep {
		if i == 0 {
			sep[i] = strings.Repeat("-", width[i])
		} else {
			sep[i] = strings.Repeat("-", width[i]-1) + ":"
		}
	}
	for _, r := range append([][]string{t.Head, sep}, t.rows...) {
		fmt.Fprintln(w, tableLine(width, r))
	}
	if len(t.notes) > 0 {
		fmt.Fprintln(w)
	}
	for _, n := range t.notes {
		fmt.Fprintln(w, "- "+n)
	}
}

// widths is each column's width: its widest cell, at least 3.
func (t *Table) widths() []int {
	width := make([]int, len(t.Head))
	for _, r := range append([][]string{t.Head}, t.rows...) {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c), 3)
			}
		}
	}
	return width
}

// tableLine is one row: the first column aligned left, the others right.
func tableLine(width []int, cells []string) string {
	var b strings.Builder
	b.WriteString("|")
	for i := range width {
		c := ""
		if i < len(cells) {
			c = cells[i]
		}
		pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
		if i == 0 {
			b.WriteString(" " + c + pad + " |")
		} else {
			b.WriteString(" " + pad + c + " |")
		}
	}
	return b.String()
}

// Report collects the tables of a run so they can be printed together at the end.
type Report struct {
	tables []*Table
}

// Add prints t now and keeps it for the summary.
func (r *Report) Add(w io.Writer, t *Table) {
	r.tables = append(r.tables, t)
	t.Print(w)
}

// Print writes the summary: the machine, then every table again.
func (r *Report) Print(w io.Writer) {
	if len(r.tables) == 0 {
		return
	}
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\n######## summary: %s, %s, %d CPUs, %s/%s, %s ########\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, LoadAvg())
	for _, t := range r.tables {
		t.Print(w)
	}
}

// LoadAvg is the load average, a hint that something else ran on the machine: this bench keeps
// about two runnable threads busy on its own.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load ?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load ?"
	}
	return "load average " + f[0] + " " + f[1] + " " + f[2] + " (1, 5, 15 min)"
}

// Verdict is "met" or "MISSED".
func Verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// FmtRate writes a rate per second as a whole number.
func FmtRate(v float64) string { return fmt.Sprintf("%.0f", v) }

// FmtRatio writes a ratio as 1.23×, or "-" when there is none.
func FmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v)
}

// FmtSecs writes a duration in seconds.
func FmtSecs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// FmtMs writes a duration in milliseconds.
func FmtMs(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// FmtMB writes a size given in kB in MB.
func FmtMB(kb int64) string { return fmt.Sprintf("%.0f MB", float64(kb)/1024) }

// FmtInt writes a count with thousands separators.
func FmtInt(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[0] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Median is the median of v (of an even number, the mean of the middle two); v is sorted in
// place. 0 when v is empty.
func Median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	switch {
	case n == 0:
		return 0
	case n%2 == 0:
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[n/2]
}

// MinMedMax is the least, the median and the greatest of ds; ds is sorted in place.
func MinMedMax(ds []time.Duration) (lo, med, hi time.Duration) {
	slices.Sort(ds)
	n := len(ds)
	if n == 0 {
		return 0, 0, 0
	}
	med = ds[n/2]
	if n%2 == 0 {
		med = (ds[n/2-1] + ds[n/2]) / 2
	}
	return ds[0], med, ds[n-1]
}

// Percentile returns the p-th percentile (0–100, nearest rank) of ds, sorting ds; 0 when empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// Alternate runs round i of a comparison: daemon then baseline in even rounds, baseline then
// daemon in odd ones, so that a drift of the machine's load within a round does not always favour
// the same side. It stops at the first error.
func Alternate(i int, daemon, baseline func() error) error {
	first, second := daemon, baseline
	if i%2 == 1 {
		first, second = baseline, daemon
	}
	if err := first(); err != nil {
		return err
	}
	return second()
}
