package server

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

// pageClient drives the status page the way a browser does: the session cookie it was given,
// the CSRF token of the page it last loaded.
type pageClient struct {
	t      *testing.T
	h      http.Handler
	cookie *http.Cookie
	csrf   string
}

func (c *pageClient) do(req *http.Request) *httptest.ResponseRecorder {
	c.t.Helper()
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	return rec
}

func (c *pageClient) login(token string) *httptest.ResponseRecorder {
	c.t.Helper()
	form := url.Values{"token": {token}, "next": {"/status"}}
	req := httptest.NewRequest(http.MethodPost, "/status/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://example.com")
	rec := c.do(req)
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == pageCookie {
			c.cookie = ck
		}
	}
	return rec
}

// viaTLSProxy is h behind a reverse proxy that adds TLS and says so (X-Forwarded-Proto).
func viaTLSProxy(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-Forwarded-Proto", "https")
		h.ServeHTTP(w, r)
	})
}

// loginOverTLS logs in through h (viaTLSProxy) and returns the Secure session cookie it gave,
// or nil.
func loginOverTLS(t *testing.T, h http.Handler) *http.Cookie {
	t.Helper()
	for _, ck := range (&pageClient{t: t, h: h}).login(testAdminToken).Result().Cookies() {
		if ck.Name == pageCookieTLS {
			return ck
		}
	}
	return nil
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// open loads the page and keeps its CSRF token.
func (c *pageClient) open() string {
	c.t.Helper()
	rec := c.do(httptest.NewRequest(http.MethodGet, "/status", nil))
	if rec.Code != http.StatusOK {
		c.t.Fatalf("GET /status: %d %s", rec.Code, rec.Body)
	}
	if m := csrfMeta.FindStringSubmatch(rec.Body.String()); m != nil {
		c.csrf = m[1]
	}
	return rec.Body.String()
}

func (c *pageClient) action(path, csrf, origin string) *httptest.ResponseRecorder {
	c.t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, nil)
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return c.do(req)
}

// firstEvent reads the first event of the page's stream.
func (c *pageClient) firstEvent() (string, string) {
	c.t.Helper()
	srv := httptest.NewServer(c.h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/status/events", nil)
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		c.t.Fatalf("status stream: %d %q", resp.StatusCode, ct)
	}
	var event, data string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && event != "":
			return event, data
		}
	}
	c.t.Fatalf("stream ended without an event: %v", sc.Err())
	return "", ""
}

func TestStatusPageLogin(t *testing.T) {
	f := newFixture(t)
	c := &pageClient{t: t, h: f.raw}

	body := c.open()
	if !strings.Contains(body, `name="token"`) || strings.Contains(body, "csrf-token") {
		t.Fatalf("without a session the page is not the login form:\n%s", body)
	}
	csp := c.do(httptest.NewRequest(http.MethodGet, "/status", nil)).Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}

	rec := c.login("not-the-token")
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "not this server&#39;s admin token") || c.cookie != nil {
		t.Fatalf("wrong token: %d cookie %v\n%s", rec.Code, c.cookie, rec.Body)
	}

	rec = c.login(testAdminToken)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/status" {
		t.Fatalf("login: %d Location %q", rec.Code, rec.Header().Get("Location"))
	}
	if c.cookie == nil || !c.cookie.HttpOnly || c.cookie.SameSite != http.SameSiteStrictMode || c.cookie.Path != "/" || c.cookie.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", c.cookie)
	}
	// Through a reverse proxy that adds TLS, the cookie is Secure (never sent over plain HTTP),
	// under a name of its own (a browser keeps a plain-HTTP login from overwriting it), and opens
	// the page.
	tls := &pageClient{t: t, h: viaTLSProxy(f.raw)}
	rec = tls.login(testAdminToken)
	var secure *http.Cookie
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == pageCookieTLS {
			secure = ck
		}
	}
	if rec.Code != http.StatusSeeOther || secure == nil || !secure.Secure || !secure.HttpOnly || tls.cookie != nil {
		t.Fatalf("a login through a TLS proxy: %d, cookies %v; want a Secure %s alone", rec.Code, rec.Result().Cookies(), pageCookieTLS)
	}
	page := httptest.NewRequest(http.MethodGet, "/status", nil)
	page.AddCookie(secure)
	if got := tls.do(page); got.Code != http.StatusOK || !strings.Contains(got.Body.String(), "csrf-token") {
		t.Fatalf("the page with the Secure session cookie: %d", got.Code)
	}
	if strings.Contains(c.cookie.Value, testAdminToken) {
		t.Fatal("the session cookie carries the admin token")
	}
	body = c.open()
	if c.csrf == "" || !strings.Contains(body, "Lyon Part-Dieu") || !strings.Contains(body, `id="device-rows"`) {
		t.Fatalf("logged in, the page is not the status page:\n%s", body)
	}

	// Logging out ends the session on the server, not only in the browser.
	old := *c.cookie
	form := url.Values{"csrf": {c.csrf}, "next": {"/status"}}
	req := httptest.NewRequest(http.MethodPost, "/status/logout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := c.do(req); rec.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	c.cookie = &old
	if body := c.open(); !strings.Contains(body, `name="token"`) {
		t.Fatal("the old cookie still opens the page after logout")
	}
	if ev, _ := c.firstEvent(); ev != "logout" {
		t.Fatalf("stream after logout sent %q, want logout", ev)
	}
	// Log out again with the ended session (a page left open over a restart): the browser is
	// taken to the login form, not shown an error document.
	req = httptest.NewRequest(http.MethodPost, "/status/logout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := c.do(req); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/status" {
		t.Fatalf("logout of an ended session: %d %s %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	// A form on another site's page, which the browser sends without the Strict cookie, does
	// not log the browser out: no cookie is cleared.
	req = httptest.NewRequest(http.MethodPost, "/status/logout", strings.NewReader(url.Values{"next": {"/status"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	cross := httptest.NewRecorder()
	f.raw.ServeHTTP(cross, req)
	if cross.Code != http.StatusForbidden || cross.Header().Get("Set-Cookie") != "" {
		t.Fatalf("a cross-site logout: %d, Set-Cookie %q", cross.Code, cross.Header().Get("Set-Cookie"))
	}
}

// A browser that logged in on the plain admin port and through a TLS proxy holds both cookies,
// and its requests through the proxy carry both: Log out ends both sessions and clears both
// cookies, so that neither opens the page after it (operations.md).
func TestStatusPageLogoutEndsEverySessionTheBrowserHolds(t *testing.T) {
	f := newFixture(t)
	viaTLS := viaTLSProxy(f.raw)
	plain := &pageClient{t: t, h: f.raw}
	plain.login(testAdminToken)
	secure := loginOverTLS(t, viaTLS)
	if plain.cookie == nil || secure == nil {
		t.Fatalf("the test's premise: two logins, cookies %v and %v", plain.cookie, secure)
	}
	both := &pageClient{t: t, h: viaTLS, cookie: secure}
	withBoth := func(method, target string, body io.Reader) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, body)
		req.AddCookie(plain.cookie)
		return both.do(req)
	}
	csrf := csrfMeta.FindStringSubmatch(withBoth(http.MethodGet, "/status", nil).Body.String())
	if csrf == nil {
		t.Fatal("the page with both cookies is not the status page")
	}
	req := httptest.NewRequest(http.MethodPost, "/status/logout", strings.NewReader(url.Values{"csrf": {csrf[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(plain.cookie)
	rec := both.do(req)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	expired := map[string]bool{}
	for _, ck := range rec.Result().Cookies() {
		expired[ck.Name] = ck.MaxAge < 0
	}
	if !expired[pageCookie] || !expired[pageCookieTLS] {
		t.Errorf("logout cleared %v, want both cookies", expired)
	}
	for name, c := range map[string]*pageClient{"plain": plain, "secure": {t: t, h: viaTLS, cookie: secure}} {
		if body := c.open(); !strings.Contains(body, `name="token"`) {
			t.Errorf("the %s cookie still opens the page after logout", name)
		}
	}
}

// A page opened through the TLS proxy with the plain session alone, then a login there in
// another tab: the browser now sends both cookies, and the open page's actions, which carry the
// plain session's token, go on working.
func TestStatusPageActionTakesTheTokenOfEitherSession(t *testing.T) {
	f := newFixture(t)
	viaTLS := viaTLSProxy(f.raw)
	plain := &pageClient{t: t, h: f.raw}
	plain.login(testAdminToken)
	page := &pageClient{t: t, h: viaTLS, cookie: plain.cookie}
	page.open()
	secure := loginOverTLS(t, viaTLS)
	if page.csrf == "" || secure == nil {
		t.Fatalf("the test's premise: a page's token %q, a Secure cookie %v", page.csrf, secure)
	}
	req := httptest.NewRequest(http.MethodPost, "/status/pairing-codes", nil)
	req.Header.Set("X-CSRF-Token", page.csrf)
	req.AddCookie(secure)
	if rec := page.do(req); rec.Code != http.StatusOK && rec.Code != http.StatusCreated {
		t.Fatalf("an action of the open page with both cookies: %d %s", rec.Code, rec.Body)
	}
}

// The admin token pasted with a space or a line end around it logs in, as the admin API takes
// it as a bearer token.
func TestStatusPageLoginTakesATokenPastedWithSpaces(t *testing.T) {
	f := newFixture(t)
	c := &pageClient{t: t, h: f.raw}
	if rec := c.login(" " + testAdminToken + "\r\n"); rec.Code != http.StatusSeeOther || c.cookie == nil {
		t.Fatalf("login with spaces around the token: %d\n%s", rec.Code, rec.Body)
	}
}

// The page's styles and scripts carry their types as the server fixes them, not as the system's
// table of types says (a Windows registry may map .css to another type, which the browser,
// told nosniff, would refuse).
func TestStatusPageAssetTypes(t *testing.T) {
	// The system's table says otherwise, as such a registry does.
	for ext, was := range map[string]string{".css": mime.TypeByExtension(".css"), ".js": mime.TypeByExtension(".js")} {
		if err := mime.AddExtensionType(ext, "text/plain"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mime.AddExtensionType(ext, was) })
	}
	f := newFixture(t)
	c := &pageClient{t: t, h: f.raw}
	for name, want := range map[string]string{"page.css": "text/css; charset=utf-8", "page.js": "text/javascript; charset=utf-8"} {
		rec := c.do(httptest.NewRequest(http.MethodGet, "/status/assets/"+name, nil))
		if got := rec.Header().Get("Content-Type"); rec.Code != http.StatusOK || got != want {
			t.Errorf("%s: %d, Content-Type %q, want %q", name, rec.Code, got, want)
		}
	}
}

func TestStatusPageLoginIsThrottled(t *testing.T) {
	f := newFixture(t)
	c := &pageClient{t: t, h: f.raw}
	for range pageLoginBudget {
		if rec := c.login("wrong"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong token: %d", rec.Code)
		}
	}
	rec := c.login(testAdminToken)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || c.cookie != nil {
		t.Fatalf("after %d wrong tokens the right one got %d (Retry-After %q)", pageLoginBudget, rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestStatusPageLoginFromAnotherSite(t *testing.T) {
	f := newFixture(t)
	c := &pageClient{t: t, h: f.raw}
	form := url.Values{"token": {testAdminToken}}
	req := httptest.NewRequest(http.MethodPost, "/status/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	wantProblem(t, c.do(req), http.StatusForbidden, "csrf")
}

func TestStatusPageWithoutAdminToken(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.AdminToken = "" })
	c := &pageClient{t: t, h: f.raw}
	if body := c.open(); !strings.Contains(body, "has no admin token") {
		t.Fatalf("page without admin.token:\n%s", body)
	}
	if rec := c.login(""); rec.Code != http.StatusForbidden || c.cookie != nil {
		t.Fatalf("login without admin.token: %d", rec.Code)
	}
}

func TestStatusPageActionsNeedTheSessionAndItsToken(t *testing.T) {
	f := newFixture(t)
	c := &pageClient{t: t, h: f.raw}
	wantProblem(t, c.action("/status/pairing-codes", "x", ""), http.StatusUnauthorized, "no-session")
	c.login(testAdminToken)
	c.open()

	wantProblem(t, c.action("/status/pairing-codes", "", ""), http.StatusForbidden, "csrf")
	wantProblem(t, c.action("/status/pairing-codes", c.csrf+"x", ""), http.StatusForbidden, "csrf")
	wantProblem(t, c.action("/status/pairing-codes", c.csrf, "http://evil.example"), http.StatusForbidden, "csrf")

	rec := c.action("/status/pairing-codes", c.csrf, "http://example.com")
	if rec.Code != http.StatusCreated {
		t.Fatalf("new pairing code: %d %s", rec.Code, rec.Body)
	}
	var ans pairingAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatal(err)
	}
	digits := strings.ReplaceAll(ans.Code, "-", "")
	if len(digits) != 8 || ans.URI != "storeedge://pair?code="+digits+"&server=srv-test" {
		t.Fatalf("pairing answer %+v", ans)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ans.QR, "data:image/png;base64,"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil || img.Bounds().Dx() < 200 {
		t.Fatalf("QR code is not a usable PNG: %v", err)
	}
	// The code works: a device pairs with it once.
	rec = f.post(t, "/api/v1/devices/pair", "application/json", `{"code":"`+ans.Code+`","kind":"kiosk","name":"Door"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("pair with the page's code: %d %s", rec.Code, rec.Body)
	}

	// Revoke, from the page: the device's credential stops working.
	pos := f.device(t, "pos")
	rec = c.action("/status/devices/"+pos.DeviceID+"/revoke", c.csrf, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/v1/catalog/products/P0001", nil)
	req.Header.Set("Authorization", "Bearer "+pos.Token)
	wantProblem(t, f.do(t, req), http.StatusUnauthorized, "unauthorized", "revoked")
}

func TestStatusPageStreamsSnapshots(t *testing.T) {
	f := newFixture(t)
	c := &pageClient{t: t, h: f.raw}
	if ev, _ := c.firstEvent(); ev != "logout" {
		t.Fatalf("stream without a session sent %q, want logout", ev)
	}
	c.login(testAdminToken)
	f.order(t, "pos", "k1", `{"lines":[{"product_id":"P0002","quantity":1}]}`)
	ev, data := c.firstEvent()
	if ev != "snapshot" {
		t.Fatalf("first event %q %s", ev, data)
	}
	var snap struct {
		OrdersToday int64 `json:"orders_today"`
		Status      struct {
			ServerID    string `json:"server_id"`
			Collections []struct {
				Name string `json:"name"`
				Rows int64  `json:"rows"`
			} `json:"collections"`
		} `json:"status"`
		Devices         []struct{ Name string } `json:"devices"`
		Unpaired        []json.RawMessage       `json:"unpaired"`
		WebhookFailures []json.RawMessage       `json:"webhook_failures"`
	}
	if err := json.Unmarshal([]byte(data), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Status.ServerID != "srv-test" || snap.OrdersToday != 1 || len(snap.Devices) != 1 || snap.Devices[0].Name != "pos" ||
		snap.Unpaired == nil || snap.WebhookFailures != nil {
		t.Fatalf("snapshot %s", data)
	}
	for _, col := range snap.Status.Collections {
		if col.Name == "products" && col.Rows != nProducts {
			t.Errorf("products rows %d, want %d", col.Rows, nProducts)
		}
	}
}

func TestStatusPageOnTheAdminPort(t *testing.T) {
	f := newFixture(t)
	admin := &pageClient{t: t, h: f.srv.listener(serviceAdmin)}
	if rec := admin.do(httptest.NewRequest(http.MethodGet, "/", nil)); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `name="next" value="/"`) {
		t.Fatalf("GET / on the admin port: %d\n%s", rec.Code, rec.Body)
	}
	front := &pageClient{t: t, h: f.raw}
	wantProblem(t, front.do(httptest.NewRequest(http.MethodGet, "/", nil)), http.StatusNotFound, "not-found")
	catalog := &pageClient{t: t, h: f.srv.listener(serviceCatalog)}
	wantProblem(t, catalog.do(httptest.NewRequest(http.MethodGet, "/status", nil)), http.StatusNotFound, "not-found")
}

// The page works on a LAN with no Internet: nothing it loads comes from elsewhere.
func TestStatusPageAssetsAreEmbedded(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`)
	err := fs.WalkDir(uiFiles, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(uiFiles, p)
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads %q from outside the server", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	c := &pageClient{t: t, h: f.raw}
	for name, ct := range map[string]string{"page.js": "text/javascript", "page.css": "text/css"} {
		rec := c.do(httptest.NewRequest(http.MethodGet, "/status/assets/"+name, nil))
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), ct) {
			t.Errorf("%s: %d %q", name, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	wantProblem(t, c.do(httptest.NewRequest(http.MethodGet, "/status/assets/..%2fpage.html", nil)), http.StatusNotFound, "not-found")
}

// A session ends after pageSessionIdle unused and pageSessionMax after its login, whatever its
// use; a CSRF token works only with its own session.
func TestStatusPageSessionsEnd(t *testing.T) {
	p := newPageSessions()
	t0 := testNow
	id, csrf := p.create(t0)
	sess, ok := p.get(id, t0.Add(pageSessionIdle-time.Minute))
	if !ok || !sess.checkCSRF(csrf) || sess.checkCSRF(csrf+"x") || sess.checkCSRF("") {
		t.Fatal("a fresh session or its CSRF token is refused, or a wrong token accepted")
	}
	if _, ok := p.get(id, t0.Add(2*pageSessionIdle)); ok {
		t.Fatal("a session unused for twice the idle limit still opens the page")
	}
	id, _ = p.create(t0)
	for at := t0; at.Before(t0.Add(pageSessionMax)); at = at.Add(pageSessionIdle / 2) {
		if _, ok := p.get(id, at); !ok {
			t.Fatalf("a session in use ended at %v", at.Sub(t0))
		}
	}
	if _, ok := p.get(id, t0.Add(pageSessionMax+time.Minute)); ok {
		t.Fatal("a session in use outlived the absolute limit")
	}
}

// lan.front_door_admin: false keeps the admin API and the status page on the admin port only,
// so that a firewall rule on that port keeps them to shop IT's network; the devices' services
// stay on the front door.
func TestAdminOffTheFrontDoor(t *testing.T) {
	for _, off := range []bool{false, true} {
		f := newFixture(t, func(o *Options) { o.FrontDoorWithoutAdmin = off })
		front := &pageClient{t: t, h: f.raw}
		admin := &pageClient{t: t, h: f.srv.listener(serviceAdmin)}
		for _, path := range []string{"/api/v1/status", "/api/v1/admin/devices", "/status"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Authorization", "Bearer "+testAdminToken)
			rec := front.do(req)
			if off && (rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "admin port only")) || !off && rec.Code != http.StatusOK {
				t.Errorf("front door without admin %v: GET %s answered %d %s", off, path, rec.Code, rec.Body)
			}
			onAdmin := path
			if path == "/status" {
				onAdmin = "/"
			}
			req = httptest.NewRequest(http.MethodGet, onAdmin, nil)
			req.Header.Set("Authorization", "Bearer "+testAdminToken)
			if rec := admin.do(req); rec.Code != http.StatusOK {
				t.Errorf("front door without admin %v: GET %s on the admin port answered %d", off, onAdmin, rec.Code)
			}
		}
		catalog := &pageClient{t: t, h: f.srv.listener(serviceCatalog)}
		req := httptest.NewRequest(http.MethodGet, "/api/v1/admin/devices", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		if rec := catalog.do(req); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "this port carries only the catalog service") {
			t.Errorf("front door without admin %v: an admin route on the catalog port answered %d %s", off, rec.Code, rec.Body)
		}
		if rec := f.get(t, "/api/v1/catalog/products/P0002"); rec.Code != http.StatusOK {
			t.Errorf("front door without admin %v: a product answered %d", off, rec.Code)
		}
	}
}

// Wrong credentials from more clients than the throttle remembers wipe no refused client's
// count, and do not lock out a client that made no mistake; only when every client on record
// is refused do new ones share one budget. This machine (loopback) is never refused.
func TestThrottleHoldsAcrossManyAddresses(t *testing.T) {
	p := newPageSessions()
	now := testNow
	allowed := func(addr string, at time.Time) bool { ok, _ := p.tryLogin(addr, at, false); return ok }
	spend := func(addr string) {
		for range pageLoginBudget {
			p.tryLogin(addr, now, true)
		}
	}
	spend("192.0.2.1")
	if allowed("192.0.2.1", now) {
		t.Fatal("an address past its budget may try again")
	}
	for i := range pageMaxAddresses + 100 {
		p.tryLogin(fmt.Sprintf("fd00:%x::1", i+1), now, true) // as many /64s
	}
	if allowed("192.0.2.1", now) {
		t.Fatal("after many other addresses failed once, the address past its budget may try again")
	}
	if !allowed("192.0.2.200", now) {
		t.Fatal("an address that made no mistake is refused after many others failed")
	}
	// Every client on record refused: the next ones share one budget.
	for i := range pageMaxAddresses {
		spend(fmt.Sprintf("fd01:%x::1", i+1))
	}
	for i := range pageLoginBudget {
		p.tryLogin(fmt.Sprintf("fd02:%x::1", i+1), now, true)
	}
	if allowed("fd02:ffff::1", now) {
		t.Fatal("with every client on record refused, the others went past their shared budget")
	}
	if !allowed("127.0.0.1", now) || !allowed("::1", now) {
		t.Fatal("loopback is refused")
	}
	if !allowed("fd02:ffff::1", now.Add(pageLoginWindow)) {
		t.Fatal("the shared budget is still spent after its window ended")
	}
	if !allowed("192.0.2.1", now.Add(pageLoginWindow)) {
		t.Fatal("the address is still refused after its window ended")
	}
}

// Each address has its budget: one device's wrong tokens hold back that device only, also on IPv6
// where the whole shop may share a /64. The addresses of one /64, which a single host may take one
// after another, also share a larger budget: hopping across them gives at most that many guesses.
func TestThrottleCountsAnIPv6Prefix(t *testing.T) {
	p := newPageSessions()
	allowed := func(addr string) bool { ok, _ := p.tryLogin(addr, testNow, false); return ok }
	for range pageLoginBudget {
		p.tryLogin("fd00:1:2:3::1", testNow, true)
	}
	if allowed("fd00:1:2:3::1") || !allowed("fd00:1:2:3::2") || !allowed("fe80::1%eth0") {
		t.Fatal("ten wrong tokens from one address: want that address held back, its neighbours not")
	}
	for i := range pagePrefixBudget - pageLoginBudget {
		if ok, _ := p.tryLogin(fmt.Sprintf("fd00:1:2:3::%x", 0x100+i), testNow, true); !ok {
			t.Fatalf("guess %d of the /64 refused within its budget", pageLoginBudget+i+1)
		}
	}
	if allowed("fd00:1:2:3:ffff::1") {
		t.Fatal("another address of the /64 may try again past the /64's budget")
	}
	if !allowed("::ffff:192.0.2.7") || !allowed("fd00:1:2:4::1") {
		t.Fatal("an IPv4 address, or the next /64, is refused for a /64's guesses")
	}
	// Link-local addresses are per interface: each interface's fe80::/64 has its own budget.
	for i := range pagePrefixBudget {
		p.tryLogin(fmt.Sprintf("fe80::%x%%eth0", i+1), testNow, true)
	}
	if allowed("fe80::ffff%eth0") || !allowed("fe80::ffff%eth1") {
		t.Fatal("link-local /64 budgets: want eth0's spent, eth1's not")
	}
}

// With the table full of refused addresses, a host hopping across the addresses of its /64 still
// meets the /64's budget: making room for a new address never wipes the count of the /64 it
// counts against. And the table holds no more than pageMaxAddresses entries.
func TestThrottlePrefixHoldsWithAFullTable(t *testing.T) {
	p := newPageSessions()
	for i := range pageMaxAddresses - 2 {
		for range pageLoginBudget {
			p.tryLogin(fmt.Sprintf("10.0.%d.%d", i/256, i%256), testNow, true)
		}
	}
	for i := range pagePrefixBudget {
		if ok, _ := p.tryLogin(fmt.Sprintf("fd00:1:2:3::%x", i+1), testNow, true); !ok {
			t.Fatalf("guess %d of the /64 refused within its budget", i+1)
		}
		if len(p.failures) > pageMaxAddresses {
			t.Fatalf("%d entries, more than %d", len(p.failures), pageMaxAddresses)
		}
	}
	if ok, _ := p.tryLogin("fd00:1:2:3::ffff", testNow, false); ok {
		t.Fatal("past the /64's budget, a new address of it may try: its count was wiped to make room")
	}
	// One entry short of full, a new IPv6 address and its new /64 do not take the table past it.
	p.tryLogin("10.9.9.9", testNow, true)
	for len(p.failures) < pageMaxAddresses-1 {
		p.tryLogin(fmt.Sprintf("10.8.%d.%d", len(p.failures)/256, len(p.failures)%256), testNow, true)
	}
	p.tryLogin("fd00:9::1", testNow, true)
	if len(p.failures) > pageMaxAddresses {
		t.Fatalf("%d entries, more than %d", len(p.failures), pageMaxAddresses)
	}
}

// Wrong admin tokens sent all at once from one address get no more than the budget's answers of
// 401: the rest are 429, as if they had come one by one. The server's clock moves the requests in
// step: the k-th time any of them asks it, it waits until all n have asked k times. A throttle
// that checked the budget and asked the time again before counting the failure would let all of
// them past the check.
func TestThrottleHoldsForGuessesSentTogether(t *testing.T) {
	const n = 64
	var mu sync.Mutex
	var armed bool
	asked := 0
	rounds := map[int]chan struct{}{}
	f := newFixture(t, func(o *Options) {
		o.Now = func() time.Time {
			mu.Lock()
			if !armed {
				mu.Unlock()
				return testNow
			}
			round := asked / n
			if rounds[round] == nil {
				rounds[round] = make(chan struct{})
			}
			wait := rounds[round]
			if asked++; asked%n == 0 {
				close(wait)
			}
			mu.Unlock()
			select {
			case <-wait:
			case <-time.After(time.Minute): // a guard only: the requests asked the time unevenly
				t.Error("a round of the clock never completed: not every request asked the time as often")
			}
			return testNow
		}
	})
	codes := make(chan int, n)
	mu.Lock()
	armed = true
	mu.Unlock()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/admin/devices", nil)
			req.RemoteAddr = "192.0.2.9:5000"
			req.Header.Set("Authorization", "Bearer not-the-admin-token-at-all")
			codes <- f.do(t, req).Code
		})
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	if got[http.StatusUnauthorized] != pageLoginBudget || got[http.StatusTooManyRequests] != n-pageLoginBudget {
		t.Fatalf("answers %v to %d wrong tokens sent together: want %d of 401, the rest 429", got, n, pageLoginBudget)
	}
}

// A login form larger than a login form can be is answered 413, as every other body too large.
func TestStatusPageLoginTooLarge(t *testing.T) {
	f := newFixture(t)
	c := &pageClient{t: t, h: f.srv.listener(serviceAdmin)}
	form := "token=" + strings.Repeat("x", pageLoginMaxBytes) + "&next=/"
	req := httptest.NewRequest(http.MethodPost, "/status/login", io.NopCloser(strings.NewReader(form)))
	req.ContentLength = -1 // chunked
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	wantProblem(t, c.do(req), http.StatusRequestEntityTooLarge, "body-too-large")
}

// Wrong admin credentials are logged at most guessLogBudget times a minute from all addresses
// together (a flood of addresses would fill the log otherwise), then once with how many more.
func TestWrongCredentialsLogIsBounded(t *testing.T) {
	var logs testenv.Buffer
	f := newFixture(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	h := f.srv.listener(serviceAdmin)
	for i := range 3 * guessLogBudget {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/status", nil)
		req.RemoteAddr = fmt.Sprintf("[fd00:%x::1]:40000", i+1) // as many /64s
		req.Header.Set("Authorization", "Bearer wrong-token-0123456789")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if n := strings.Count(logs.String(), "wrong admin token"); n != guessLogBudget {
		t.Fatalf("%d wrong credentials logged, want %d", n, guessLogBudget)
	}
	// The status page's login shares the budget: in the same minute, none of its wrong tokens
	// is logged line by line.
	for i := range 3 * guessLogBudget {
		form := url.Values{"token": {"wrong-token-0123456789"}, "next": {"/status"}}
		req := httptest.NewRequest(http.MethodPost, "/status/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = fmt.Sprintf("[fd01:%x::1]:40000", i+1)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong token at the login: %d", rec.Code)
		}
	}
	if n := strings.Count(logs.String(), "wrong admin token"); n != guessLogBudget {
		t.Fatalf("with the status page's wrong logins, %d wrong credentials logged, want %d", n, guessLogBudget)
	}
}

// An admin token of the largest length configuration.md allows, of the characters a form
// encodes three times over, logs in to the status page.
func TestStatusPageLoginWithTheLongestToken(t *testing.T) {
	token := strings.Repeat("+/%=", 1024) // 4,096 bytes
	f := newFixture(t, func(o *Options) { o.AdminToken = token })
	c := &pageClient{t: t, h: f.srv.listener(serviceAdmin)}
	if rec := c.login(token); rec.Code != http.StatusSeeOther || c.cookie == nil {
		t.Fatalf("login with a %d-byte token: %d %s", len(token), rec.Code, rec.Body)
	}
}

// A device's token sent to an admin route is refused, and the log says it was a device's
// credential rather than a wrong admin token: the device's maker, not a guesser, is to be told.
func TestDeviceCredentialOnAnAdminRouteIsLoggedAsSuch(t *testing.T) {
	var logs testenv.Buffer
	f := newFixture(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	req := httptest.NewRequest(http.MethodGet, "/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+f.device(t, "pos").Token)
	rec := httptest.NewRecorder()
	f.srv.listener(serviceAdmin).ServeHTTP(rec, req)
	wantProblem(t, rec, http.StatusUnauthorized, "unauthorized", "admin credential")
	if !strings.Contains(logs.String(), "a device's credential, not the admin token") || strings.Contains(logs.String(), "wrong admin token") {
		t.Errorf("the log of a device's token on an admin route:\n%s", logs.String())
	}
}
