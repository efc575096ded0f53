package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/outbox"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// adminRoutes are the admin service, every route behind the admin credential (the router
// applies it). The status is among them: it shows orders, devices and errors that are no
// device's business.
func (s *Server) adminRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(noStore)
		r.Get("/api/v1/status", s.status)
		s.adminDeviceRoutes(r)
		r.Get("/api/v1/admin/outbox/rejected", s.rejectedOutbox)
		r.Post("/api/v1/admin/outbox/{seq}/retry", s.retryOutbox)
		r.Post("/api/v1/admin/backoffice/run", s.runBackOffice)
		r.Get("/api/v1/admin/backoffice/webhook/failures", s.webhookFailures)
		r.Post("/api/v1/admin/backoffice/webhook/{order}/retry", s.retryWebhook)
		r.Get("/api/v1/admin/discovery/seen", s.seenDevices)
	})
}

// noStore keeps admin answers out of every cache.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Cache-Control"] = []string{"no-store"}
		next.ServeHTTP(w, r)
	})
}

var healthyBody = []byte(`{"status":"ok"}` + "\n")

// healthz says the process is alive and serving; it touches nothing.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeBody(w, http.StatusOK, healthyBody)
}

// readyTimeout bounds the database probe of readyz: a database that takes longer is not ready.
const readyTimeout = 2 * time.Second

// readyz says the server can answer from its database. The probe is the cheapest query there is:
// a primary key lookup of an id that the contract forbids, so its only possible answers are "not
// found" (ready) and an error.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if _, err := s.o.DB.Get(ctx, cloudapi.Settings, ""); !errors.Is(err, storage.ErrNotFound) {
		detail := "the local database does not answer"
		if err != nil {
			detail += ": " + err.Error()
		}
		problem(w, r, probNotReady, detail)
		return
	}
	writeBody(w, http.StatusOK, healthyBody)
}

// statusQuarantine is how many quarantined feed lines the status shows, newest first.
const statusQuarantine = 20

type statusDoc struct {
	ServerID      string                    `json:"server_id"`
	ShopName      string                    `json:"shop_name"`
	Version       string                    `json:"version"`
	StartedAt     time.Time                 `json:"started_at"`
	UptimeSeconds int64                     `json:"uptime_seconds"`
	WAN           WANStatus                 `json:"wan"`
	Collections   []collectionStatus        `json:"collections"`
	Quarantine    []storage.QuarantineEntry `json:"quarantine"`
	Mode          string                    `json:"mode"` // test or production
	Orders        storage.OrderStats        `json:"orders"`
	Upload        *outbox.State             `json:"upload"`     // null when sync is off
	ServiceBus    *servicebus.Status        `json:"servicebus"` // null when Service Bus is off
	BackOffice    *backoffice.Status        `json:"backoffice"` // null when the daemon has none
	Discovery     discovery.Status          `json:"discovery"`  // each part null when off
	ReadCache     *storage.ReadCacheStats   `json:"read_cache"` // null when lan.read_cache_mb is 0
	Devices       devices.Summary           `json:"devices"`
}

type collectionStatus struct {
	Name           string     `json:"name"`
	Cursor         string     `json:"cursor"`
	LastSuccess    *time.Time `json:"last_success"`     // null: never synced
	DataAgeSeconds *int64     `json:"data_age_seconds"` // null: never synced
	Remaining      int64      `json:"remaining"`
	Rows           int64      `json:"rows"`
	Quarantined    int64      `json:"quarantined"`
	LastError      string     `json:"last_error"`
	LastErrorAt    *time.Time `json:"last_error_at"` // null: no error since the last success
}

// status is what shop IT looks at first: who this server is, whether the WAN works and how far
// behind each collection is.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := s.now()
	doc := statusDoc{
		ServerID:      s.o.ServerID,
		ShopName:      s.o.ShopName,
		Version:       s.o.Version,
		StartedAt:     s.o.StartedAt.UTC(),
		UptimeSeconds: int64(max(now.Sub(s.o.StartedAt), 0) / time.Second),
		WAN:           WANStatus{State: "unknown"},
	}
	if s.o.WAN != nil {
		doc.WAN = s.o.WAN()
	}
	for _, name := range cloudapi.Collections {
		st, _ := s.o.DB.FeedState(name)
		rows, err := s.o.DB.Count(ctx, name)
		if err != nil {
			s.internal(w, r, "count "+name, err)
			return
		}
		cs := collectionStatus{
			Name:        name,
			Cursor:      st.Cursor,
			Remaining:   st.Remaining,
			Rows:        rows,
			Quarantined: st.Quarantined,
			LastError:   st.LastError,
		}
		if !st.LastSuccess.IsZero() {
			t := st.LastSuccess.UTC()
			age := int64(max(now.Sub(t), 0) / time.Second)
			cs.LastSuccess, cs.DataAgeSeconds = &t, &age
		}
		if !st.LastErrorAt.IsZero() {
			t := st.LastErrorAt.UTC()
			cs.LastErrorAt = &t
		}
		doc.Collections = append(doc.Collections, cs)
	}
	q, err := s.o.DB.Quarantine(ctx, "", statusQuarantine)
	if err != nil {
		s.internal(w, r, "list quarantine", err)
		return
	}
	for i := range q {
		q[i].At = q[i].At.UTC()
	}
	doc.Quarantine = q
	if doc.Quarantine == nil {
		doc.Quarantine = []storage.QuarantineEntry{}
	}
	doc.Mode = "production"
	if s.o.TestMode {
		doc.Mode = "test"
	}
	if s.o.ServiceBus != nil {
		sb := s.o.ServiceBus()
		doc.ServiceBus = &sb
	}
	if s.o.Upload != nil {
		up := s.o.Upload()
		doc.Upload = &up
	}
	if s.o.BackOffice != nil {
		bo := s.o.BackOffice.Status()
		doc.BackOffice = &bo
	}
	if s.o.Discovery != nil {
		doc.Discovery = s.o.Discovery.Status()
	}
	if rc, ok := s.o.DB.ReadCacheStats(); ok {
		doc.ReadCache = &rc
	}
	if doc.Devices, err = s.o.Devices.Summary(ctx); err != nil {
		s.internal(w, r, "list devices", err)
		return
	}
	if doc.Orders, err = s.o.DB.OrderStats(ctx); err != nil {
		s.internal(w, r, "count orders", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, doc)
}

// backOfficeRunTimeout bounds an "export now": a run in progress is waited for first.
const backOfficeRunTimeout = 2 * time.Minute

var probBackOffice = problemType{"backoffice-failed", "Back-office run failed", http.StatusBadGateway}

// runBackOffice exports and imports now instead of at the next scheduled time, and answers the
// back office's status afterwards.
func (s *Server) runBackOffice(w http.ResponseWriter, r *http.Request) {
	if !s.hasBackOffice(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), backOfficeRunTimeout)
	defer cancel()
	if err := s.o.BackOffice.RunOnce(ctx); err != nil {
		problem(w, r, probBackOffice, err.Error())
		return
	}
	s.o.Logger.Info("backoffice: run started by an admin")
	s.writeJSON(w, r, http.StatusOK, s.o.BackOffice.Status())
}

func (s *Server) hasBackOffice(w http.ResponseWriter, r *http.Request) bool {
	if s.o.BackOffice == nil {
		problem(w, r, probNotFound, "this server has no back-office exchange")
		return false
	}
	return true
}

// webhookFailures lists the orders the ERP's webhook refused for good, with its answers.
func (s *Server) webhookFailures(w http.ResponseWriter, r *http.Request) {
	if !s.hasBackOffice(w, r) {
		return
	}
	limit, bad := limitParam(r.URL.Query())
	if bad != nil {
		s.answerError(w, r, bad)
		return
	}
	failures, err := s.o.BackOffice.WebhookFailures(r.Context(), limit)
	if err != nil {
		s.internal(w, r, "list webhook failures", err)
		return
	}
	if failures == nil {
		failures = []storage.ExportFailure{}
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Items []storage.ExportFailure `json:"items"`
	}{failures})
}

// retryWebhook sends a refused order to the webhook again at the next run, once the cause is
// fixed in the ERP.
func (s *Server) retryWebhook(w http.ResponseWriter, r *http.Request) {
	if !s.hasBackOffice(w, r) {
		return
	}
	id, _ := pathParam(r, "order")
	ok, err := s.o.BackOffice.RetryWebhook(r.Context(), id)
	if err != nil {
		s.internal(w, r, "retry webhook", err)
		return
	}
	if !ok {
		problem(w, r, probNotFound, "order "+strconv.Quote(id)+" was not refused by the webhook")
		return
	}
	s.o.Logger.Info("backoffice: webhook refusal cleared by an admin", slog.String("order_id", id))
	s.writeJSON(w, r, http.StatusOK, struct {
		OrderID string `json:"order_id"`
		State   string `json:"state"`
	}{id, storage.ExportPending})
}

// rejectedOutbox lists what the cloud refused for good, newest first, with the reasons.
func (s *Server) rejectedOutbox(w http.ResponseWriter, r *http.Request) {
	limit, bad := limitParam(r.URL.Query())
	if bad != nil {
		s.answerError(w, r, bad)
		return
	}
	entries, err := s.o.DB.RejectedOutbox(r.Context(), limit)
	if err != nil {
		s.internal(w, r, "list rejected outbox", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Items []storage.OutboxEntry `json:"items"`
	}{entries})
}

// retryOutbox puts a rejected entry back in the upload queue, once the cause is fixed.
func (s *Server) retryOutbox(w http.ResponseWriter, r *http.Request) {
	raw, _ := pathParam(r, "seq")
	seq, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || seq <= 0 {
		problem(w, r, probBadParameter, "seq: "+strconv.Quote(raw)+" is not a positive whole number")
		return
	}
	ok, err := s.o.DB.RetryOutbox(r.Context(), seq)
	if err != nil {
		s.internal(w, r, "retry outbox entry", err)
		return
	}
	if !ok {
		problem(w, r, probNotFound, fmt.Sprintf("no rejected outbox entry %d", seq))
		return
	}
	s.o.Logger.Info("outbox: rejected entry queued again by an admin", slog.Int64("seq", seq))
	s.writeJSON(w, r, http.StatusOK, struct {
		Seq   int64  `json:"seq"`
		State string `json:"state"`
	}{seq, storage.OutboxPending})
}

// seenDevices lists the devices that said hello on the LAN (docs/discovery.md), so that shop IT
// can pair the ones it recognises; those already paired are marked with their device id.
func (s *Server) seenDevices(w http.ResponseWriter, r *http.Request) {
	items := []discovery.SeenDevice{}
	if s.o.Discovery != nil {
		items = append(items, s.o.Discovery.Seen()...)
	}
	if len(items) > 0 {
		// A hello carries the device's own id, pairing gives it another: the two meet at the
		// address and push port the server would dial.
		list, err := s.o.Devices.List(r.Context())
		if err != nil {
			s.internal(w, r, "list devices", err)
			return
		}
		paired := make(map[string]string, len(list))
		for _, d := range list {
			if !d.Revoked {
				paired[net.JoinHostPort(d.Address, strconv.Itoa(d.PushPort))] = d.ID
			}
		}
		for i := range items {
			items[i].PairedAs = paired[net.JoinHostPort(items[i].Addr, strconv.Itoa(items[i].PushPort))]
		}
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Items []discovery.SeenDevice `json:"items"`
	}{items})
}
