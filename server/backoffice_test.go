package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

// TestWebhookRefusalIsListedAndRetried drives a real back-office agent against a webhook that
// refuses an order: admin sees the refusal with the ERP's answer and can send it again.
func TestWebhookRefusalIsListedAndRetried(t *testing.T) {
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unknown customer account", http.StatusUnprocessableEntity)
	}))
	defer erp.Close()
	var agent *backoffice.Agent
	f := newFixture(t, func(o *Options) {
		agent = backoffice.New(backoffice.Options{DB: o.DB, Shop: config.Shop{Mode: config.ModeProduction},
			Config: config.BackOffice{Schedule: "@hourly", Webhook: config.BackOfficeWebhook{URL: erp.URL, Timeout: 5 * time.Second}}})
		o.BackOffice = agent
	})
	o := decodeOrder(t, f.order(t, "pos", "k", `{"lines":[{"product_id":"P0002","quantity":1}]}`), http.StatusCreated).Order
	decodeOK[backoffice.Status](t, f.post(t, "/api/v1/admin/backoffice/run", "", ""))
	list := decodeOK[struct {
		Items []storage.ExportFailure `json:"items"`
	}](t, f.get(t, "/api/v1/admin/backoffice/webhook/failures"))
	if len(list.Items) != 1 || list.Items[0].OrderID != o.ID || list.Items[0].Reason == "" {
		t.Fatalf("failures %+v", list.Items)
	}
	decodeOK[map[string]string](t, f.post(t, "/api/v1/admin/backoffice/webhook/"+o.ID+"/retry", "", ""))
	wantProblem(t, f.post(t, "/api/v1/admin/backoffice/webhook/"+o.ID+"/retry", "", ""), http.StatusNotFound, "not-found")
	after := decodeOK[struct {
		Items []storage.ExportFailure `json:"items"`
	}](t, f.get(t, "/api/v1/admin/backoffice/webhook/failures"))
	if len(after.Items) != 0 {
		t.Fatalf("still listed after the retry: %+v", after.Items)
	}
}

func TestBackOfficeRoutesWithoutBackOffice(t *testing.T) {
	f := newFixture(t)
	wantProblem(t, f.post(t, "/api/v1/admin/backoffice/run", "", ""), http.StatusNotFound, "not-found", "no back-office")
	wantProblem(t, f.get(t, "/api/v1/admin/backoffice/webhook/failures"), http.StatusNotFound, "not-found")
}

// cutShortBackOffice is an agent whose runs never end within the admin's wait.
type cutShortBackOffice struct{ *backoffice.Agent }

func (cutShortBackOffice) RunOnce(ctx context.Context) error {
	return fmt.Errorf("%w (%w)", backoffice.ErrCutShort, context.DeadlineExceeded)
}

// A run that does not end within the admin's wait is a 504 saying what becomes of it, not a
// failure of the back office.
func TestBackOfficeRunCutShortIsAGatewayTimeout(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.BackOffice = cutShortBackOffice{backoffice.New(backoffice.Options{DB: o.DB, Shop: config.Shop{Mode: config.ModeProduction},
			Config: config.BackOffice{Schedule: "@hourly", Export: config.BackOfficeExport{Dir: t.TempDir(), Format: config.ExportCSV}}})}
	})
	wantProblem(t, f.post(t, "/api/v1/admin/backoffice/run", "", ""), http.StatusGatewayTimeout, "backoffice-timeout", "goes at the next scheduled run")
}

// slowBackOffice is an agent whose runs take a while and end with err.
type slowBackOffice struct {
	*backoffice.Agent
	take time.Duration
	err  error
}

func (b slowBackOffice) RunOnce(ctx context.Context) error {
	select {
	case <-time.After(b.take):
		return b.err
	case <-ctx.Done():
		return fmt.Errorf("%w (%w)", backoffice.ErrCutShort, ctx.Err())
	}
}

// A run may take longer than lan.write_timeout, set when the request was read: its answer, the
// status or the 502 with why, still reaches the admin, and a failed run is in the log.
func TestBackOfficeRunLongerThanTheWriteTimeout(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	for _, c := range []struct {
		err  error
		code int
		log  string
	}{
		{nil, http.StatusOK, `msg="backoffice: run started by an admin"`},
		{errors.New("export dir /srv/erp/in: no such file or directory"), http.StatusBadGateway,
			`msg="backoffice: run started by an admin failed" err="export dir /srv/erp/in: no such file or directory"`},
	} {
		var logs testenv.Buffer
		f := newFixture(t, func(o *Options) {
			o.WriteTimeout = writeTimeout
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			o.BackOffice = slowBackOffice{backoffice.New(backoffice.Options{DB: o.DB, Shop: config.Shop{Mode: config.ModeProduction},
				Config: config.BackOffice{Schedule: "@hourly", Export: config.BackOfficeExport{Dir: t.TempDir(), Format: config.ExportCSV}}}),
				2 * writeTimeout, c.err}
		})
		ts := httptest.NewUnstartedServer(f.h)
		ts.Config.WriteTimeout = writeTimeout // as the server's own listeners
		ts.Start()
		resp, err := ts.Client().Post(ts.URL+"/api/v1/admin/backoffice/run", "", nil)
		if err != nil {
			t.Fatalf("a run of %v: %v", 2*writeTimeout, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ts.Close()
		if err != nil || resp.StatusCode != c.code {
			t.Fatalf("a run of %v ending with %v: %d %q (%v), want %d", 2*writeTimeout, c.err, resp.StatusCode, body, err, c.code)
		}
		if !strings.Contains(logs.String(), c.log) {
			t.Errorf("the log lacks %s:\n%s", c.log, logs.String())
		}
	}
}
