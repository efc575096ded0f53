package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/storage"
)

// Authentication (docs/devices.md): devices send "Authorization: Bearer <device token>", the
// token they received when they paired; admins send "Authorization: Bearer <admin.token>".
// Health checks and pairing need neither.

var (
	probUnauthorized = problemType{"unauthorized", "Credential missing or not valid", http.StatusUnauthorized}
	probAdminOff     = problemType{"admin-disabled", "Admin API disabled", http.StatusForbidden}
	probThrottled    = problemType{"too-many-attempts", "Too many failed attempts", http.StatusTooManyRequests}
	probNoTarget     = problemType{"no-target", "No device matches", http.StatusUnprocessableEntity}
)

// access is who may call a service's routes.
type access int

const (
	accessDevice access = iota // a paired device
	accessAdmin                // the admin credential
	accessOwn                  // the service's routes say, route by route
)

// deviceID is the authenticated device of a request, "" for none.
func deviceID(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.device
	}
	return ""
}

// bearer returns the credential of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// requireDevice lets through only requests with the credential of a paired, unrevoked device.
// The registry is asked on every request, so a revocation stops the very next one.
func (s *Server) requireDevice(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok {
			problem(w, r, probUnauthorized, "this route needs a device credential: send Authorization: Bearer <token>, with the token the device received when it paired (POST /api/v1/devices/pair)")
			return
		}
		id, err := s.o.Devices.Authenticate(token)
		if err != nil { // devices.ErrUnauthorized or ErrRevoked
			s.answerError(w, r, err)
			return
		}
		// observe, around every router, put the request's state in its context.
		stateOf(r.Context()).device = id
		next.ServeHTTP(w, r)
	})
}

// requireAdmin lets through only requests with the admin credential (admin.token). Wrong
// credentials count against their address with the status page's wrong logins: ten in a minute,
// and the address gets 429 until the minute ends, whatever it sends.
func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.o.AdminToken == "" {
			problem(w, r, probAdminOff, "this server has no admin credential: set admin.token (or STOREEDGE_ADMIN_TOKEN) to use the admin API")
			return
		}
		token, ok := bearer(r)
		wrong := ok && !devices.EqualSecret(token, s.o.AdminToken)
		msg := "admin API: request refused: wrong admin token"
		if wrong && s.o.Devices != nil {
			if _, err := s.o.Devices.Authenticate(token); err == nil {
				msg = "admin API: request refused: a device's credential, not the admin token"
			}
		}
		if s.guessesSpent(w, r, wrong, msg) { // whatever it sends: the address waits out the minute
			return
		}
		if !ok || wrong {
			problem(w, r, probUnauthorized, "this route needs the admin credential: send Authorization: Bearer <admin.token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// guessesSpent answers 429 and reports true when the request's address sent too many wrong
// admin credentials (the API's, the metrics', the status page's login) in the current minute;
// otherwise a wrong credential (wrong) is counted against it and logged with msg.
func (s *Server) guessesSpent(w http.ResponseWriter, r *http.Request, wrong bool, msg string) bool {
	addr, now := remoteIP(r), s.now()
	allowed, wait := s.sessions.tryLogin(addr, now, wrong)
	if allowed {
		if wrong {
			s.logGuess(r, addr, now, msg)
		}
		return false
	}
	wait = max(wait.Round(time.Second), time.Second)
	s.answerError(w, r, &apiError{typ: probThrottled, retryAfter: wait,
		detail: fmt.Sprintf("too many wrong admin credentials from this address; try again in %v", wait)})
	return true
}

// logGuess logs msg with the address of a wrong credential: at most guessLogBudget lines a
// minute, then one line saying how many more there were.
func (s *Server) logGuess(r *http.Request, addr string, now time.Time, msg string) {
	log, dropped := s.guessLog.Allow(now)
	if dropped > 0 {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "wrong admin credentials not logged in the last minute", slog.Int("count", dropped))
	}
	if log {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, msg, slog.String(keyRemote, addr))
	}
}

// guessLogBudget is how many wrong admin credentials are logged a minute, from all addresses.
const guessLogBudget = 100

// devicesRoutes are the devices service: pairing (open to all: it is how a device gets its
// credential) and what a paired device says about itself.
func (s *Server) devicesRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(noStore)
		r.Post("/api/v1/devices/pair", s.handle(s.pair))
		r.Group(func(r chi.Router) {
			r.Use(s.requireDevice)
			r.Post("/api/v1/devices/heartbeat", s.handle(s.heartbeat))
			r.Get("/api/v1/devices/me", s.handle(s.me))
		})
	})
}

// adminDeviceRoutes are the admin's view of devices and commands, part of the admin service.
func (s *Server) adminDeviceRoutes(r chi.Router) {
	r.Get("/api/v1/admin/devices", s.handle(s.listDevices))
	r.Get("/api/v1/admin/devices/{id}", s.handle(s.getDevice))
	r.Patch("/api/v1/admin/devices/{id}", s.handle(s.renameDevice))
	r.Post("/api/v1/admin/devices/{id}/revoke", s.handle(s.revokeDevice))
	r.Post("/api/v1/admin/pairing-codes", s.handle(s.newPairingCode))
	r.Post("/api/v1/admin/commands", s.handle(s.sendCommand))
	r.Get("/api/v1/admin/commands", s.handle(s.listCommands))
	r.Get("/api/v1/admin/commands/{id}", s.handle(s.getCommand))
}

// remoteIP is the address the request came from, where the server will dial the device.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// deviceFailed names an operation of the device registry that failed; what it did not find is a
// device. The adapter answers the registry's errors.
func deviceFailed(op string, err error) error {
	return whenMissing(fmt.Errorf("%s: %w", op, err), "no such device")
}

func (s *Server) pair(w http.ResponseWriter, r *http.Request) error {
	// A throttled address waits out the minute whatever it sends, a body that cannot be read too.
	if err := s.o.Devices.PairingThrottled(remoteIP(r)); err != nil {
		return deviceFailed("pair device", err)
	}
	var req devices.PairRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	creds, err := s.o.Devices.Pair(r.Context(), req, remoteIP(r))
	if err != nil {
		return deviceFailed("pair device", err)
	}
	return writeJSON(w, http.StatusCreated, creds)
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) error {
	var hb devices.Heartbeat
	if err := decodeBody(r, &hb); err != nil {
		return err
	}
	d, err := s.o.Devices.Heartbeat(r.Context(), deviceID(r.Context()), hb, remoteIP(r))
	if err != nil {
		return deviceFailed("heartbeat", err)
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	d, err := s.o.Devices.Get(r.Context(), deviceID(r.Context()))
	if err != nil {
		return deviceFailed("read device", err)
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	all, err := s.o.Devices.List(r.Context())
	if err != nil {
		return deviceFailed("list devices", err)
	}
	return writeJSON(w, http.StatusOK, struct {
		Items []devices.Device `json:"items"`
	}{all})
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) error {
	id, _ := pathParam(r, "id")
	d, err := s.o.Devices.Get(r.Context(), id)
	if err != nil {
		return deviceFailed("read device", err)
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) renameDevice(w http.ResponseWriter, r *http.Request) error {
	id, _ := pathParam(r, "id")
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	d, err := s.o.Devices.Rename(r.Context(), id, req.Name)
	if err != nil {
		return deviceFailed("rename device", err)
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) revokeDevice(w http.ResponseWriter, r *http.Request) error {
	id, _ := pathParam(r, "id")
	d, err := s.o.Devices.Revoke(r.Context(), id)
	if err != nil {
		return deviceFailed("revoke device", err)
	}
	s.streams.endDevice(id)
	return writeJSON(w, http.StatusOK, d)
}

// duration is a JSON duration, "10m" or "24h".
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration in quotes, like "10m" or "24h"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New(`want a duration in quotes, like "10m" or "24h"`)
	}
	*d = duration(v)
	return nil
}

func (s *Server) newPairingCode(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		TTL duration `json:"ttl"`
	}
	if err := decodeOptionalBody(r, &req); err != nil {
		return err
	}
	if ttl := time.Duration(req.TTL); ttl != 0 && (ttl < time.Minute || ttl > 24*time.Hour) {
		return refuse(probInvalidBody, "ttl: want a duration between 1m and 24h")
	}
	code, err := s.o.Devices.NewPairingCode(r.Context(), time.Duration(req.TTL))
	if err != nil {
		return deviceFailed("create pairing code", err)
	}
	return writeJSON(w, http.StatusCreated, code)
}

func (s *Server) sendCommand(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Target  devices.Target  `json:"target"`
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
		TTL     duration        `json:"ttl"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	cmds, err := s.o.Devices.Send(r.Context(), req.Target, req.Type, req.Payload, time.Duration(req.TTL))
	if err != nil {
		return deviceFailed("queue command", err)
	}
	return writeJSON(w, http.StatusCreated, struct {
		Items []storage.Command `json:"items"`
	}{cmds})
}

var commandStates = []string{storage.CommandQueued, storage.CommandSent, storage.CommandAcknowledged, storage.CommandExpired, storage.CommandFailed}

func (s *Server) listCommands(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "limit", "device", "state", "before")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	f := storage.CommandFilter{DeviceID: q.Get("device"), State: q.Get("state"), Limit: limit + 1}
	if f.State != "" && !slices.Contains(commandStates, f.State) {
		return refuse(probBadParameter, "state: "+strconv.Quote(f.State)+" is not one of "+strings.Join(commandStates, ", "))
	}
	if v := q.Get("before"); v != "" {
		n, ok := wholeNumber(v)
		if !ok || n <= 0 {
			return refuse(probBadParameter, "before: "+strconv.Quote(v)+" is not a positive whole number (the next value of the previous page)")
		}
		f.Before = n
	}
	cmds, err := s.o.Devices.Commands(r.Context(), f)
	if err != nil {
		return deviceFailed("list commands", err)
	}
	resp := struct {
		Items []storage.Command `json:"items"`
		Next  string            `json:"next,omitempty"`
	}{Items: cmds}
	if len(cmds) > limit {
		resp.Items = cmds[:limit]
		resp.Next = strconv.FormatInt(cmds[limit-1].Seq, 10)
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getCommand(w http.ResponseWriter, r *http.Request) error {
	id, _ := pathParam(r, "id")
	c, err := s.o.Devices.Command(r.Context(), id)
	if err != nil {
		return whenMissing(fmt.Errorf("read command: %w", err), "no command "+strconv.Quote(id))
	}
	return writeJSON(w, http.StatusOK, c)
}
