//go:build linux

package main

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

// table is one result table: a title, a header row, rows and notes under it.
type table struct {
	title string
	head  []string
	rows  [][]string
	notes []string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }
func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

// print writes the table as Markdown with padded columns: readable in a terminal and ready to
// paste into docs/PERFORMANCE.md.
func (t *table) print(w io.Writer) {
	fmt.Fprintf(w, "\n### %s\n\n", t.title)
	width := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c), 3)
			}
		}
	}
	line := func(cells []string) {
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
		fmt.Fprintln(w, b.String())
	}
	line(t.head)
	sep := make([]string, len(width))
	for i := range sep {
		if i == 0 {
			sep[i] = strings.Repeat("-", width[i])
		} else {
			sep[i] = strings.Repeat("-", width[i]-1) + ":"
		}
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
	if len(t.notes) > 0 {
		fmt.Fprintln(w)
	}
	for _, n := range t.notes {
		fmt.Fprintln(w, "- "+n)
	}
}

// report collects the tables of a run so they can be printed together at the end.
type report struct {
	tables []*table
}

func (r *report) add(w io.Writer, t *table) {
	r.tables = append(r.tables, t)
	t.print(w)
}

func (r *report) print(w io.Writer) {
	if len(r.tables) == 0 {
		return
	}
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\n######## summary: %s, %s, %d CPUs, %s/%s, %s ########\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, loadAvg())
	for _, t := range r.tables {
		t.print(w)
	}
}

// loadAvg is the load average, a hint that something else ran on the machine: this bench keeps
// about two runnable threads busy on its own.
func loadAvg() string {
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

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func fmtRate(v float64) string { return fmt.Sprintf("%.0f", v) }
func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v)
}
func fmtSecs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
func fmtMB(kb int64) string { return fmt.Sprintf("%.0f MB", float64(kb)/1024) }
func fmtInt(n int64) string {
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

// median of durations; ds is sorted in place.
func minMedMax(ds []time.Duration) (lo, med, hi time.Duration) {
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
