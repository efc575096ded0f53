package media

import "time"

// Window is the daily time window in which large files are prefetched, in the server's local
// time. The zero Window is always open.
type Window struct {
	Start, End int // minutes after midnight; End may be before Start (across midnight)
	Set        bool
}

// Open reports whether t falls inside the window.
func (w Window) Open(t time.Time) bool {
	if !w.Set {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	if w.Start < w.End {
		return m >= w.Start && m < w.End
	}
	return m >= w.Start || m < w.End
}

// NextOpen is the next time the window opens at or after t (t itself when it is open).
func (w Window) NextOpen(t time.Time) time.Time {
	if w.Open(t) {
		return t
	}
	y, mo, d := t.Date()
	start := time.Date(y, mo, d, w.Start/60, w.Start%60, 0, 0, t.Location())
	if !start.After(t) {
		start = start.AddDate(0, 0, 1)
	}
	return start
}
