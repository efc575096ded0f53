package support

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/storage"
)

// Sources are what the requests read and act on. A nil one makes its part of the answer say
// that this server has none.
type Sources struct {
	Version   string
	StartedAt time.Time
	// Config is the configuration in effect as `storeedge config` shows it, secrets hidden.
	Config func() string
	// Status is what GET /api/v1/status answers.
	Status func(ctx context.Context) (any, error)
	// Logs holds the recent log records.
	Logs *Ring
	// Doctor runs the checks of `storeedge doctor` and returns its report.
	Doctor func(ctx context.Context) any
	// Resync has a collection read again from a snapshot (feed.Syncer.Resnapshot); nil when
	// cloud.sync is off.
	Resync func(ctx context.Context, collection string) error
}

// DiagnosticsLogLines is how many recent log records diagnostics sends at most.
const DiagnosticsLogLines = 100

// run does what r asks and returns the result.
func (w *Worker) run(ctx context.Context, r Request) (any, error) {
	switch r.Kind {
	case KindPing:
		return w.ping(), nil
	case KindDiagnostics:
		return w.diagnostics(ctx), nil
	case KindResync:
		return w.resync(ctx, r.Args.Collection)
	case KindRetryOutbox:
		n, err := w.o.DB.RetryRejectedOutbox(ctx)
		if err != nil {
			return nil, err
		}
		return struct {
			Requeued int64 `json:"requeued"`
		}{n}, nil
	}
	return nil, fmt.Errorf("support: no handler for %q", r.Kind) // Decode lets no other kind through
}

type pingResult struct {
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Time          time.Time `json:"time"` // this server's clock, to compare with the vendor's
}

func (w *Worker) ping() pingResult {
	now := w.now()
	src := w.o.Sources
	return pingResult{Version: src.Version, StartedAt: src.StartedAt.UTC(), UptimeSeconds: int64(max(now.Sub(src.StartedAt), 0) / time.Second), Time: now.UTC()}
}

// diagnosticsResult is what a diagnostics request answers. A part that could not be had is null
// and Errors says why.
type diagnosticsResult struct {
	Config   string            `json:"config"` // YAML, secrets as xxxxx
	Status   any               `json:"status"`
	Logs     []LogLine         `json:"logs"` // oldest first, redacted
	Doctor   any               `json:"doctor"`
	Database *databaseCheck    `json:"database"`
	Errors   map[string]string `json:"errors,omitempty"`
}

type databaseCheck struct {
	Check  string `json:"check"` // quick_check
	OK     bool   `json:"ok"`
	Schema int    `json:"schema,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// shrink drops the older half of the log lines, then the doctor report, then the status.
func (d *diagnosticsResult) shrink() (string, bool) {
	switch {
	case len(d.Logs) > 0:
		d.Logs = d.Logs[len(d.Logs)/2+len(d.Logs)%2:]
		return "logs", true
	case d.Doctor != nil:
		d.Doctor = nil
		return "doctor", true
	case d.Status != nil:
		d.Status = nil
		return "status", true
	}
	return "", false
}

func (w *Worker) diagnostics(ctx context.Context) *diagnosticsResult {
	src := w.o.Sources
	d := &diagnosticsResult{Logs: []LogLine{}, Errors: map[string]string{}}
	if src.Config != nil {
		d.Config = src.Config()
	}
	if src.Status != nil {
		st, err := src.Status(ctx)
		if err != nil {
			d.Errors["status"] = err.Error()
		}
		d.Status = st
	}
	if src.Logs != nil {
		d.Logs = redactLines(src.Logs.Lines(DiagnosticsLogLines), w.red)
	}
	// The database first: doctor's checks over a slow WAN may use up the request's time, and a
	// check cut short is not a damaged database.
	schema, err := storage.QuickCheck(ctx, w.o.DB.Path())
	d.Database = &databaseCheck{Check: "quick_check", OK: err == nil, Schema: schema}
	if err != nil {
		d.Database.Detail = err.Error()
	}
	if src.Doctor != nil {
		d.Doctor = src.Doctor(ctx)
	}
	if len(d.Errors) == 0 {
		d.Errors = nil
	}
	return d
}

// redactLines redacts log records as log shipping does: secrets and personal data in the text,
// and the values of attributes whose name says they are sensitive.
func redactLines(lines []LogLine, red *logship.Redactor) []LogLine {
	for i := range lines {
		l := &lines[i]
		l.Message = red.Text(l.Message)
		if l.Attrs == nil {
			continue
		}
		attrs := make(map[string]any, len(l.Attrs))
		for k, v := range l.Attrs {
			attrs[k] = red.Value(k, v)
		}
		l.Attrs = attrs
	}
	return lines
}

// errSyncOff answers a resync on a server that does not sync with the cloud.
var errSyncOff = errors.New("sync with the cloud is off on this server (cloud.sync: false): nothing to read again")

type resyncResult struct {
	Collection string `json:"collection"`
	Rows       int64  `json:"rows"` // live rows before
	State      string `json:"state"`
}

func (w *Worker) resync(ctx context.Context, collection string) (any, error) {
	if w.o.Sources.Resync == nil {
		return nil, errSyncOff
	}
	rows, err := w.o.DB.Count(ctx, collection)
	if err != nil {
		return nil, err
	}
	if err := w.o.Sources.Resync(ctx, collection); err != nil {
		return nil, err
	}
	return resyncResult{Collection: collection, Rows: rows, State: "the cursor is forgotten; the next pass reads the collection again from a snapshot, which replaces it (at once, or when a wait ends: a Retry-After of the cloud, or the 5 minutes after a refused store key)"}, nil
}
