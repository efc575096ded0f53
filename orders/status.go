package orders

import (
	"errors"
	"fmt"
	"strings"
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

// TransitionError refuses a status change that the statuses do not allow.
type TransitionError struct{ From, To string }

func (e *TransitionError) Error() string {
	return fmt.Sprintf("the order is %s and cannot become %s", e.From, e.To)
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

// Move sets o's status to to, with note added to its note, or returns a *TransitionError and
// leaves o as it was.
func Move(o *Order, to, note string) error {
	if !CanMove(o.Status, to) {
		return &TransitionError{From: o.Status, To: to}
	}
	o.Status = to
	o.Note = AddNote(o.Note, note)
	return nil
}

// AddNote appends note to an order's note on a line of its own, once: a retried status change
// with the same note does not repeat it.
func AddNote(existing, note string) string {
	if note == "" || strings.Contains(existing, note) {
		return existing
	}
	return strings.TrimSpace(existing + "\n" + note)
}
