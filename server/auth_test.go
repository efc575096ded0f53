package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// headerCancel ends the request's context once the handler has written its status, so that a
// stream (the event stream) answers and returns instead of following the log forever.
type headerCancel struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (w *headerCancel) WriteHeader(code int) {
	w.ResponseRecorder.WriteHeader(code)
	w.cancel()
}

// publicRoutes need no credential.
var publicRoutes = map[string]bool{
	"GET /healthz":              true,
	"GET /readyz":               true,
	"POST /api/v1/devices/pair": true,
}

// pagePublic are the status page's routes open to a browser without a session: the page (which
// is then its login form), its assets and the login.
var pagePublic = map[string]bool{
	"GET /":                     true, // the page on the admin port
	"GET /status":               true,
	"GET /status/assets/{name}": true,
	"POST /status/login":        true,
}

func isPagePath(p string) bool { return p == "/status" || strings.HasPrefix(p, "/status/") }

// Every route of the front door, tried with no credential, a wrong one, a revoked device's, the
// other kind's and the right one: only the right one gets past authentication.
func TestAuthMatrix(t *testing.T) {
	f := newFixture(t)
	good := f.device(t, "till").Token
	revoked := f.device(t, "stolen tablet")
	if _, err := f.dm.Revoke(t.Context(), revoked.DeviceID); err != nil {
		t.Fatal(err)
	}
	// A token of the right shape for a device that does not exist, and a real device's id with
	// another secret.
	wrongs := []string{
		"dv_aaaaaaaaaaaaaaaa." + strings.Repeat("A", 43),
		f.device(t, "till").DeviceID + "." + strings.Repeat("B", 43),
		"not-a-token",
		testAdminToken + "x",
	}

	var routes [][2]string
	err := chi.Walk(f.srv.front, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, [2]string{method, route})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var nDevice, nAdmin, addrs int
	for _, rt := range routes {
		method, route := rt[0], rt[1]
		key := method + " " + route
		if publicRoutes[key] || isPagePath(route) { // the status page has its own session (page_test.go)
			continue
		}
		admin := isAdminPath(route)
		if admin {
			nAdmin++
		} else {
			nDevice++
		}
		// Unknown ids: an authorised request then changes nothing.
		path := chiParam.ReplaceAllString(route, "dv_zzzzzzzzzzzzzzzz")
		try := func(token string) *httptest.ResponseRecorder {
			var body *strings.Reader
			if method == http.MethodPost || method == http.MethodPatch {
				body = strings.NewReader(`{}`)
			} else {
				body = strings.NewReader("")
			}
			req := httptest.NewRequest(method, path, body)
			// Each request from an address of its own: wrong admin credentials count against
			// their address (TestAdminAPIIsThrottled).
			addrs++
			req.RemoteAddr = fmt.Sprintf("198.51.%d.%d:50000", addrs/250, addrs%250+1)
			if body.Len() > 0 {
				req.Header.Set("Content-Type", "application/json")
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			ctx, cancel := context.WithCancel(req.Context())
			defer cancel()
			rec := &headerCancel{httptest.NewRecorder(), cancel}
			f.raw.ServeHTTP(rec, req.WithContext(ctx))
			return rec.ResponseRecorder
		}
		refused := func(what, token, detail string) {
			t.Helper()
			rec := try(token)
			if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s with %s: %d %s, want 401 with WWW-Authenticate", key, what, rec.Code, rec.Body)
				return
			}
			wantProblem(t, rec, http.StatusUnauthorized, "unauthorized", detail)
		}
		right, other := good, testAdminToken
		if admin {
			right, other = testAdminToken, good
		}
		refused("no credential", "", "")
		for _, w := range wrongs {
			refused("a wrong credential", w, "")
		}
		if admin {
			refused("a revoked device's credential", revoked.Token, "")
		} else {
			refused("a revoked device's credential", revoked.Token, "revoked")
		}
		if admin {
			refused("the other kind of credential", other, "")
		} else {
			// Shop IT trying a device route with the admin token is told which it wants, as is
			// anyone sending a wrong one (a distinct answer would confirm a guess of the admin
			// token, unthrottled here).
			refused("the other kind of credential", other, "needs the token a device received when it paired (not the admin token)")
			if a, b := try(other).Body.String(), try("not-a-token").Body.String(); a != b {
				t.Errorf("%s tells the admin token from a wrong one:\n%s\n%s", key, a, b)
			}
		}
		if rec := try(right); rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden {
			t.Errorf("%s with the right credential: %d %s", key, rec.Code, rec.Body)
		}
		// The credential in another case of the scheme still works ("bearer").
		req := httptest.NewRequest(http.MethodGet, "/api/v1/devices/me", nil)
		req.Header.Set("Authorization", "bearer "+good)
		if rec := f.do(t, req); rec.Code != http.StatusOK {
			t.Fatalf("lower-case bearer: %d", rec.Code)
		}
	}
	if nDevice < 15 || nAdmin < 12 {
		t.Fatalf("walked %d device and %d admin routes; the matrix missed routes", nDevice, nAdmin)
	}
}

// TestAdminAPIIsThrottled checks that ten wrong admin credentials from one address in a minute
// make that address wait, with 429 and Retry-After even for the right credential, while other
// addresses are served; and that the status page's login counts the same failures.
func TestAdminAPIIsThrottled(t *testing.T) {
	f := newFixture(t)
	status := func(addr, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/status", nil)
		req.RemoteAddr = addr + ":50000"
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		f.raw.ServeHTTP(rec, req)
		return rec
	}
	const guesser, other = "192.0.2.1", "192.0.2.67" // guesser: httptest's address, which pageClient uses
	for i := range pageLoginBudget {
		if rec := status(guesser, fmt.Sprintf("guess-%d-of-the-admin-token", i)); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	rec := status(guesser, testAdminToken)
	wantProblem(t, rec, http.StatusTooManyRequests, "too-many-attempts", "wrong admin credentials")
	// Whatever it sends: without a credential too.
	for _, path := range []string{"/api/v1/status"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = guesser + ":50000"
		noCred := httptest.NewRecorder()
		f.raw.ServeHTTP(noCred, req)
		wantProblem(t, noCred, http.StatusTooManyRequests, "too-many-attempts")
	}
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q, want 1-60 seconds", rec.Header().Get("Retry-After"))
	}
	if rec := status(other, testAdminToken); rec.Code != http.StatusOK {
		t.Fatalf("another address with the right token: %d %s", rec.Code, rec.Body)
	}
	c := &pageClient{t: t, h: f.raw}
	if rec := c.login(testAdminToken); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("the status page's login from the same address: %d, want 429", rec.Code)
	}
}

func TestAdminAPIOffWithoutToken(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.AdminToken = "" })
	req := httptest.NewRequest(http.MethodGet, "/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer anything")
	wantProblem(t, f.do(t, req), http.StatusForbidden, "admin-disabled", "admin.token")
}

func (f *fixture) pairRaw(t *testing.T, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/devices/pair", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "192.0.2.7:50000"
	rec := httptest.NewRecorder()
	f.raw.ServeHTTP(rec, req)
	return rec
}

func (f *fixture) newCode(t *testing.T, body string) devices.PairingCode {
	t.Helper()
	rec := f.post(t, "/api/v1/admin/pairing-codes", "application/json", body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("pairing code: %d %s", rec.Code, rec.Body)
	}
	var c devices.PairingCode
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPairingCodes(t *testing.T) {
	f := newFixture(t)
	code := f.newCode(t, "")
	// The body is optional: an empty one sent chunked, without a Content-Type, is no body.
	chunked := httptest.NewRequest(http.MethodPost, "/api/v1/admin/pairing-codes", strings.NewReader(""))
	chunked.ContentLength = -1
	if rec := f.do(t, chunked); rec.Code != http.StatusCreated {
		t.Fatalf("an empty chunked body: %d %s", rec.Code, rec.Body)
	}
	if !code.ExpiresAt.Equal(testNow.Add(config.DefaultDevicesPairingCodeTTL)) {
		t.Fatalf("code expires %v, want %v", code.ExpiresAt, testNow.Add(config.DefaultDevicesPairingCodeTTL))
	}
	rec := f.pairRaw(t, `{"code":"`+strings.ReplaceAll(code.Code, "-", " ")+`","kind":"kiosk","name":"Entrance","capabilities":["orders"],"push_port":9090}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("pair: %d %s", rec.Code, rec.Body)
	}
	var creds devices.Credentials
	json.Unmarshal(rec.Body.Bytes(), &creds)
	d := creds.Device
	if d.Kind != "kiosk" || d.Name != "Entrance" || d.Address != "192.0.2.7" || d.PushPort != 9090 || d.PairedBy != "code" || creds.Token != creds.DeviceID+"."+creds.Secret {
		t.Fatalf("paired %+v", creds)
	}
	// The secret is not stored: only its hash.
	stored, err := f.db.GetDevice(t.Context(), creds.DeviceID)
	if err != nil || strings.Contains(string(stored.SecretHash)+string(stored.PushKey), creds.Secret) {
		t.Fatalf("stored device %+v, %v", stored, err)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/v1/catalog/products/P0001", nil)
	req.Header.Set("Authorization", "Bearer "+creds.Token)
	if rec := f.do(t, req); rec.Code != http.StatusOK {
		t.Fatalf("the new device reads the catalog: %d", rec.Code)
	}

	// Single use.
	wantProblem(t, f.pairRaw(t, `{"code":"`+code.Code+`","kind":"kiosk"}`), http.StatusUnauthorized, "unauthorized", "already used")
	// Expired: valid for its TTL, not after.
	short := f.newCode(t, `{"ttl":"2m"}`)
	f.clock.Advance(2 * time.Minute)
	wantProblem(t, f.pairRaw(t, `{"code":"`+short.Code+`","kind":"tablet"}`), http.StatusUnauthorized, "unauthorized", "expired")
	// Bad requests are not attempts.
	for _, body := range []string{`{"kind":"tablet"}`, `{"code":"1","enrollment_secret":"x","kind":"tablet"}`, `{"code":"12345678","kind":"toaster"}`,
		`{"code":"12345678","kind":"tablet","capabilities":["Orders!"]}`, `{"code":"12345678","kind":"tablet","push_port":70000}`} {
		wantProblem(t, f.pairRaw(t, body), http.StatusBadRequest, "invalid-body")
	}
	wantProblem(t, f.pairRaw(t, `{"code":"12345678","kind":"tablet","secret":"x"}`), http.StatusBadRequest, "malformed-body")
}

func TestPairingGuessesAreThrottled(t *testing.T) {
	f := newFixture(t)
	code := f.newCode(t, "")
	// The code is valid for 10 minutes; the address may fail 5 times a minute, so at most 50
	// guesses of 10^8 codes fit in its life. A code that is not 8 digits is a guess too
	// (devices.md).
	for i := range config.DefaultDevicesPairingAttempts {
		guess := strings.Repeat(string(rune('0'+i)), 8)
		if i == 0 {
			guess = "1234-567"
		}
		if guess == strings.ReplaceAll(code.Code, "-", "") {
			continue
		}
		wantProblem(t, f.pairRaw(t, `{"code":"`+guess+`","kind":"tablet"}`), http.StatusUnauthorized, "unauthorized")
	}
	rec := f.pairRaw(t, `{"code":"`+code.Code+`","kind":"tablet"}`)
	wantProblem(t, rec, http.StatusTooManyRequests, "too-many-attempts")
	if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	// Wrong enrollment secrets count the same.
	wantProblem(t, f.pairRaw(t, `{"enrollment_secret":"`+testEnrollment+`","kind":"tablet"}`), http.StatusTooManyRequests, "too-many-attempts")
	// Whatever it sends: a body that cannot be read waits out the minute too.
	for _, body := range []string{`not json`, `{"code":"12345678","kind":"tablet","colour":"red"}`} {
		wantProblem(t, f.pairRaw(t, body), http.StatusTooManyRequests, "too-many-attempts")
	}
	// Another address is not held up by this one.
	req := httptest.NewRequest(http.MethodPost, "/api/v1/devices/pair", strings.NewReader(`{"enrollment_secret":"`+testEnrollment+`","kind":"tablet"}`))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "192.0.2.8:1"
	if rec := httptest.NewRecorder(); func() int { f.raw.ServeHTTP(rec, req); return rec.Code }() != http.StatusCreated {
		t.Fatalf("another address: %d %s", rec.Code, rec.Body)
	}
	// A minute later the address may try again, and the code still works.
	f.clock.Advance(time.Minute)
	if rec := f.pairRaw(t, `{"code":"`+code.Code+`","kind":"tablet"}`); rec.Code != http.StatusCreated {
		t.Fatalf("after the window: %d %s", rec.Code, rec.Body)
	}
}

func TestEnrollmentSecret(t *testing.T) {
	f := newFixture(t)
	wantProblem(t, f.pairRaw(t, `{"enrollment_secret":"wrong-secret-0123456789","kind":"tablet"}`), http.StatusUnauthorized, "unauthorized", "enrollment secret")
	rec := f.pairRaw(t, `{"enrollment_secret":"`+testEnrollment+`","kind":"printer"}`)
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), `"paired_by":"enrollment"`) {
		t.Fatalf("enrollment: %d %s", rec.Code, rec.Body)
	}

	off := newFixtureDB(t, openDB(t))
	dm, err := devices.New(t.Context(), devices.Options{DB: off.db})
	if err != nil {
		t.Fatal(err)
	}
	off.srv.o.Devices = dm
	wantProblem(t, off.pairRaw(t, `{"enrollment_secret":"`+testEnrollment+`","kind":"tablet"}`), http.StatusForbidden, "admin-disabled", "enrollment")
}

// Revocation is effective for the very next request, and is shown in the admin view.
func TestRevokeIsImmediate(t *testing.T) {
	f := newFixture(t)
	c := f.device(t, "kiosk 3")
	get := func() int {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/catalog/products/P0001", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		return f.do(t, req).Code
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("before: %d", code)
	}
	rec := f.post(t, "/api/v1/admin/devices/"+c.DeviceID+"/revoke", "", "")
	d := decodeOK[devices.Device](t, rec)
	if !d.Revoked || d.Push != devices.PushRevoked {
		t.Fatalf("revoked device %+v", d)
	}
	if code := get(); code != http.StatusUnauthorized {
		t.Fatalf("after revoke: %d", code)
	}
	// A restarted server (a new registry over the same database) still refuses it.
	dm, err := devices.New(t.Context(), devices.Options{DB: f.db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dm.Authenticate(c.Token); err != devices.ErrRevoked {
		t.Fatalf("after restart: %v, want ErrRevoked", err)
	}
}

func TestAdminDevices(t *testing.T) {
	f := newFixture(t)
	c := f.device(t, "Till 1")
	list := decodeOK[struct {
		Items []devices.Device `json:"items"`
	}](t, f.get(t, "/api/v1/admin/devices"))
	i := slices.IndexFunc(list.Items, func(d devices.Device) bool { return d.ID == c.DeviceID })
	if len(list.Items) != 2 || i < 0 || !list.Items[i].Online || list.Items[i].Name != "Till 1" {
		t.Fatalf("devices %+v", list.Items)
	}
	req := httptest.NewRequest(http.MethodPatch, "/api/v1/admin/devices/"+c.DeviceID, strings.NewReader(`{"name":"Till 2"}`))
	req.Header.Set("Content-Type", "application/json")
	if d := decodeOK[devices.Device](t, f.do(t, req)); d.Name != "Till 2" {
		t.Fatalf("renamed %+v", d)
	}
	req = httptest.NewRequest(http.MethodPatch, "/api/v1/admin/devices/"+c.DeviceID, strings.NewReader(`{"name":""}`))
	req.Header.Set("Content-Type", "application/json")
	wantProblem(t, f.do(t, req), http.StatusBadRequest, "invalid-body", "name")
	wantProblem(t, f.get(t, "/api/v1/admin/devices/dv_nosuchdevice00"), http.StatusNotFound, "not-found")

	// Commands to a group are queued per device and visible with their state.
	rec := f.post(t, "/api/v1/admin/commands", "application/json", `{"target":{"capability":"orders"},"type":"reload","payload":{"why":"test"},"ttl":"1h"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("send: %d %s", rec.Code, rec.Body)
	}
	var cmds struct {
		Items []struct {
			ID       string `json:"id"`
			DeviceID string `json:"device_id"`
			State    string `json:"state"`
		} `json:"items"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &cmds); err != nil {
		t.Fatal(err)
	}
	if len(cmds.Items) != 2 {
		t.Fatalf("commands %+v", cmds)
	}
	one := decodeOK[storage.Command](t, f.get(t, "/api/v1/admin/commands/"+cmds.Items[0].ID))
	if one.State != "queued" || !one.ExpiresAt.Equal(testNow.Add(time.Hour)) || string(one.Payload) != `{"why":"test"}` {
		t.Fatalf("command %+v", one)
	}
	if st := decodeOK[statusJSON](t, f.get(t, "/api/v1/status")); st.Devices.Paired != 2 || st.Devices.Queued != 2 {
		t.Fatalf("status devices %+v", st.Devices)
	}
	wantProblem(t, f.post(t, "/api/v1/admin/commands", "application/json", `{"target":{"kind":"signage"},"type":"reload"}`), http.StatusUnprocessableEntity, "no-target")
	wantProblem(t, f.post(t, "/api/v1/admin/commands", "application/json", `{"target":{"kind":"pos","all":true},"type":"reload"}`), http.StatusBadRequest, "invalid-body", "exactly one")
	wantProblem(t, f.post(t, "/api/v1/admin/commands", "application/json", `{"target":{"kind":"robot"},"type":"reload"}`), http.StatusBadRequest, "invalid-body", "target.kind", "tablet")
	wantProblem(t, f.post(t, "/api/v1/admin/commands", "application/json", `{"target":{"capability":"Orders!"},"type":"reload"}`), http.StatusBadRequest, "invalid-body", "target.capability")
	wantProblem(t, f.post(t, "/api/v1/admin/commands", "application/json", `{"target":{"all":true},"type":"Reload Now"}`), http.StatusBadRequest, "invalid-body", "type")
	wantProblem(t, f.get(t, "/api/v1/admin/commands?state=lost"), http.StatusBadRequest, "bad-parameter", "state")
}

// The document says which credential each route wants, as the router enforces it.
func TestOpenAPISecurityMatchesAccess(t *testing.T) {
	doc := loadOpenAPI(t)
	global, _ := doc["security"].([]any)
	for path, item := range doc["paths"].(map[string]any) {
		for _, m := range httpMethods {
			op, ok := item.(map[string]any)[m].(map[string]any)
			if !ok {
				continue
			}
			key := strings.ToUpper(m) + " " + path
			sec, declared := op["security"].([]any)
			if !declared {
				sec = global
			}
			var schemes []string
			for _, req := range sec {
				for name := range req.(map[string]any) {
					schemes = append(schemes, name)
				}
			}
			want := "deviceToken"
			switch {
			case publicRoutes[key] || pagePublic[key]:
				want = ""
			case isPagePath(path):
				want = "statusSession"
			case isAdminPath(path):
				want = "adminToken"
			case path == metricsPath:
				want = "metricsToken,adminToken"
			}
			if got := strings.Join(schemes, ","); got != want {
				t.Errorf("%s: security %q, want %q", key, got, want)
			}
		}
	}
}

// Pairings with the enrollment secret past devices.EnrollmentsPerAddress from one address are
// 429 with Retry-After, and the detail says which limit it is: none of them failed (devices.md).
func TestEnrollmentsPerAddressOverTheAPI(t *testing.T) {
	f := newFixture(t)
	for i := range devices.EnrollmentsPerAddress {
		if rec := f.pairRaw(t, `{"enrollment_secret":"`+testEnrollment+`","kind":"tablet"}`); rec.Code != http.StatusCreated {
			t.Fatalf("pairing %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	rec := f.pairRaw(t, `{"enrollment_secret":"`+testEnrollment+`","kind":"tablet"}`)
	p := wantProblem(t, rec, http.StatusTooManyRequests, "too-many-attempts", "too many devices paired with the enrollment secret")
	if strings.Contains(p.Detail, "failed") {
		t.Errorf("the detail speaks of failed attempts: %q", p.Detail)
	}
	if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
}
