package cloudsim

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// Upload limits of the contract, and the sim's own limit on other bodies.
const (
	MaxUploadEvents = 500
	MaxUploadBytes  = 4 << 20
	MaxEventKey     = 200
	maxBodyBytes    = 1 << 20
)

// Handler returns the HTTP handler: the cloud API under /v1 (bearer store key, faults applied)
// and the unauthenticated control API under /_sim/.
func (s *Sim) Handler() http.Handler {
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /v1/feed/{collection}", s.handleFeed)
	v1.HandleFunc("POST /v1/events", s.handleEvents)
	v1.HandleFunc("GET /v1/config", s.handleConfig)
	v1.HandleFunc("POST /v1/heartbeat", s.handleHeartbeat)
	v1.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})

	mux := http.NewServeMux()
	mux.Handle("/v1/", s.guard(v1))
	mux.HandleFunc("POST /_sim/mutate", s.handleMutate)
	mux.HandleFunc("GET /_sim/faults", s.handleGetFaults)
	mux.HandleFunc("POST /_sim/faults", s.handleSetFaults)
	mux.HandleFunc("GET /_sim/export/{collection}", s.handleExport)
	mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
	mux.HandleFunc("GET /_sim/events", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Events()) })
	mux.HandleFunc("GET /_sim/heartbeat", s.handleGetHeartbeat)
	if s.opts.Media.BuiltIn {
		mux.HandleFunc("GET /_blob/{container}/{name...}", s.handleBlob)
	}
	return mux
}

// guard authenticates /v1 requests, then injects latency, rate limiting and errors.
func (s *Sim) guard(next http.Handler) http.Handler {
	want := []byte("Bearer " + s.opts.StoreKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			// A misconfigured shop retries forever; one line per minute is enough.
			if ok, n := s.authLog.allow(s.now(), time.Minute); ok {
				s.log.Warn("cloudsim: request without the store key", logKeyRemote, r.RemoteAddr, logKeySuppressed, n)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloudsim"`)
			writeProblem(w, http.StatusUnauthorized, "missing or wrong store key")
			return
		}
		f := s.Faults()
		if f.LatencyMS > 0 {
			s.injected.latency.Add(1)
			t := time.NewTimer(time.Duration(f.LatencyMS) * time.Millisecond)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if s.roll(f.RateLimitRate) {
			s.injected.rateLimits.Add(1)
			s.log.Debug("cloudsim: fault injected", logKeyFault, "rate_limit", logKeyPath, r.URL.Path)
			f.setRetryAfter(w.Header(), max(f.RetryAfterSeconds, 1), s.now())
			writeProblem(w, http.StatusTooManyRequests, "rate limited (injected fault)")
			return
		}
		if s.roll(f.ErrorRate) {
			s.injected.errors.Add(1)
			status := http.StatusInternalServerError
			if s.randN(2) == 0 {
				status = http.StatusServiceUnavailable
			}
			if status == http.StatusServiceUnavailable {
				f.setRetryAfter(w.Header(), f.RetryAfter503, s.now())
			}
			s.log.Debug("cloudsim: fault injected", logKeyFault, "error", logKeyStatus, status, logKeyPath, r.URL.Path)
			writeProblem(w, status, "platform error (injected fault)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Sim) handleFeed(w http.ResponseWriter, r *http.Request) {
	coll, ok := collIndex(r.PathValue("collection"))
	if !ok {
		writeProblem(w, http.StatusNotFound, fmt.Sprintf("no collection %q; collections are %s",
			r.PathValue("collection"), strings.Join(cloudapi.Collections, ", ")))
		return
	}
	q := r.URL.Query()
	limit := DefaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("limit %q is not an integer in 1..%d", v, MaxPageSize))
			return
		}
		limit = n
	}
	stream := false
	if v := q.Get("stream"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("stream %q is not true or false", v))
			return
		}
		stream = b
	}
	head := s.Head()
	cur, err := s.parseCursor(coll, q.Get("cursor"))
	var first page
	if err == nil {
		first, err = s.page(coll, cur, limit, make([]pageItem, 0, limit))
	}
	switch {
	case errors.Is(err, errGoneCursor), errors.Is(err, errBadCursor):
		// A cursor is opaque to the shop: one this feed cannot read is unknown to it, and the
		// shop starts again from an empty cursor (cloud-api.md).
		writeProblem(w, http.StatusGone, fmt.Sprintf("cursor unknown or expired (%v); start again with an empty cursor", err))
		return
	case err != nil:
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("cursor %q: %v", q.Get("cursor"), err))
		return
	}

	f := s.Faults()
	cutAt := int64(-1)
	if s.roll(f.CutRate) {
		// Cut somewhere in what this response is expected to carry, end lines included.
		expected := int64(len(first.items)) + 1
		if stream && first.more {
			expected += first.remaining + first.remaining/int64(limit) + 1
		}
		cutAt = s.randN(expected)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	fw := &feedWriter{
		s: s, coll: coll, w: bufio.NewWriterSize(w, 64<<10), flush: func() { _ = rc.Flush() },
		malformedRate: f.MalformedRate, cutAt: cutAt,
	}
	pages, err := s.writeFeed(r.Context(), fw, first, limit, stream, head)
	s.injected.malformed.Add(fw.corrupted)
	if errors.Is(err, errCut) {
		s.injected.cuts.Add(1)
		s.log.Debug("cloudsim: fault injected", logKeyFault, "cut", logKeyCollection, collNames[coll], logKeyLines, fw.lines)
		// Abort the response: net/http drops the connection without ending the body, so the
		// client sees an unexpected EOF in the middle of a line.
		panic(http.ErrAbortHandler)
	}
	if err == nil {
		err = fw.w.Flush()
	}
	if err != nil {
		s.log.Debug("cloudsim: feed response ended early", logKeyCollection, collNames[coll], logKeyErr, err)
		return
	}
	s.log.Debug("cloudsim: feed served", logKeyCollection, collNames[coll], logKeyPages, pages, logKeyLines, fw.lines)
}

func (s *Sim) handleEvents(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxUploadBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("upload body larger than %d bytes", MaxUploadBytes))
			return
		}
		writeProblem(w, http.StatusBadRequest, "read upload body: "+err.Error())
		return
	}
	var req cloudapi.UploadRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeProblem(w, http.StatusBadRequest, "upload body is not a JSON batch: "+err.Error())
		return
	}
	if len(req.Events) > MaxUploadEvents {
		writeProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("batch of %d events; at most %d", len(req.Events), MaxUploadEvents))
		return
	}
	if f := s.Faults(); s.roll(f.UploadErrorRate) {
		s.injected.uploadErrors.Add(1)
		f.setRetryAfter(w.Header(), f.RetryAfter503, s.now())
		s.log.Debug("cloudsim: fault injected", logKeyFault, "upload_error")
		writeProblem(w, http.StatusServiceUnavailable, "event store unavailable (injected fault); nothing was stored")
		return
	}
	res := s.store(req.Events)
	s.log.Debug("cloudsim: events uploaded", logKeyAccepted, len(res.Accepted), logKeyDuplicate, len(res.Duplicate), logKeyRejected, len(res.Rejected))
	if f := s.Faults(); s.roll(f.LostAnswerRate) {
		s.injected.lostAnswers.Add(1)
		f.setRetryAfter(w.Header(), f.RetryAfter503, s.now())
		s.log.Debug("cloudsim: fault injected", logKeyFault, "lost_answer")
		writeProblem(w, http.StatusServiceUnavailable, "gateway timeout after the events were stored (injected fault)")
		return
	}
	if f := s.Faults(); s.roll(f.BadAnswerRate) {
		// Every other one leaves the duplicates readable (a client may salvage them); the others
		// name no key in a form that can be read.
		var dup any = res.Duplicate
		if s.injected.badAnswers.Add(1)%2 == 0 {
			dup = strings.Join(res.Duplicate, ",")
		}
		s.log.Debug("cloudsim: fault injected", logKeyFault, "bad_answer")
		writeJSON(w, http.StatusOK, map[string]any{"accepted": strings.Join(res.Accepted, ","), "duplicate": dup, "rejected": res.Rejected})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// store records the events whose key is new, in order.
func (s *Sim) store(events []cloudapi.Event) cloudapi.UploadResponse {
	res := cloudapi.UploadResponse{Accepted: []string{}, Duplicate: []string{}, Rejected: []cloudapi.Rejection{}}
	s.emu.Lock()
	defer s.emu.Unlock()
	for _, ev := range events {
		if reason := eventProblem(ev); reason != "" {
			res.Rejected = append(res.Rejected, cloudapi.Rejection{Key: ev.Key, Reason: reason})
			continue
		}
		if _, seen := s.eventKeys[ev.Key]; seen {
			res.Duplicate = append(res.Duplicate, ev.Key)
			continue
		}
		s.eventKeys[ev.Key] = struct{}{}
		s.events = append(s.events, ev)
		res.Accepted = append(res.Accepted, ev.Key)
	}
	return res
}

// eventProblem returns why an event is refused, or "".
func eventProblem(ev cloudapi.Event) string {
	switch {
	case ev.Key == "":
		return "key is missing"
	case len(ev.Key) > MaxEventKey:
		return fmt.Sprintf("key longer than %d bytes", MaxEventKey)
	case ev.Type == "":
		return "type is missing"
	}
	if d := bytes.TrimSpace(ev.Data); len(d) == 0 || d[0] != '{' {
		return "data is not a JSON object"
	}
	return ""
}

// Events returns the accepted events in the order they were first accepted.
func (s *Sim) Events() []cloudapi.Event {
	s.emu.Lock()
	defer s.emu.Unlock()
	return append([]cloudapi.Event{}, s.events...)
}

func (s *Sim) handleConfig(w http.ResponseWriter, r *http.Request) {
	s.configs.Add(1)
	var c cloudapi.RemoteConfig
	c.StoreID = cloudapi.JSONText(s.opts.StoreID)
	c.Name = cloudapi.JSONText(s.opts.StoreName)
	c.ServiceBus.Namespace = cloudapi.JSONText(s.opts.ServiceBusNamespace)
	c.ServiceBus.Queue = "orders-" + s.opts.StoreID
	c.Media.ContainerURL = s.opts.MediaContainerURL
	if s.opts.Media.enabled() {
		u, err := s.mediaContainerURL(r, s.takeSASRefusal())
		if err != nil {
			writeProblem(w, http.StatusInternalServerError, "media container URL: "+err.Error())
			return
		}
		c.Media.ContainerURL = u
	}
	flags := map[string]bool{}
	for k, v := range s.opts.Flags {
		flags[k] = v
	}
	c.Flags, _ = json.Marshal(flags)
	c.HeartbeatSeconds = json.RawMessage("60")
	writeJSON(w, http.StatusOK, c)
}

// HeartbeatRecord is the last heartbeat received.
type HeartbeatRecord struct {
	ReceivedAt time.Time          `json:"received_at"`
	Heartbeat  cloudapi.Heartbeat `json:"heartbeat"`
}

func (s *Sim) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb cloudapi.Heartbeat
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&hb); err != nil {
		writeProblem(w, http.StatusBadRequest, "heartbeat body: "+err.Error())
		return
	}
	s.emu.Lock()
	s.heartbeat = &HeartbeatRecord{ReceivedAt: s.now().UTC(), Heartbeat: hb}
	s.heartbeats++
	s.emu.Unlock()
	s.log.Debug("cloudsim: heartbeat", logKeyServerID, hb.ServerID)
	w.WriteHeader(http.StatusNoContent)
}

// LastHeartbeat returns the last heartbeat received, or nil.
func (s *Sim) LastHeartbeat() *HeartbeatRecord {
	s.emu.Lock()
	defer s.emu.Unlock()
	if s.heartbeat == nil {
		return nil
	}
	hb := *s.heartbeat
	return &hb
}

func (s *Sim) handleGetHeartbeat(w http.ResponseWriter, _ *http.Request) {
	hb := s.LastHeartbeat()
	if hb == nil {
		writeProblem(w, http.StatusNotFound, "no heartbeat received yet")
		return
	}
	writeJSON(w, http.StatusOK, hb)
}

func (s *Sim) handleMutate(w http.ResponseWriter, r *http.Request) {
	var m Mutation
	if err := decodeStrict(w, r, &m); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := m.Validate(); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	res := s.Mutate(m)
	s.log.Info("cloudsim: mutation applied", logKeySeq, res.Seq, logKeyMutation, m, logKeyHead, res.Head)
	if _, err := s.SyncBlobs(r.Context()); err != nil {
		writeProblem(w, http.StatusBadGateway, "mutation applied, but its media blobs could not be uploaded: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Sim) handleGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

// handleSetFaults replaces all faults with the body; absent fields are zero.
func (s *Sim) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := decodeStrict(w, r, &f); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.SetFaults(f); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Sim) handleExport(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("collection")
	if _, ok := collIndex(name); !ok {
		writeProblem(w, http.StatusNotFound, fmt.Sprintf("no collection %q", name))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	if err := s.Export(w, name); err != nil {
		s.log.Debug("cloudsim: export ended early", logKeyCollection, name, logKeyErr, err)
	}
}

// decodeStrict decodes a small JSON body, refusing unknown fields so a typo in a test's fault
// settings is an error rather than a silently ignored knob. An empty body decodes as {}.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
