package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzStatusPageInput sends what anyone on the LAN may send the status page: a login form, a
// session cookie, a CSRF token, an Origin, an id in an action's path, the login's return path
// (the event stream's cookie is read as an action's: a test server would be needed for a stream).
// Never a panic nor a 5xx but 503; a made-up session never acts (pairing code, revocation,
// retry), and only the admin token starts a session.
func FuzzStatusPageInput(f *testing.F) {
	fx := newFixture(f)
	h := fx.srv.listener(serviceAdmin)
	actions := []struct {
		method, path string
		acts         bool // needs a session and its CSRF token
	}{
		{http.MethodPost, "/status/login", false},
		{http.MethodPost, "/status/pairing-codes", true},
		{http.MethodPost, "/status/devices/%s/revoke", true},
		{http.MethodPost, "/status/webhook/%s/retry", true},
		{http.MethodPost, "/status/logout", false},
		{http.MethodGet, "/status?next=%s", false},
	}
	f.Add(uint8(0), "token=guess&next=%2Fstatus", "", "", "", "")
	f.Add(uint8(0), "token="+url.QueryEscape(testAdminToken)+"&next=//evil.example", "", "", "http://example.com", "")
	f.Add(uint8(1), "csrf=x", "storeedge_session=abc", "x", "", "")
	f.Add(uint8(2), "", "__Secure-storeedge_session=abc; storeedge_session=", "", "null", "dv_1")
	f.Add(uint8(3), "", "storeedge_session="+strings.Repeat("a", 5000), "", "", "../..")
	f.Add(uint8(4), "csrf=%zz", "=;=;", "", "", "")
	f.Add(uint8(5), "", "", "", "", "https://evil.example/\r\n")
	f.Add(uint8(1), "", "storeedge_session=\x00", "", "", "")
	f.Fuzz(func(t *testing.T, which uint8, form, cookie, csrf, origin, seg string) {
		a := actions[int(which)%len(actions)]
		target := strings.Replace(a.path, "%s", url.PathEscape(seg), 1)
		if strings.Contains(a.path, "?next=") {
			target = strings.Replace(a.path, "%s", url.QueryEscape(seg), 1)
		}
		req := httptest.NewRequest(a.method, target, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range map[string]string{"Cookie": cookie, "X-Csrf-Token": csrf, "Origin": origin} {
			if v != "" {
				req.Header[k] = []string{v}
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable:
			t.Fatalf("%s %s: %d: %s", a.method, target, rec.Code, rec.Body)
		case a.acts && rec.Code < 400:
			t.Fatalf("%s %s with cookie %q, CSRF %q: %d, a made-up session acted", a.method, target, cookie, csrf, rec.Code)
		}
		for _, c := range rec.Result().Cookies() {
			v, _ := url.ParseQuery(form) // as the server reads the form
			if strings.HasSuffix(c.Name, "storeedge_session") && c.Value != "" && v.Get("token") != testAdminToken {
				t.Fatalf("a login with form %q started a session", form)
			}
		}
	})
}
