package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/ops/logship"
	"github.com/storeedge/storeedge/ops/support"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/feed"
	"github.com/storeedge/storeedge/sync/outbox"
	"github.com/storeedge/storeedge/sync/servicebus"
)

// discoveryReal puts real discovery components, as they are before their first announcement,
// behind the Discovery interface.
type discoveryReal struct {
	udp  *discovery.Server
	mdns *discovery.MDNS
}

func (d discoveryReal) Status() discovery.Status {
	udp, mdns := d.udp.Status(), d.mdns.Status()
	return discovery.Status{UDP: &udp, MDNS: &mdns}
}
func (d discoveryReal) Seen() []discovery.SeenDevice { return d.udp.Seen() }

// contractRig is a server with every part the status shows, in states a shop meets: the WAN in
// each state the syncer reports, Service Bus and uploads on, a real back office whose webhook
// refuses orders, real discovery components.
type contractRig struct {
	*fixture
	wan atomic.Value // string: the WAN state reported
}

func newContractRig(t *testing.T) *contractRig {
	t.Helper()
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unknown customer account", http.StatusUnprocessableEntity)
	}))
	t.Cleanup(erp.Close)
	udp, err := discovery.NewServer(discovery.Options{Addr: "127.0.0.1:0", Interfaces: []string{"lo"}, HTTPPort: 80,
		Info: discovery.ServerInfo{ServerID: "srv-test", Name: "Shop"}})
	if err != nil {
		t.Fatal(err)
	}
	mdns, err := discovery.NewMDNS(discovery.MDNSOptions{Instance: "srv-test", HTTPPort: 80, Info: discovery.ServerInfo{ServerID: "srv-test"}})
	if err != nil {
		t.Fatal(err)
	}
	// One stock file the ERP got right and one it did not.
	imports := t.TempDir()
	for name, body := range map[string]string{"stock-1.csv": "product_id,quantity\nP0002,37\n", "stock-2.csv": "product_id,quantity\nP0002,12.5\n"} {
		if err := os.WriteFile(filepath.Join(imports, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	media := newFakeMedia(t)
	media.add(t, "M1", []byte("a product photo"))
	rg := &contractRig{}
	rg.wan.Store(feed.StateNever)
	rg.fixture = newFixture(t, func(o *Options) {
		o.WAN = func() WANStatus {
			return WANStatus{State: rg.wan.Load().(string), LastError: "cloud: 503 Service Unavailable", Route: "direct"}
		}
		o.ServiceBus = func() servicebus.Status { return servicebus.Status{State: servicebus.LinkConnected, Queue: "orders"} }
		o.Upload = func() outbox.State { return outbox.State{} }
		o.LogShipping = func() logship.Status {
			return logship.Status{State: logship.StateRetrying, Intake: "api.logmatic.io:443", Route: "direct", Buffered: 12, LastError: "the intake answered 503"}
		}
		o.Support = func() support.Status { return supportStatusSample }
		o.Backups = func() backup.Status { return backupStatusSample }
		o.BackOffice = backoffice.New(backoffice.Options{DB: o.DB, Shop: config.Shop{Mode: config.ModeProduction},
			Config: config.BackOffice{Schedule: "@hourly", Export: config.BackOfficeExport{Dir: t.TempDir(), Format: config.ExportJSON},
				Webhook: config.BackOfficeWebhook{URL: erp.URL, Timeout: 5 * time.Second}, Import: config.BackOfficeImport{Dir: imports}},
			ImportSettle: -1})
		o.Discovery = discoveryReal{udp, mdns}
		o.ConfigView = config.Default().Redacted()
		o.Media = media
		o.Metrics = prometheus.NewRegistry()
		o.MetricsToken = testMetricsToken
	})
	return rg
}

// call makes one request through the checked front door; the credential is added as f.h does.
func (rg *contractRig) call(t *testing.T, method, target, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := rg.do(t, req)
	if rec.Code >= 300 {
		t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
	}
	return rec
}

func decodeInto[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("%s: %v", rec.Body, err)
	}
	return v
}

// TestOpenAPIAnswersOfEveryRoute calls every operation of docs/openapi.yaml successfully, in the
// states that change what the answers hold, and checks each answer against the document (the
// fixture's contract does). It fails if an operation is left uncalled, so a route added to the
// document is added here too.
func TestOpenAPIAnswersOfEveryRoute(t *testing.T) {
	rg := newContractRig(t)

	// The status before the back office's first run, then with the WAN in every state.
	for _, state := range []string{feed.StateNever, feed.StateOK, feed.StateUnreachable, feed.StateProxyError,
		feed.StateUnauthorized, feed.StateCloudError, "disabled", "unknown"} {
		rg.wan.Store(state)
		rg.call(t, "GET", "/api/v1/status", "")
	}
	rg.call(t, "GET", "/healthz", "")
	rg.call(t, "GET", "/readyz", "")
	for _, target := range []string{"/api/v1/catalog/products", "/api/v1/catalog/products/P0002", "/api/v1/catalog/barcodes/" + barcode(2),
		"/api/v1/catalog/search?q=choc", "/api/v1/catalog/categories", "/api/v1/catalog/prices", "/api/v1/catalog/prices/P0002",
		"/api/v1/catalog/stock", "/api/v1/catalog/stock/P0002", "/api/v1/catalog/media", "/api/v1/catalog/media/M1",
		"/api/v1/catalog/settings", "/api/v1/catalog/changes?since=0&limit=5"} {
		rg.call(t, "GET", target, "")
	}
	rg.call(t, "GET", "/api/v1/media/M1", "")
	rg.call(t, "HEAD", "/api/v1/media/M1", "")
	rg.call(t, "POST", "/api/v1/catalog/lookup", `{"ids":["P0002","P9999"],"barcodes":["`+barcode(3)+`"]}`)

	contractOrders(t, rg)
	contractDevices(t, rg)
	contractEvents(t, rg)
	contractStatusPage(t, rg)
	contractMetrics(t, rg)

	doc, err := apiDoc()
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for path, item := range doc.doc.Paths.Map() {
		for method := range item.Operations() {
			if op := method + " " + path; !rg.contract.answered(op, 200, 399) {
				missing = append(missing, op)
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("documented operations this test does not call successfully:\n  %s", strings.Join(missing, "\n  "))
	}
}

// contractMetrics scrapes the metrics on the admin port, the one port that serves them.
func contractMetrics(t *testing.T, rg *contractRig) {
	admin := rg.contract.wrap(rg.srv.listener(serviceAdmin))
	req := httptest.NewRequest(http.MethodGet, metricsPath, nil)
	req.Header.Set("Authorization", "Bearer "+testMetricsToken)
	rec := httptest.NewRecorder()
	admin.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "storeedge_servicebus_connected 1") {
		t.Fatalf("GET %s: %d\n%s", metricsPath, rec.Code, rec.Body)
	}
}

// contractOrders makes an order live its whole documented life: created (and retried), listed,
// moved on, exported to the files, refused by the webhook and offered to it again, uploaded and
// refused by the cloud, and queued for upload again.
func contractOrders(t *testing.T, rg *contractRig) {
	body := `{"lines":[{"product_id":"P0002","quantity":2}],"note":"no sugar","customer":{"name":"Ana"}}`
	created := decodeInto[orderAnswer](t, rg.call(t, "POST", "/api/v1/orders", body, headerIdempotencyKey, "k-1"))
	rg.call(t, "POST", "/api/v1/orders", body, headerIdempotencyKey, "k-1")
	id := created.Order.ID
	rg.call(t, "POST", "/api/v1/orders/"+id+"/status", `{"status":"accepted","note":"at the counter"}`)
	rg.call(t, "GET", "/api/v1/orders?limit=1", "")

	run := decodeInto[backoffice.Status](t, rg.call(t, "POST", "/api/v1/admin/backoffice/run", ""))
	if imp := run.Import; imp == nil || imp.LastDone == nil || imp.LastFailed == nil {
		t.Fatalf("after the run: import %+v, want a file done and one failed", imp)
	}
	rg.call(t, "GET", "/api/v1/admin/backoffice/webhook/failures", "")
	rg.call(t, "POST", "/api/v1/admin/backoffice/webhook/"+id+"/retry", "")

	ctx := context.Background()
	pending, err := rg.db.PendingOutbox(ctx, 10)
	if err != nil || len(pending) == 0 {
		t.Fatalf("outbox: %v %v", pending, err)
	}
	rejected := map[string]string{pending[0].Key: "unknown product P0002"}
	if err := rg.db.CompleteOutbox(ctx, storage.OutboxResult{Delivered: []string{pending[1].Key}, Rejected: rejected}); err != nil {
		t.Fatal(err)
	}
	rg.call(t, "GET", "/api/v1/admin/outbox/rejected", "")
	rg.call(t, "POST", fmt.Sprintf("/api/v1/admin/outbox/%d/retry", pending[0].Seq), "")
	rg.call(t, "POST", "/api/v1/admin/outbox/retry", "")

	ledger := decodeInto[orderAnswer](t, rg.call(t, "GET", "/api/v1/orders/"+id, "")).Ledger
	var stages []string
	for _, e := range ledger {
		stages = append(stages, e.Stage)
	}
	for _, want := range []string{orders.StageReceived, orders.StageStored, orders.StageStatus, orders.StageExported,
		orders.StageExportFailed, orders.StageExportRetry, orders.StageUploaded, orders.StageUploadRejected} {
		if !slices.Contains(stages, want) {
			t.Errorf("the order's ledger %v lacks %s: the answer checked did not hold it", stages, want)
		}
	}
	rg.call(t, "GET", "/api/v1/status", "")
}

// contractDevices pairs a device, which then reports itself; an admin lists, renames and revokes
// it and sends it a command.
func contractDevices(t *testing.T, rg *contractRig) {
	code := decodeInto[struct {
		Code string `json:"code"`
	}](t, rg.call(t, "POST", "/api/v1/admin/pairing-codes", `{"ttl":"30m"}`)).Code
	creds := decodeInto[struct {
		DeviceID string `json:"device_id"`
		Token    string `json:"token"`
	}](t, rg.call(t, "POST", "/api/v1/devices/pair", `{"code":"`+code+`","kind":"kiosk","name":"Kiosk 1","capabilities":["orders"]}`))
	bearer := "Bearer " + creds.Token
	rg.call(t, "POST", "/api/v1/devices/heartbeat", `{"app_version":"2.1","push_port":18081}`, "Authorization", bearer)
	rg.call(t, "GET", "/api/v1/devices/me", "", "Authorization", bearer)
	rg.call(t, "GET", "/api/v1/admin/devices", "")
	rg.call(t, "GET", "/api/v1/admin/devices/"+creds.DeviceID, "")
	rg.call(t, "PATCH", "/api/v1/admin/devices/"+creds.DeviceID, `{"name":"Kiosk by the door"}`)
	cmds := decodeInto[struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}](t, rg.call(t, "POST", "/api/v1/admin/commands", `{"target":{"device_id":"`+creds.DeviceID+`"},"type":"ping","ttl":"1h"}`))
	rg.call(t, "GET", "/api/v1/admin/commands?limit=1", "")
	rg.call(t, "GET", "/api/v1/admin/commands/"+cmds.Items[0].ID, "")
	rg.call(t, "GET", "/api/v1/admin/discovery/seen", "")
	rg.call(t, "GET", "/api/v1/admin/config", "")
	rg.call(t, "POST", "/api/v1/admin/devices/"+creds.DeviceID+"/revoke", "")
	rg.call(t, "GET", "/api/v1/status", "")
}

// contractEvents reads the start of the event stream: from the start of the log, which holds
// the orders contractOrders made, and with no position, which names the newest event first.
func contractEvents(t *testing.T, rg *contractRig) {
	ts := httptest.NewServer(rg.h)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, lastID := range []string{"0", ""} {
		c := openSSE(t, ctx, ts.URL+"/api/v1/events", lastID, rg.device(t, "pos").Token)
		if e := c.next(t); (lastID == "0") != (e.typ == "order.created") {
			t.Errorf("stream from %q began with %+v", lastID, e)
		}
		c.resp.Body.Close()
	}
}

// contractStatusPage uses the status page as a browser does: the login form, the login, the
// assets, the stream and each action, then the logout.
func contractStatusPage(t *testing.T, rg *contractRig) {
	c := &pageClient{t: t, h: rg.raw}
	c.open()
	for _, name := range []string{"page.js", "page.css"} {
		c.do(httptest.NewRequest(http.MethodGet, "/status/assets/"+name, nil))
	}
	if rec := c.login(testAdminToken); rec.Code != http.StatusSeeOther {
		t.Fatalf("login: %d", rec.Code)
	}
	c.open()
	if ev, _ := c.firstEvent(); ev != "snapshot" {
		t.Fatalf("status page stream: %q", ev)
	}
	if rec := c.action("/status/pairing-codes", c.csrf, ""); rec.Code != http.StatusCreated {
		t.Fatalf("pairing code: %d %s", rec.Code, rec.Body)
	}
	// The webhook refuses the order again at the next run; the page offers it once more.
	rg.call(t, "POST", "/api/v1/admin/backoffice/run", "")
	failures := decodeInto[struct {
		Items []storage.ExportFailure `json:"items"`
	}](t, rg.call(t, "GET", "/api/v1/admin/backoffice/webhook/failures", ""))
	if len(failures.Items) == 0 {
		t.Fatal("no refused order to retry from the page")
	}
	if rec := c.action("/status/webhook/"+failures.Items[0].OrderID+"/retry", c.csrf, ""); rec.Code != http.StatusOK {
		t.Fatalf("retry from the page: %d %s", rec.Code, rec.Body)
	}
	if rec := c.action("/status/devices/"+rg.device(t, "pos").DeviceID+"/revoke", c.csrf, ""); rec.Code != http.StatusOK {
		t.Fatalf("revoke from the page: %d %s", rec.Code, rec.Body)
	}
	// On the admin port the page is also at /.
	admin := &pageClient{t: t, h: rg.contract.wrap(rg.srv.listener(serviceAdmin)), cookie: c.cookie}
	if rec := admin.do(httptest.NewRequest(http.MethodGet, "/", nil)); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "csrf-token") {
		t.Fatalf("GET / on the admin port: %d", rec.Code)
	}
	form := url.Values{"csrf": {c.csrf}}
	req := httptest.NewRequest(http.MethodPost, "/status/logout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := c.do(req); rec.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", rec.Code)
	}
}
