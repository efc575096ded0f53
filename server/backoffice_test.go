package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
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
