package orders

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Order statuses. An order moves forward through them; cancelled and completed are final.
const (
	StatusNew       = "new"
	StatusAccepted  = "accepted"
	StatusPreparing = "preparing"
	StatusReady     = "ready"
	StatusCompleted = "completed"
	StatusCancelled = "cancelled"
)

// statuses lists every status in the order an order moves through them.
var statuses = []string{StatusNew, StatusAccepted, StatusPreparing, StatusReady, StatusCompleted, StatusCancelled}

// transitions are where an order may go from each status that is not final.
var transitions = map[string][]string{
	StatusNew:       {StatusAccepted, StatusPreparing, StatusReady, StatusCompleted, StatusCancelled},
	StatusAccepted:  {StatusPreparing, StatusReady, StatusCompleted, StatusCancelled},
	StatusPreparing: {StatusReady, StatusCompleted, StatusCancelled},
	StatusReady:     {StatusCompleted, StatusCancelled},
}

// ErrInvalidTransition is wrapped by a *TransitionError.
var ErrInvalidTransition = errors.New("invalid order status transition")

// TransitionError refuses a status change that the statuses do not allow, or a note added to an
// order whose status is final (Why says so).
type TransitionError struct{ From, To, Why string }

func (e *TransitionError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("the order is %s: %s", e.From, e.Why)
	}
	return fmt.Sprintf("the order is %s and cannot become %s", e.From, e.To)
}

// NoteError refuses a note that would make the order's note longer than MaxOrderNoteRunes.
type NoteError struct{ Runes int }

func (e *NoteError) Error() string {
	return fmt.Sprintf("note: the order's note would be %d characters with it, at most %d", e.Runes, MaxOrderNoteRunes)
}

func (e *TransitionError) Unwrap() error { return ErrInvalidTransition }

// ValidStatus reports whether s is an order status.
func ValidStatus(s string) bool {
	for _, v := range statuses {
		if v == s {
			return true
		}
	}
	return false
}

// StatusList is the statuses for a message: "new, accepted, …, cancelled".
func StatusList() string { return strings.Join(statuses, ", ") }

// CanMove reports whether an order may go from one status to another. Staying is allowed (a
// retried update is harmless); going back is not.
func CanMove(from, to string) bool {
	if from == to {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Move sets o's status to to, with note added to its note, or returns a *TransitionError or a
// *NoteError and leaves o as it was. The note of a completed or cancelled order no longer
// changes; asking again for its status with the note it has is a no-op, as any retry.
func Move(o *Order, to, note string) error {
	if !CanMove(o.Status, to) {
		return &TransitionError{From: o.Status, To: to}
	}
	merged := AddNote(o.Note, note)
	if merged != o.Note {
		if o.Status == to && Final(to) {
			return &TransitionError{From: o.Status, To: to, Why: "its note can no longer change"}
		}
		if n := utf8.RuneCountInString(merged); n > MaxOrderNoteRunes {
			return &NoteError{Runes: n}
		}
	}
	o.Status = to
	o.Note = merged
	return nil
}

// Final reports whether an order in status s moves no more: completed or cancelled.
func Final(s string) bool { return s == StatusCompleted || s == StatusCancelled }

// AddNote appends note to an order's note on a line of its own, once: a retried status change
// with the same note does not repeat it. A note already there as whole lines counts, the lines
// compared without the spaces at their ends (the note the order was created with is kept as the
// device sent it, " table 4 " say); one that is only a part of a line ("4" in "table 4") does
// not. What is there already is never changed.
func AddNote(existing, note string) string {
	note = strings.TrimSpace(note) // as it is kept
	if note == "" {
		return existing
	}
	if have, want := trimLines(existing), trimLines(note); have == want || strings.HasPrefix(have, want+"\n") ||
		strings.HasSuffix(have, "\n"+want) || strings.Contains(have, "\n"+want+"\n") {
		return existing
	}
	if strings.TrimSpace(existing) == "" {
		return note
	}
	return existing + "\n" + note
}

// trimLines is s with the spaces at the ends of each of its lines, and its blank lines at
// either end, taken out.
func trimLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}
