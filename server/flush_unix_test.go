//go:build unix

package server

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/tools/testenv"
)

// The disk fails a flush of the database's log (here the WAL's name taken by a FIFO, whose fsync
// fails, while SQLite goes on writing to the file it holds open): the order it covered is not
// answered as stored, a resend of it is not either, nor is any later order, and readyz says
// the server is not ready, its log saying why. healthz still answers: the process lives.
func TestDiskThatFailsAFlushStopsOrders(t *testing.T) {
	var logs testenv.Buffer
	f := newFixture(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	if rec := f.order(t, "pos-1", "before", `{"lines":[{"product_id":"P0002","quantity":1}]}`); rec.Code != http.StatusCreated {
		t.Fatalf("an order before the failure: %d %s", rec.Code, rec.Body)
	}
	testenv.FailWALFlushes(t, f.db.Path())

	body := `{"lines":[{"product_id":"P0002","quantity":2}]}`
	for _, key := range []string{"during", "during", "after"} {
		rec := f.order(t, "pos-1", key, body)
		wantProblem(t, rec, http.StatusInternalServerError, "internal", "")
	}
	rec := f.get(t, "/readyz")
	wantProblem(t, rec, http.StatusServiceUnavailable, "not-ready", "disk")
	if strings.Contains(rec.Body.String(), "invalid argument") {
		t.Errorf("readyz's answer carries the error: %s", rec.Body)
	}
	if rec := f.get(t, "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("healthz: %d", rec.Code)
	}
	if l := logs.String(); !strings.Contains(l, "readyz: the disk failed a write of the local database") || !strings.Contains(l, "repair the disk") {
		t.Errorf("the log does not say why:\n%s", l)
	}
	// Each refused order's line says it too (operations.md), for a shop with no readyz prober.
	refused := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "request failed") && strings.Contains(line, "the disk failed a flush of the database's log") {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d refused orders logged with the reason, want 3:\n%s", refused, logs.String())
	}
}
