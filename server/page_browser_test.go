package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/storeedge/storeedge/backoffice"
	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/tools/testenv"
)

// browserTimeout bounds each step in the browser: a step waits for what the page shows, so it
// ends as soon as the page shows it.
const browserTimeout = 20 * time.Second

// artifactsDir is where the browser tests keep their screenshots: $STOREEDGE_ARTIFACTS, or
// bin/artifacts in the repository.
func artifactsDir(t *testing.T, name string) string {
	t.Helper()
	root := os.Getenv("STOREEDGE_ARTIFACTS")
	if root == "" {
		root = filepath.Join("..", "bin", "artifacts")
	}
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is a headless Chromium (Debian's package) with one tab.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := testenv.Require(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("lang", "en-GB"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, shots: artifactsDir(t, "statuspage")}
	// The first run starts the browser; it must not carry a step's timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("browser: start %s: %v", exe, err)
	}
	return b
}

// must runs the steps, each bounded by browserTimeout, and fails the test with what it was doing.
func (b *browser) must(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("browser: %s: %v; the page says:\n%s", what, err, b.pageText())
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// waitJS waits until a JavaScript expression about the page is true; the page changes as its
// stream brings snapshots, so this waits for a signal, not for a time.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
			b.t.Fatalf("browser: %s: not seen within %s (%s; last error %v)", what, browserTimeout, expr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pageText is what the page shows, for the message of a failed step.
func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return err.Error()
	}
	return s
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: lossless, PNG
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
}

// TestStatusPageInABrowser logs in to the status page in headless Chromium, reads what it shows
// of a shop with devices, an unpaired device on the LAN and an order the ERP refused, acts on
// each (a pairing code a device then uses, a revocation, a retry) and logs out.
func TestStatusPageInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unknown customer account", http.StatusUnprocessableEntity)
	}))
	defer erp.Close()
	udp := startDiscovery(t)
	var agent *backoffice.Agent
	f := newFixture(t, func(o *Options) {
		agent = backoffice.New(backoffice.Options{DB: o.DB, Shop: config.Shop{Mode: config.ModeProduction},
			Config: config.BackOffice{Schedule: "@hourly", Webhook: config.BackOfficeWebhook{URL: erp.URL, Timeout: 5 * time.Second}}})
		o.BackOffice = agent
		o.Discovery = discoveryBoth{udp}
	})
	refused := decodeOrder(t, f.order(t, "pos", "k", `{"lines":[{"product_id":"P0002","quantity":1}]}`), http.StatusCreated).Order
	agent.RunOnce(t.Context()) // the ERP refuses the order: a failed run, the refusal kept
	if failures, err := agent.WebhookFailures(t.Context(), 10); err != nil || len(failures) != 1 {
		t.Fatalf("refusals before the page: %+v, %v", failures, err)
	}
	if err := discovery.SayHello(discovery.Hello{DeviceID: "kiosk-7", Kind: "kiosk", Name: "Back door kiosk", PushPort: 18087}, udp.Addr().AddrPort()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.srv.Handler())
	t.Cleanup(srv.Close) // after the browser is gone, which holds the page's stream
	b := newBrowser(t)

	// The login form refuses a wrong token, and says so.
	b.must("open the page", chromedp.Navigate(srv.URL+"/status"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.must("log in wrong", chromedp.SendKeys(chromedp.CSS("#token"), "guess"), chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	if msg := b.text("#login-error"); !strings.Contains(msg, "not this server's admin token") {
		t.Fatalf("wrong token: the form says %q", msg)
	}
	b.screenshot("1-login-refused")
	b.must("log in", chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken), chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#device-rows")))
	b.waitJS("live", `document.getElementById('live').textContent === 'live'`)
	b.waitJS("the unpaired kiosk", `document.getElementById('unpaired-rows').textContent.includes('Back door kiosk')`)
	readStatusPage(t, b, refused.Number)
	b.screenshot("2-status")

	pairFromThePage(t, b, f)
	revokeFromThePage(t, b, f)
	retryFromThePage(t, b, agent, refused.ID)

	// On a tablet held upright nothing spills sideways.
	b.must("tablet", chromedp.EmulateViewport(800, 1280, chromedp.EmulateScale(2), chromedp.EmulatePortrait))
	b.waitJS("fits a tablet", `document.documentElement.scrollWidth <= window.innerWidth`)
	b.screenshot("6-tablet")
	b.must("desktop again", chromedp.EmulateReset())

	b.must("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.screenshot("7-logged-out")
}

func startDiscovery(t *testing.T) *discovery.Server {
	t.Helper()
	udp, err := discovery.NewServer(discovery.Options{Addr: "127.0.0.1:0", Interfaces: []string{"lo"}, HTTPPort: 80,
		Info: discovery.ServerInfo{ServerID: "srv-test", Name: "Shop"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := udp.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- udp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("discovery: %v", err)
		}
	})
	return udp
}

// readStatusPage checks what the page says of the fixture's shop.
func readStatusPage(t *testing.T, b *browser, refusedNumber int64) {
	t.Helper()
	want := map[string]string{
		"#orders-today":    "1",
		"#outbox-backlog":  "1", // the order, with no uploader to take it
		"#devices-online":  "1", // pos, which just made the order
		"#devices-offline": "0",
		"#wan-cloud":       "unknown",
		"#wan-servicebus":  "disabled",
		"#wan-logs":        "disabled",
		"#wan-support":     "disabled",
		"#alert-count":     "none",
	}
	if visible, _ := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!document.getElementById('mode').hidden && document.getElementById('mode').offsetParent !== null`)); visible {
		t.Error("the page says TEST MODE of a shop in production")
	}
	for sel, v := range want {
		if got := b.text(sel); got != v {
			t.Errorf("%s shows %q, want %q", sel, got, v)
		}
	}
	rows := b.text("#collections")
	if !strings.Contains(rows, "products") || !strings.Contains(rows, "250") || !strings.Contains(rows, "1 min") {
		t.Errorf("catalog rows %q: want products, 250 rows, synced 1 min ago", rows)
	}
	if devs := b.text("#device-rows"); !strings.Contains(devs, "pos") || !strings.Contains(devs, "online") {
		t.Errorf("device rows %q", devs)
	}
	if hooks := b.text("#webhook-rows"); !strings.Contains(hooks, fmt.Sprintf("#%d", refusedNumber)) || !strings.Contains(hooks, "unknown customer account") {
		t.Errorf("refused webhook orders %q", hooks)
	}
	// The back office's exchange: the webhook target, its one refused order, and the failed run.
	if bo := b.text("#backoffice-rows"); !strings.Contains(bo, "webhook") || !strings.Contains(bo, "127.0.0.1") || !strings.HasSuffix(strings.TrimSpace(bo), "1") {
		t.Errorf("back-office targets %q: want the webhook, its host, 1 refused", bo)
	}
	if run := b.text("#backoffice-run"); !strings.Contains(run, "ago") {
		t.Errorf("back-office last run %q", run)
	}
}

// pairFromThePage creates a pairing code on the page and pairs a device with it: the device
// shows in the list.
func pairFromThePage(t *testing.T, b *browser, f *fixture) {
	t.Helper()
	b.must("new pairing code", chromedp.Click(chromedp.CSS("#new-code")), chromedp.WaitVisible(chromedp.CSS("#pairing-code")))
	code := b.text("#pairing-code")
	if !regexp.MustCompile(`^\d{4}-\d{4}$`).MatchString(code) {
		t.Fatalf("pairing code shown %q", code)
	}
	b.waitJS("QR code drawn", `document.getElementById('pairing-qr').naturalWidth >= 200`)
	b.screenshot("3-pairing-code")
	if _, err := f.dm.Pair(context.Background(), devices.PairRequest{Code: code, Kind: "tablet", Name: "Counter tablet"}, "127.0.0.1"); err != nil {
		t.Fatalf("pair with the code the page shows: %v", err)
	}
	b.waitJS("the new device", `document.getElementById('device-rows').textContent.includes('Counter tablet')`)
}

// revokeFromThePage revokes the fixture's pos device with two taps; its credential then stops
// working.
func revokeFromThePage(t *testing.T, b *browser, f *fixture) {
	t.Helper()
	pos := f.device(t, "pos")
	row := fmt.Sprintf(`tr[data-device-id="%s"] button`, pos.DeviceID)
	b.must("revoke, first tap", chromedp.Click(chromedp.CSS(row)))
	if label := b.text(row); label != "Tap again to revoke" {
		t.Fatalf("after one tap the button says %q", label)
	}
	b.screenshot("4-revoke-confirm")
	// The next snapshot builds the table anew (the marked row goes): the button stays armed for
	// its 5 seconds, so that a second tap after it still revokes (operations.md).
	mark := fmt.Sprintf(`document.querySelector('tr[data-device-id="%s"]').dataset.before = "1"`, pos.DeviceID)
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](mark)); err != nil {
		t.Fatal(err)
	}
	b.waitJS("the next snapshot", fmt.Sprintf(`document.querySelector('tr[data-device-id="%s"]').dataset.before === undefined`, pos.DeviceID))
	if label := b.text(row); label != "Tap again to revoke" {
		t.Fatalf("after the next snapshot the button says %q: the first tap was forgotten", label)
	}
	b.must("revoke, second tap", chromedp.Click(chromedp.CSS(row)))
	b.waitJS("the device gone", fmt.Sprintf(`document.querySelector('tr[data-device-id="%s"]') === null`, pos.DeviceID))
	if _, err := f.dm.Authenticate(pos.Token); err == nil {
		t.Fatal("the revoked device's token still works")
	}
}

// retryFromThePage sends the refused order to the ERP again; the refusal is forgotten.
func retryFromThePage(t *testing.T, b *browser, agent *backoffice.Agent, orderID string) {
	t.Helper()
	row := fmt.Sprintf(`tr[data-order-id="%s"] button`, orderID)
	b.must("retry", chromedp.Click(chromedp.CSS(row)), chromedp.Click(chromedp.CSS(row)))
	b.waitJS("the refusal gone", fmt.Sprintf(`document.querySelector('tr[data-order-id="%s"]') === null`, orderID))
	b.screenshot("5-retried")
	failures, err := agent.WebhookFailures(context.Background(), 10)
	if err != nil || len(failures) != 0 {
		t.Fatalf("after the retry: failures %+v, %v", failures, err)
	}
}

// TestStatusPageAsksForTheLoginAfterARestart: sessions live in the server's memory, so a page
// left open over a restart of the server shows the login form again by itself
// (operations.md), rather than "reconnecting…" for ever.
func TestStatusPageAsksForTheLoginAfterARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	before := newFixture(t)
	var serving atomic.Pointer[http.Handler]
	h := before.srv.Handler()
	serving.Store(&h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*serving.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	b := newBrowser(t)
	b.must("log in", chromedp.Navigate(srv.URL+"/status"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken), chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#device-rows")))
	b.waitJS("live", `document.getElementById('live').textContent === 'live'`)

	// The restart: the same database, a new server, the old one's connections gone.
	after := newFixtureDB(t, before.db)
	h2 := after.srv.Handler()
	serving.Store(&h2)
	srv.CloseClientConnections()
	b.must("the login form again", chromedp.WaitVisible(chromedp.CSS("#token")))
	b.screenshot("8-after-restart")
	b.must("log in again", chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken), chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#device-rows")))
	b.waitJS("live again", `document.getElementById('live').textContent === 'live'`)
}
