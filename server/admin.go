package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/ops/alerts"
	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/sync/outbox"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// adminRoutes are the admin service, every route behind the admin credential (the router
// applies it). The status is among them: it shows orders, devices and errors that are no
// device's business.
func (s *Server) adminRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(noStore)
		r.Get("/api/v1/status", s.handle(s.status))
		s.adminDeviceRoutes(r)
		r.Get("/api/v1/admin/outbox/rejected", s.handle(s.rejectedOutbox))
		r.Post("/api/v1/admin/outbox/retry", s.handle(s.retryAllOutbox))
		r.Post("/api/v1/admin/outbox/{seq}/retry", s.handle(s.retryOutbox))
		r.Post("/api/v1/admin/backoffice/run", s.handle(s.runBackOffice))
		r.Get("/api/v1/admin/backoffice/webhook/failures", s.handle(s.webhookFailures))
		r.Post("/api/v1/admin/backoffice/webhook/{order}/retry", s.handle(s.retryWebhook))
		r.Get("/api/v1/admin/discovery/seen", s.handle(s.seenDevices))
		r.Get("/api/v1/admin/config", s.handle(s.configView))
	})
}

var yamlContentValue = []string{"application/yaml; charset=utf-8"}

// configView shows the configuration the daemon runs with, the environment and flags applied,
// secrets as xxxxx: what shop IT checks when a setting seems not to have taken.
func (s *Server) configView(w http.ResponseWriter, r *http.Request) error {
	if s.o.ConfigView == "" {
		return refuse(probNotFound, "this server has no configuration view")
	}
	writeTyped(w, http.StatusOK, yamlContentValue, []byte(s.o.ConfigView))
	return nil
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
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeBody(w, http.StatusOK, healthyBody)
	return nil
}

// readyTimeout bounds the database probe of readyz: a database that takes longer is not ready.
const readyTimeout = 2 * time.Second

// readyLogBudget is how many failed readyz probes are logged a minute.
const readyLogBudget = 6

// readyz says the server can answer from its database. The probe is the cheapest query there is:
// a primary key lookup of an id that the contract forbids, so its only possible answers are "not
// found" (ready) and an error. A server whose disk failed a flush of the database's log answers
// no order as stored any more (storage.FlushFailed): not ready either.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.o.DB.FlushFailed(); err != nil {
		if log, dropped := s.readyLog.Allow(s.now()); log {
			s.log.LogAttrs(r.Context(), slog.LevelError, "readyz: the disk failed a write of the local database", slog.Any(keyError, err), slog.Int("not_logged", dropped))
		}
		return refuse(probNotReady, "the disk failed a write of the local database; the server's log says why")
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if _, err := s.o.DB.Get(ctx, cloudapi.Settings, ""); !errors.Is(err, storage.ErrNotFound) {
		// The route needs no credential: the reason (which may name a file) goes to the
		// server's log, a few lines a minute however often a load balancer asks.
		if log, dropped := s.readyLog.Allow(s.now()); log {
			if err == nil {
				err = errors.New("the probe found a row where none can be")
			}
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "readyz: the local database does not answer", slog.Any(keyError, err), slog.Int("not_logged", dropped))
		}
		return refuse(probNotReady, "the local database does not answer; the server's log says why")
	}
	writeBody(w, http.StatusOK, healthyBody)
	return nil
}

// statusQuarantine is how many quarantined feed lines the status shows, newest first.
const statusQuarantine = 20

type statusDoc struct {
	ServerID      string                    `json:"server_id"`
	ShopName      string                    `json:"shop_name"`
	Version       string                    `json:"version"`
	StartedAt     time.Time                 `json:"started_at"`
	UptimeSeconds int64                     `json:"uptime_seconds"`
	Goroutines    int                       `json:"goroutines"` // flat in a steady shop; growth is a leak (bench soak watches it)
	WAN           WANStatus                 `json:"wan"`
	Collections   []collectionStatus        `json:"collections"`
	Quarantine    []storage.QuarantineEntry `json:"quarantine"`
	Mode          string                    `json:"mode"` // test or production
	Orders        storage.OrderStats        `json:"orders"`
	Upload        *outbox.State             `json:"upload"`     // null when sync is off
	ServiceBus    *servicebus.Status        `json:"servicebus"` // null when Service Bus is off
	BackOffice    *backoffice.Status        `json:"backoffice"` // null when the daemon has none
	Backup        *backup.Status            `json:"backup"`     // null when backup.dir is empty
	Discovery     discovery.Status          `json:"discovery"`  // each part null when off
	ReadCache     *storage.ReadCacheStats   `json:"read_cache"` // null when lan.read_cache_mb is 0
	Media         *media.Status             `json:"media"`      // null when the server has no media service
	Devices       devices.Summary           `json:"devices"`
	Alerts        *alerts.Status            `json:"alerts"`        // null when the daemon has none
	LogShipping   *logship.Status           `json:"logs_shipping"` // null when logs.ship.enabled is false
	Support       *support.Status           `json:"support"`       // null when support.servicebus.enabled is false
}

// Alerts is what the status needs of the alerts by e-mail (package ops/alerts).
type Alerts interface {
	// Status reports the open alerts and the mail queue; its error is the database's.
	Status(ctx context.Context) (alerts.Status, error)
}

var _ Alerts = (*alerts.Alerts)(nil)

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
func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	doc, err := s.statusDocument(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, doc)
}

// StatusDocument is what GET /api/v1/status answers (the support channel's diagnostics sends
// it).
func (s *Server) StatusDocument(ctx context.Context) (any, error) { return s.statusDocument(ctx) }

func (s *Server) statusDocument(ctx context.Context) (statusDoc, error) {
	now := s.now()
	doc := statusDoc{
		ServerID:      s.o.ServerID,
		ShopName:      s.o.ShopName,
		Version:       s.o.Version,
		StartedAt:     s.o.StartedAt.UTC(),
		UptimeSeconds: int64(max(now.Sub(s.o.StartedAt), 0) / time.Second),
		Goroutines:    runtime.NumGoroutine(),
		WAN:           WANStatus{State: "unknown"},
	}
	if s.o.WAN != nil {
		doc.WAN = s.o.WAN()
	}
	var err error
	if doc.Collections, err = s.collectionsStatus(ctx, now); err != nil {
		return doc, err
	}
	if doc.Quarantine, err = s.quarantineStatus(ctx); err != nil {
		return doc, err
	}
	s.componentsStatus(&doc)
	if err := s.serviceStatus(ctx, &doc); err != nil {
		return doc, err
	}
	if doc.Devices, err = s.o.Devices.Summary(ctx); err != nil {
		return doc, fmt.Errorf("list devices: %w", err)
	}
	if doc.Orders, err = s.o.DB.OrderStats(ctx); err != nil {
		return doc, fmt.Errorf("count orders: %w", err)
	}
	return doc, nil
}

// collectionsStatus is how far behind each collection of the catalog is.
func (s *Server) collectionsStatus(ctx context.Context, now time.Time) ([]collectionStatus, error) {
	out := make([]collectionStatus, 0, len(cloudapi.Collections))
	for _, name := range cloudapi.Collections {
		st, _ := s.o.DB.FeedState(name)
		rows, err := s.o.DB.Count(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("count %s: %w", name, err)
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
		out = append(out, cs)
	}
	return out, nil
}

// quarantineStatus is the newest feed lines that were set aside, never null.
func (s *Server) quarantineStatus(ctx context.Context) ([]storage.QuarantineEntry, error) {
	q, err := s.o.DB.Quarantine(ctx, "", statusQuarantine)
	if err != nil {
		return nil, fmt.Errorf("list quarantine: %w", err)
	}
	for i := range q {
		q[i].At = q[i].At.UTC()
	}
	if q == nil {
		q = []storage.QuarantineEntry{}
	}
	return q, nil
}

// componentsStatus fills in the mode and what the other components report of themselves; a
// component the daemon does not run stays null.
func (s *Server) componentsStatus(doc *statusDoc) {
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
	if s.o.Backups != nil {
		b := s.o.Backups()
		doc.Backup = &b
	}
	if s.o.LogShipping != nil {
		ls := s.o.LogShipping()
		doc.LogShipping = &ls
	}
	if s.o.Support != nil {
		sp := s.o.Support()
		doc.Support = &sp
	}
	if rc, ok := s.o.DB.ReadCacheStats(); ok {
		doc.ReadCache = &rc
	}
}

// serviceStatus fills in what the media service and the alerts report, which reading can fail;
// a service the daemon does not run stays null.
func (s *Server) serviceStatus(ctx context.Context, doc *statusDoc) error {
	if s.o.Media != nil {
		ms, err := s.o.Media.Status(ctx)
		if err != nil {
			return fmt.Errorf("media status: %w", err)
		}
		doc.Media = &ms
	}
	if s.o.Alerts != nil {
		st, err := s.o.Alerts.Status(ctx)
		if err != nil {
			return fmt.Errorf("alerts status: %w", err)
		}
		doc.Alerts = &st
	}
	return nil
}

// backOfficeRunTimeout bounds an "export now": a run in progress is waited for first.
const backOfficeRunTimeout = 2 * time.Minute

var (
	probBackOffice        = problemType{"backoffice-failed", "Back-office run failed", http.StatusBadGateway}
	probBackOfficeTimeout = problemType{"backoffice-timeout", "Back-office run did not end in time", http.StatusGatewayTimeout}
	errNoBackOffice       = refuse(probNotFound, "this server has no back-office exchange")
)

// runBackOffice exports and imports now instead of at the next scheduled time, and answers the
// back office's status afterwards. A failed run is the ERP's or the drop folder's, not the
// server's: its reason is the answer's detail, and the log's. The run lasts as long as the
// admin's request: a client that hangs up stops it where it is.
func (s *Server) runBackOffice(w http.ResponseWriter, r *http.Request) error {
	if s.o.BackOffice == nil {
		return errNoBackOffice
	}
	// The run may outlast lan.write_timeout, set when the request was read: the answer gets a
	// deadline of its own once the run ends.
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(r.Context(), backOfficeRunTimeout)
	defer cancel()
	err := s.o.BackOffice.RunOnce(ctx)
	if s.o.WriteTimeout > 0 {
		rc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
	}
	switch {
	case errors.Is(err, backoffice.ErrCutShort) && r.Context().Err() != nil:
		s.log.Warn("backoffice: run started by an admin stopped: the admin's request ended; what is left goes at the next scheduled run")
		return err
	case errors.Is(err, backoffice.ErrCutShort):
		s.log.Warn("backoffice: run started by an admin did not end in time; what is left goes at the next scheduled run", slog.Duration("waited", backOfficeRunTimeout))
		return refuse(probBackOfficeTimeout, fmt.Sprintf("the run (and a run in progress before it) did not end within %v; what is left goes at the next scheduled run, and the status shows its outcome", backOfficeRunTimeout))
	case err != nil:
		s.log.Warn("backoffice: run started by an admin failed", slog.String(keyError, err.Error()))
		return refuse(probBackOffice, err.Error())
	}
	s.log.Info("backoffice: run started by an admin")
	return writeJSON(w, http.StatusOK, s.o.BackOffice.Status())
}

// webhookFailures lists the orders the ERP's webhook refused for good, with its answers.
func (s *Server) webhookFailures(w http.ResponseWriter, r *http.Request) error {
	if s.o.BackOffice == nil {
		return errNoBackOffice
	}
	q, err := query(r, "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	failures, err := s.o.BackOffice.WebhookFailures(r.Context(), limit)
	if err != nil {
		return fmt.Errorf("list webhook failures: %w", err)
	}
	if failures == nil {
		failures = []storage.ExportFailure{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Items []storage.ExportFailure `json:"items"`
	}{failures})
}

// retryWebhook sends a refused order to the webhook again at the next run, once the cause is
// fixed in the ERP.
func (s *Server) retryWebhook(w http.ResponseWriter, r *http.Request) error {
	id, err := s.retryWebhookOrder(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct {
		OrderID string `json:"order_id"`
		State   string `json:"state"`
	}{id, storage.ExportPending})
}

// retryWebhookOrder forgets the webhook's refusal of the order the route names.
func (s *Server) retryWebhookOrder(r *http.Request) (string, error) {
	if s.o.BackOffice == nil {
		return "", errNoBackOffice
	}
	id, _ := pathParam(r, "order")
	ok, err := s.o.BackOffice.RetryWebhook(r.Context(), id)
	if err != nil {
		return "", fmt.Errorf("retry webhook: %w", err)
	}
	if !ok {
		return "", refuse(probNotFound, "order "+strconv.Quote(id)+" was not refused by the webhook")
	}
	s.o.Logger.Info("backoffice: webhook refusal cleared by an admin", slog.String("order_id", id))
	return id, nil
}

// rejectedOutbox lists what the cloud refused for good, newest first, with the reasons.
func (s *Server) rejectedOutbox(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	entries, err := s.o.DB.RejectedOutbox(r.Context(), limit)
	if err != nil {
		return fmt.Errorf("list rejected outbox: %w", err)
	}
	return writeJSON(w, http.StatusOK, struct {
		Items []storage.OutboxEntry `json:"items"`
	}{entries})
}

// probEarlierRefused answers a retry of an order's event while an earlier one is still refused.
var probEarlierRefused = problemType{"earlier-refused", "An earlier event of the order is still refused", http.StatusConflict}

// retryOutbox puts a rejected entry back in the upload queue, once the cause is fixed, with the
// later refused events of its order.
func (s *Server) retryOutbox(w http.ResponseWriter, r *http.Request) error {
	raw, _ := pathParam(r, "seq")
	seq, ok := wholeNumber(raw)
	if !ok || seq <= 0 {
		return refuse(probBadParameter, "seq: "+strconv.Quote(raw)+" is not a positive whole number")
	}
	n, err := s.o.DB.RetryOutbox(r.Context(), seq)
	var earlier *storage.ErrEarlierRefused
	if errors.As(err, &earlier) {
		return refuse(probEarlierRefused, earlier.Error())
	}
	if err != nil {
		return fmt.Errorf("retry outbox entry: %w", err)
	}
	if n == 0 {
		return refuse(probNotFound, fmt.Sprintf("no rejected outbox entry %d", seq))
	}
	s.o.Logger.Info("outbox: rejected entry queued again by an admin", slog.Int64("seq", seq), slog.Int64("requeued", n))
	return writeJSON(w, http.StatusOK, struct {
		Seq      int64  `json:"seq"`
		State    string `json:"state"`
		Requeued int64  `json:"requeued"`
	}{seq, storage.OutboxPending, n})
}

// retryAllOutbox puts every rejected entry back in the upload queue, in the order they happened.
func (s *Server) retryAllOutbox(w http.ResponseWriter, r *http.Request) error {
	n, err := s.o.DB.RetryRejectedOutbox(r.Context())
	if err != nil {
		return fmt.Errorf("retry outbox: %w", err)
	}
	s.o.Logger.Info("outbox: every rejected entry queued again by an admin", slog.Int64("requeued", n))
	return writeJSON(w, http.StatusOK, struct {
		Requeued int64 `json:"requeued"`
	}{n})
}

// seenDevices lists the devices that said hello on the LAN (docs/discovery.md), so that shop IT
// can pair the ones it recognises; those already paired are marked with their device id.
func (s *Server) seenDevices(w http.ResponseWriter, r *http.Request) error {
	items := []discovery.SeenDevice{}
	if s.o.Discovery != nil {
		items = append(items, s.o.Discovery.Seen()...)
	}
	if len(items) > 0 {
		list, err := s.o.Devices.List(r.Context())
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		markPaired(items, list)
	}
	return writeJSON(w, http.StatusOK, struct {
		Items []discovery.SeenDevice `json:"items"`
	}{items})
}

// markPaired fills in PairedAs of the devices seen on the LAN. A hello carries the device's own
// id, pairing gives it another: the two meet at the address and push port the server would dial.
func markPaired(items []discovery.SeenDevice, list []devices.Device) {
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
