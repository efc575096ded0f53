package server

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/discovery"
	"github.com/storeedge/storeedge/storage"
)

// The status page (docs/operations.md#the-status-page): what shop IT looks at in a browser, at /
// on the admin port and /status on the front door. The admin logs in with the admin token once;
// the page then lives on a session cookie (HttpOnly, SameSite=Strict) and follows the server
// through Server-Sent Events. Every action carries the session's CSRF token. Its assets are
// embedded: the page works on a shop LAN with no Internet.

//go:embed ui
var uiFiles embed.FS

var pageTemplates = template.Must(template.ParseFS(uiFiles, "ui/*.html"))

// Status page tuning.
const (
	pageCookie = "storeedge_session"
	// pageCookieTLS is the session cookie of a login over HTTPS, Secure: a name of its own, as
	// browsers refuse a plain-HTTP answer that would overwrite a Secure cookie of the same name.
	pageCookieTLS     = "__Secure-storeedge_session"
	pageRefresh       = 2 * time.Second // the page's live view is this fresh
	pageWebhookLimit  = 50              // refused webhook orders the page lists
	pageLoginMaxBytes = 16 << 10        // a login form is one token: admin.token's 4,096 bytes, each up to 3 URL-encoded, and next
	pageQRSize        = 256             // pixels of the pairing code's QR image
)

var htmlContentValue = []string{"text/html; charset=utf-8"}

var (
	probNoSession = problemType{"no-session", "Not logged in", http.StatusUnauthorized}
	probCSRF      = problemType{"csrf", "Cross-site request refused", http.StatusForbidden}
)

// pageHeaders keep the page to its own origin: its scripts and styles only, never in a frame,
// no referrer leaving the server.
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Security-Policy"] = []string{"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"}
		h["X-Frame-Options"] = []string{"DENY"}
		h["X-Content-Type-Options"] = []string{"nosniff"}
		h["Referrer-Policy"] = []string{"same-origin"} // no-referrer would make browsers send Origin: null
		next.ServeHTTP(w, r)
	})
}

// pageRoutes are the status page's routes on a listener: the front door and the admin port.
func (s *Server) pageRoutes(r chi.Router, listener string) {
	r.Group(func(r chi.Router) {
		r.Use(pageHeaders)
		r.Get("/status/assets/{name}", s.handle(s.pageAsset))
		r.Group(func(r chi.Router) {
			r.Use(noStore)
			if listener == serviceAdmin {
				r.Get("/", s.handle(s.page))
			}
			r.Get("/status", s.handle(s.page))
			r.Post("/status/login", s.handle(s.pageLogin))
			r.Get("/status/events", s.handle(s.pageEvents))
			// Log out of a session that has ended already is the login form again, not an
			// error: a page left open over a restart still has its button.
			r.With(s.requirePageActionIfSession).Post("/status/logout", s.handle(s.pageLogout))
			r.Group(func(r chi.Router) {
				r.Use(s.requirePageAction)
				r.Post("/status/pairing-codes", s.handle(s.pagePairingCode))
				r.Post("/status/devices/{id}/revoke", s.handle(s.pageRevoke))
				r.Post("/status/webhook/{order}/retry", s.handle(s.pageRetryWebhook))
			})
		})
	})
}

// pageSessionOf returns the request's session, if its cookie names a live one (the Secure
// cookie's first, when the browser sends both).
func (s *Server) pageSessionOf(r *http.Request) (pageSession, bool) {
	if live := s.pageSessionsOf(r); len(live) > 0 {
		return live[0], true
	}
	return pageSession{}, false
}

// pageSessionsOf returns the live sessions the request's cookies name: two when a browser that
// logged in on the plain port and through a TLS proxy sends both.
func (s *Server) pageSessionsOf(r *http.Request) []pageSession {
	var live []pageSession
	for _, name := range []string{pageCookieTLS, pageCookie} {
		if c, err := r.Cookie(name); err == nil {
			if sess, ok := s.sessions.get(c.Value, s.now()); ok {
				live = append(live, sess)
			}
		}
	}
	return live
}

// sessionCookie is the page's session cookie for r: Secure, under a name of its own, for a
// request that came over HTTPS (overTLS).
func sessionCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	c := &http.Cookie{Name: pageCookie, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if overTLS(r) {
		c.Name, c.Secure = pageCookieTLS, true
	}
	return c
}

// overTLS tells a login that came over HTTPS: through a reverse proxy that adds TLS (which says
// so with X-Forwarded-Proto), the session cookie is then marked Secure, so that the browser never
// sends it over the plain HTTP ports. The header is the client's word only for a request that
// did not pass a proxy; such a client then gets a cookie its browser keeps for HTTPS only.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// sameOrigin tells whether a browser request comes from a page of this server. Browsers send
// Origin on every POST; a request without one (a script, curl) is judged by its token alone.
func sameOrigin(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// requirePageAction lets through only actions of a logged-in page: the session cookie, the
// session's CSRF token (header X-CSRF-Token, or the csrf form field) and the page's own origin.
func (s *Server) requirePageAction(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		live := s.pageSessionsOf(r)
		if len(live) == 0 {
			problem(w, r, probNoSession, "log in to the status page again: the session ended or never began")
			return
		}
		token := r.Header.Get("X-CSRF-Token")
		if token == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			r.Body = http.MaxBytesReader(w, r.Body, pageLoginMaxBytes)
			token = r.PostFormValue("csrf")
		}
		// The token of either session the cookies name: a page opened with one of them goes on
		// working when the other ends first.
		if !sameOrigin(r) || !slices.ContainsFunc(live, func(sess pageSession) bool { return sess.checkCSRF(token) }) {
			problem(w, r, probCSRF, "the action did not come from this server's status page: reload the page and try again")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requirePageActionIfSession is requirePageAction for a request that holds a live session;
// one without goes through if it comes from the page's own origin (a page left open over a
// restart). A form on another site's page arrives without the cookie (SameSite=Strict), and
// must not end the browser's session all the same.
func (s *Server) requirePageActionIfSession(next http.Handler) http.Handler {
	checked := s.requirePageAction(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.pageSessionOf(r); ok {
			checked.ServeHTTP(w, r)
			return
		}
		if !sameOrigin(r) {
			problem(w, r, probCSRF, "the action did not come from this server's status page: reload the page and try again")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pagePath is where the page lives on the listener that served r: what a form sends back to.
func pagePath(r *http.Request) string {
	if p := r.FormValue("next"); p == "/" || p == "/status" {
		return p
	}
	return "/status"
}

type pageView struct {
	ShopName, ServerID, Version string
	CSRF                        string // only on the page itself
	Next                        string // where login and logout return
	Error                       string // only on the login form
	AdminOff                    bool
}

// pageView is what the page and the login form show of this server; next is where they return.
func (s *Server) pageView(next string) pageView {
	return pageView{ShopName: s.o.ShopName, ServerID: s.o.ServerID, Version: s.o.Version, Next: next, AdminOff: s.o.AdminToken == ""}
}

// page serves the status page to a logged-in admin and the login form to anyone else.
func (s *Server) page(w http.ResponseWriter, r *http.Request) error {
	v := s.pageView(r.URL.Path)
	sess, ok := s.pageSessionOf(r)
	if !ok || v.AdminOff {
		return s.render(w, http.StatusOK, "login.html", v)
	}
	v.CSRF = sess.csrf
	return s.render(w, http.StatusOK, "page.html", v)
}

func (s *Server) render(w http.ResponseWriter, status int, name string, v pageView) error {
	var buf bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&buf, name, v); err != nil {
		return fmt.Errorf("status page: render %s: %w", name, err)
	}
	writeTyped(w, status, htmlContentValue, buf.Bytes())
	return nil
}

// pageAsset serves the page's embedded scripts, styles and icon.
func (s *Server) pageAsset(w http.ResponseWriter, r *http.Request) error {
	name, _ := pathParam(r, "name")
	b, err := fs.ReadFile(uiFiles, "ui/assets/"+name)
	if err != nil || name != path.Base(name) {
		return refuse(probNotFound, "the status page has no asset "+name)
	}
	w.Header()["Cache-Control"] = []string{"no-cache"}
	typ, ok := assetTypes[path.Ext(name)]
	if !ok {
		typ = "application/octet-stream"
	}
	writeTyped(w, http.StatusOK, []string{typ}, b)
	return nil
}

// assetTypes are the types of the page's assets, fixed: mime.TypeByExtension reads the Windows
// registry, where another program may have given .css another type, which the browser would
// refuse to apply (X-Content-Type-Options: nosniff).
var assetTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
}

// pageLogin checks the admin token of the login form and starts a session.
func (s *Server) pageLogin(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, pageLoginMaxBytes)
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return refuse(probBodyTooLarge, fmt.Sprintf("the login form is larger than %d bytes", pageLoginMaxBytes))
		}
		return refuse(probMalformedBody, "the login form could not be read: "+err.Error())
	}
	v := s.pageView(pagePath(r))
	if !sameOrigin(r) {
		return refuse(probCSRF, "the login did not come from this server's status page")
	}
	if v.AdminOff {
		return s.render(w, http.StatusForbidden, "login.html", v)
	}
	addr, now := remoteIP(r), s.now()
	// Trimmed as the admin API's bearer token is: a token pasted with a space or a line end
	// (which no token holds) is the token.
	wrong := !devices.EqualSecret(strings.TrimSpace(r.PostFormValue("token")), s.o.AdminToken)
	if ok, wait := s.sessions.tryLogin(addr, now, wrong); !ok {
		w.Header()["Retry-After"] = []string{fmt.Sprint(int(max(wait.Round(time.Second), time.Second).Seconds()))}
		v.Error = "Too many wrong tokens from this address. Try again in " + max(wait.Round(time.Second), time.Second).String() + "."
		return s.render(w, http.StatusTooManyRequests, "login.html", v)
	}
	if wrong {
		s.logGuess(r, addr, now, "status page: login refused: wrong admin token") // counted, and logged within the budget
		v.Error = "That is not this server's admin token (admin.token)."
		return s.render(w, http.StatusUnauthorized, "login.html", v)
	}
	id, _ := s.sessions.create(now)
	http.SetCookie(w, sessionCookie(r, id, int(pageSessionMax.Seconds())))
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "status page: admin logged in", slog.String(keyRemote, addr))
	http.Redirect(w, r, v.Next, http.StatusSeeOther)
	return nil
}

// pageLogout ends the sessions the browser names and returns to the login form. A browser may
// hold both cookies (a login on the plain admin port, another through a TLS proxy, whose
// requests carry both): ending one alone would leave it logged in by the other.
func (s *Server) pageLogout(w http.ResponseWriter, r *http.Request) error {
	for _, name := range []string{pageCookieTLS, pageCookie} {
		if c, err := r.Cookie(name); err == nil {
			s.sessions.end(c.Value)
		}
		http.SetCookie(w, &http.Cookie{Name: name, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: name == pageCookieTLS})
	}
	http.Redirect(w, r, pagePath(r), http.StatusSeeOther)
	return nil
}

// pageSnapshot is what the page shows, sent whole on every refresh.
type pageSnapshot struct {
	GeneratedAt time.Time `json:"generated_at"`
	Status      statusDoc `json:"status"`
	// OrdersToday counts the orders created since midnight, the server's local time.
	OrdersToday int64            `json:"orders_today"`
	Devices     []devices.Device `json:"devices"`
	// Unpaired are the devices that said hello on the LAN and are not paired.
	Unpaired []discovery.SeenDevice `json:"unpaired"`
	// WebhookFailures are the orders the ERP's webhook refused; null without a back office.
	WebhookFailures []storage.ExportFailure `json:"webhook_failures"`
}

func (s *Server) pageSnapshot(ctx context.Context) (pageSnapshot, error) {
	now := s.now()
	doc, err := s.statusDocument(ctx)
	if err != nil {
		return pageSnapshot{}, err
	}
	snap := pageSnapshot{GeneratedAt: now.UTC(), Status: doc, Unpaired: []discovery.SeenDevice{}}
	y, m, d := now.Local().Date()
	if snap.OrdersToday, err = s.o.DB.OrdersCreatedSince(ctx, time.Date(y, m, d, 0, 0, 0, 0, time.Local)); err != nil {
		return pageSnapshot{}, err
	}
	if snap.Devices, err = s.o.Devices.List(ctx); err != nil {
		return pageSnapshot{}, fmt.Errorf("status page: list devices: %w", err)
	}
	if s.o.Discovery != nil {
		seen := s.o.Discovery.Seen()
		markPaired(seen, snap.Devices)
		for _, sd := range seen {
			if sd.PairedAs == "" {
				snap.Unpaired = append(snap.Unpaired, sd)
			}
		}
	}
	if s.o.BackOffice != nil {
		if snap.WebhookFailures, err = s.o.BackOffice.WebhookFailures(ctx, pageWebhookLimit); err != nil {
			return pageSnapshot{}, fmt.Errorf("status page: webhook failures: %w", err)
		}
	}
	return snap, nil
}

// pageChanges wakes the page's streams when an action changed what they show.
type pageChanges struct {
	mu sync.Mutex // protects the field below
	ch chan struct{}
}

// wait returns a channel closed at the next change.
func (c *pageChanges) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *pageChanges) changed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// pageEvents streams snapshots: one at once, then one every pageRefresh and after every action.
// A browser whose session ended gets a logout event, and the page goes back to its login form.
func (s *Server) pageEvents(w http.ResponseWriter, r *http.Request) error {
	rc, err := openEventStream(w)
	if err != nil {
		return err
	}
	tick := time.NewTicker(pageRefresh)
	defer tick.Stop()
	ctx := r.Context()
	for {
		changed := s.pageChanges.wait()
		// A browser that stops reading (a tablet asleep) would hold the stream, its goroutine
		// and its snapshot for ever: each write has lan.write_timeout to get through.
		if s.o.WriteTimeout > 0 {
			rc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		}
		if _, ok := s.pageSessionOf(r); !ok {
			w.Write([]byte("event: logout\ndata: {}\n\n"))
			rc.Flush()
			return nil
		}
		if err := s.writeSnapshot(ctx, w); err != nil {
			return nil // the browser went away
		}
		if err := rc.Flush(); err != nil {
			return nil // the browser went away
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		case <-tick.C:
		case <-changed:
		}
	}
}

func (s *Server) writeSnapshot(ctx context.Context, w http.ResponseWriter) error {
	snap, err := s.pageSnapshot(ctx)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "status page: snapshot failed", slog.Any(keyError, err))
		msg, _ := json.Marshal(map[string]string{"error": err.Error()})
		_, err = fmt.Fprintf(w, "event: failure\ndata: %s\n\n", msg)
		return err
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("status page: encode snapshot: %w", err)
	}
	_, err = fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b)
	return err
}

// pairingAnswer is a new pairing code as the page shows it: large, and as a QR code a device
// with a camera can read (docs/devices.md#pairing-from-a-qr-code).
type pairingAnswer struct {
	devices.PairingCode
	URI string `json:"uri"`
	QR  string `json:"qr"` // a data: URL of a PNG image
}

func (s *Server) pagePairingCode(w http.ResponseWriter, r *http.Request) error {
	code, err := s.o.Devices.NewPairingCode(r.Context(), 0)
	if err != nil {
		return deviceFailed("create pairing code", err)
	}
	uri := PairingURI(s.o.ServerID, code.Code)
	png, err := qrcode.Encode(uri, qrcode.Medium, pageQRSize)
	if err != nil {
		return fmt.Errorf("status page: draw QR code: %w", err)
	}
	s.pageChanges.changed()
	return writeJSON(w, http.StatusCreated, pairingAnswer{PairingCode: code, URI: uri,
		QR: "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)})
}

// PairingURI is what the QR code of a pairing code says: the code, and the server it is for
// (the server_id of its discovery answers).
func PairingURI(serverID, code string) string {
	q := url.Values{"server": {serverID}, "code": {strings.ReplaceAll(code, "-", "")}}
	return "storeedge://pair?" + q.Encode()
}

func (s *Server) pageRevoke(w http.ResponseWriter, r *http.Request) error {
	id, _ := pathParam(r, "id")
	d, err := s.o.Devices.Revoke(r.Context(), id)
	if err != nil {
		return deviceFailed("revoke device", err)
	}
	s.streams.endDevice(id)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "status page: device revoked", slog.String("device_id", id))
	s.pageChanges.changed()
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) pageRetryWebhook(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.retryWebhookOrder(r); err != nil {
		return err
	}
	s.pageChanges.changed()
	return writeJSON(w, http.StatusOK, map[string]string{"status": "queued"})
}
