// Package logshiptest is a log intake for tests: an HTTPS server on 127.0.0.1 that implements
// the intake contract of docs/remote-support.md, keeps everything it receives for the test to
// read, and can be taken down, made to fail or made slow.
package logshiptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

// MaxBody bounds a request body, compressed or not; a bigger batch is answered 413.
const MaxBody = 8 << 20

// Fault makes the intake misbehave until it is set back to the zero Fault.
type Fault struct {
	Status     int           // answer every batch with this status (0: behave)
	RetryAfter string        // the Retry-After header sent with Status
	Delay      time.Duration // wait this long before answering
}

// Record is one record as the contract describes it.
type Record struct {
	Seq      uint64         `json:"seq"`
	Time     time.Time      `json:"time"`
	Level    string         `json:"level"`
	Message  string         `json:"message"`
	ServerID string         `json:"server_id"`
	ShopID   string         `json:"shop_id"`
	Version  string         `json:"version"`
	Attrs    map[string]any `json:"attrs"`
}

// Intake is a running test intake.
type Intake struct {
	URL    string // https://127.0.0.1:port/v1/input
	CAFile string // the CA of its certificate, for wan.extra_ca_file
	Key    string // the API key it accepts

	addr string
	tls  *tls.Config

	mu       sync.Mutex // protects the fields below
	srv      *http.Server
	fault    Fault
	records  []Record
	raw      bytes.Buffer // every request: headers and decompressed body
	requests int
	answers  map[int]int // status → count
	changed  chan struct{}
}

// Start runs an intake that accepts key, with a certificate of its own CA (CAFile), and stops
// it when the test ends.
func Start(t testing.TB, key string) *Intake {
	t.Helper()
	return StartWithCA(t, key, testenv.NewCA(t, "intake test CA"))
}

// StartWithCA is Start with a certificate issued by ca.
func StartWithCA(t testing.TB, key string, ca *testenv.CA) *Intake {
	t.Helper()
	_, _, cert := ca.Issue(t, "127.0.0.1")
	// Down and Up again on the same port: one no outgoing connection can take meanwhile.
	ln := testenv.ListenOutsideEphemeral(t)
	in := &Intake{
		addr:    ln.Addr().String(),
		CAFile:  ca.File,
		Key:     key,
		tls:     &tls.Config{Certificates: []tls.Certificate{cert}},
		answers: map[int]int{},
		changed: make(chan struct{}),
	}
	in.URL = "https://" + in.addr + "/v1/input"
	in.serve(ln)
	t.Cleanup(in.Down)
	return in
}

func (in *Intake) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(in.handle), ReadHeaderTimeout: 10 * time.Second}
	in.mu.Lock()
	in.srv = srv
	in.mu.Unlock()
	go srv.Serve(tls.NewListener(ln, in.tls))
}

// Down stops the intake: nothing listens on its port and open connections are cut.
func (in *Intake) Down() {
	in.mu.Lock()
	srv := in.srv
	in.srv = nil
	in.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Up starts the intake again on the same port.
func (in *Intake) Up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	in.serve(ln)
}

// SetFault makes the intake answer as f says.
func (in *Intake) SetFault(f Fault) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.fault = f
}

func (in *Intake) handle(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	f := in.fault
	in.mu.Unlock()
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	status, recs, raw := in.check(r)
	if status == http.StatusOK && f.Status != 0 {
		status, recs = f.Status, nil
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
	}
	in.mu.Lock()
	in.requests++
	in.answers[status]++
	in.raw.Write(raw)
	in.records = append(in.records, recs...)
	close(in.changed)
	in.changed = make(chan struct{})
	in.mu.Unlock()
	w.WriteHeader(status)
	if status != http.StatusOK {
		io.WriteString(w, http.StatusText(status))
	}
}

// check applies the contract to a request and returns the status it deserves, the records it
// carries, and the request as received (headers and decompressed body).
func (in *Intake) check(r *http.Request) (int, []Record, []byte) {
	var raw bytes.Buffer
	h := r.Header.Clone()
	if h.Get("Authorization") == "Bearer "+in.Key {
		h.Set("Authorization", "Bearer [the intake's key]") // the one place the key belongs
	}
	h.Write(&raw)
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	switch {
	case err != nil:
		return http.StatusBadRequest, nil, raw.Bytes()
	case len(body) > MaxBody:
		return http.StatusRequestEntityTooLarge, nil, raw.Bytes()
	case r.Method != http.MethodPost:
		return http.StatusMethodNotAllowed, nil, raw.Bytes()
	case r.Header.Get("Authorization") != "Bearer "+in.Key:
		return http.StatusUnauthorized, nil, raw.Bytes()
	}
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return http.StatusBadRequest, nil, raw.Bytes()
		}
		body, err = io.ReadAll(io.LimitReader(zr, MaxBody+1))
		if err != nil {
			return http.StatusBadRequest, nil, raw.Bytes()
		}
		if len(body) > MaxBody {
			return http.StatusRequestEntityTooLarge, nil, raw.Bytes()
		}
	}
	raw.Write(body)
	var recs []Record
	if err := json.Unmarshal(body, &recs); err != nil {
		return http.StatusBadRequest, nil, raw.Bytes()
	}
	return http.StatusOK, recs, raw.Bytes()
}

// Records returns every record accepted so far, in the order received (a batch sent again
// appears twice).
func (in *Intake) Records() []Record {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Record(nil), in.records...)
}

// Raw returns everything the intake received: each request's headers and decompressed body,
// refused ones too, but for the intake's own key in the Authorization header.
func (in *Intake) Raw() []byte {
	in.mu.Lock()
	defer in.mu.Unlock()
	return bytes.Clone(in.raw.Bytes())
}

// Answers returns how many requests got each status.
func (in *Intake) Answers() map[int]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[int]int, len(in.answers))
	for k, v := range in.answers {
		out[k] = v
	}
	return out
}

// Wait waits until cond holds of the records accepted, checking after each request, and fails
// the test after timeout.
func (in *Intake) Wait(t testing.TB, what string, timeout time.Duration, cond func([]Record) bool) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		in.mu.Lock()
		recs, changed := append([]Record(nil), in.records...), in.changed
		in.mu.Unlock()
		if cond(recs) {
			return recs
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("intake: timed out after %v waiting for %s; %d records, answers %v", timeout, what, len(recs), in.Answers())
			return nil
		}
	}
}

// WaitAnswer waits until the intake has answered status at least n times.
func (in *Intake) WaitAnswer(t testing.TB, status, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		in.mu.Lock()
		got, changed := in.answers[status], in.changed
		in.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("intake: timed out after %v waiting for %d answers %d; answers %v", timeout, n, status, in.Answers())
		}
	}
}

// Messages returns the message of each record by sequence number: a record received twice
// counts once.
func Messages(recs []Record) map[uint64]string {
	out := make(map[uint64]string, len(recs))
	for _, r := range recs {
		out[r.Seq] = r.Message
	}
	return out
}
