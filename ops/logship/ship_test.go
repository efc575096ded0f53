package logship

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/logship/logshiptest"
	"github.com/storeedge/storeedge/tools/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "intake-key-0123456789"

// rig is a shipper on a disk buffer in dir, posting to an intake through a real proxy.
type rig struct {
	t      *testing.T
	in     *logshiptest.Intake
	proxy  string
	dir    string
	s      *Shipper
	log    *slog.Logger
	local  *testenv.Buffer
	cancel context.CancelFunc
	ran    chan error
}

func newRig(t *testing.T, in *logshiptest.Intake, proxy, dir string, mod func(*Options)) *rig {
	t.Helper()
	d, err := wan.New(wan.Options{ProxyURL: proxy, ExtraCAFile: in.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	hc := d.HTTPClient(0)
	t.Cleanup(hc.CloseIdleConnections)
	o := Options{
		Dir: dir, URL: in.URL, APIKey: testKey, Level: slog.LevelInfo,
		BufferBytes: 1 << 20, BatchSize: 100, BatchInterval: 20 * time.Millisecond,
		Client: hc, Route: d.Describe("127.0.0.1:1"), Meta: Meta{ServerID: "se-test", ShopID: "shop-1", Version: "v-test"},
		UserAgent: "storeedge/test", MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		RequestTimeout: 5 * time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	local := &testenv.Buffer{}
	r := &rig{t: t, in: in, proxy: proxy, dir: dir, s: s, local: local,
		log: slog.New(s.Handler(slog.NewTextHandler(local, &slog.HandlerOptions{Level: slog.LevelWarn})))}
	t.Cleanup(r.stop)
	return r
}

// run starts the sender.
func (r *rig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.ran = cancel, make(chan error, 1)
	go func() { r.ran <- r.s.Run(ctx) }()
}

// stop stops the sender and closes the shipper, as the daemon does when it stops.
func (r *rig) stop() {
	if r.cancel != nil {
		r.cancel()
		if err := <-r.ran; err != context.Canceled {
			r.t.Errorf("Run returned %v, want context.Canceled", err)
		}
		r.cancel = nil
	}
	if err := r.s.Close(); err != nil {
		r.t.Errorf("Close: %v", err)
	}
}

// waitStatus polls the shipper's status (another goroutine's state) until cond holds.
func (r *rig) waitStatus(what string, cond func(Status) bool) Status {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := r.s.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s; status %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logN logs n records "record i" with an attribute i.
func (r *rig) logN(from, n int) {
	for i := from; i < from+n; i++ {
		r.log.Info(fmt.Sprintf("record %d", i), slog.Int("i", i))
	}
}

// received returns the intake's records of logN by their number, failing on one seen with two
// numbers or a sequence number seen with two messages.
func received(t *testing.T, in *logshiptest.Intake) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for seq, msg := range logshiptest.Messages(in.Records()) {
		if !strings.HasPrefix(msg, "record ") {
			continue
		}
		if prev, dup := out[msg]; dup && prev != seq {
			t.Fatalf("%q shipped as records %d and %d", msg, prev, seq)
		}
		out[msg] = seq
	}
	return out
}

func hasAll(from, n int) func(recs []logshiptest.Record) bool {
	return func(recs []logshiptest.Record) bool {
		seen := map[string]bool{}
		for _, r := range recs {
			seen[r.Message] = true
		}
		for i := from; i < from+n; i++ {
			if !seen[fmt.Sprintf("record %d", i)] {
				return false
			}
		}
		return true
	}
}

func TestShipsThroughProxies(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "tinyproxy.log")
	for _, tc := range []struct{ name, proxy string }{
		{"http-connect", "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{LogFile: logFile})},
		{"socks5", "socks5://" + testenv.StartDante(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := logshiptest.Start(t, testKey)
			r := newRig(t, in, tc.proxy, t.TempDir(), nil)
			r.run()
			r.logN(0, 250)
			r.log.Debug("below the level: not shipped")
			r.log.With("component", "feed").WithGroup("page").Warn("grouped", slog.Int("n", 3), slog.Group("cursor", slog.String("at", "c1")))
			recs := in.Wait(t, "every record", 30*time.Second, func(recs []logshiptest.Record) bool { return hasAll(0, 250)(recs) && len(recs) >= 251 })
			got := received(t, in)
			for i := range 250 {
				if seq := got[fmt.Sprintf("record %d", i)]; seq != uint64(i+1) {
					t.Fatalf("record %d has sequence number %d, want %d", i, seq, i+1)
				}
			}
			var grouped *logshiptest.Record
			for i := range recs {
				if recs[i].Message == "grouped" {
					grouped = &recs[i]
				}
				if strings.Contains(recs[i].Message, "below the level") {
					t.Error("a DEBUG record was shipped at level info")
				}
			}
			if grouped == nil || grouped.Level != "WARN" || grouped.ServerID != "se-test" || grouped.ShopID != "shop-1" || grouped.Version != "v-test" ||
				grouped.Attrs["component"] != "feed" || grouped.Attrs["page.n"] != float64(3) || grouped.Attrs["page.cursor.at"] != "c1" {
				t.Errorf("grouped record as received: %+v", grouped)
			}
			if !strings.Contains(r.local.String(), "grouped") || strings.Contains(r.local.String(), "record 1") {
				t.Errorf("the local handler's own level is not kept: %q", r.local.String())
			}
			st := r.waitStatus("every record counted as shipped", func(st Status) bool { return st.Shipped >= 251 })
			if st.State != StateOK || st.Buffered != 0 || st.Dropped != 0 || st.LastSuccess == nil || !strings.Contains(st.Route, "via") {
				t.Errorf("status after shipping: %+v", st)
			}
			if tc.name == "http-connect" {
				b, _ := os.ReadFile(logFile)
				if !strings.Contains(string(b), "CONNECT "+strings.TrimPrefix(strings.TrimSuffix(in.URL, "/v1/input"), "https://")) {
					t.Errorf("the proxy's log shows no tunnel to the intake:\n%s", b)
				}
			}
		})
	}
}

// The intake goes down, answers 5xx, 429 with Retry-After, and too slowly: records wait on
// disk and all arrive once it takes them again, each once.
func TestOutages(t *testing.T) {
	proxy := "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{})
	in := logshiptest.Start(t, testKey)
	r := newRig(t, in, proxy, t.TempDir(), func(o *Options) { o.RequestTimeout = 300 * time.Millisecond })
	r.run()
	r.logN(0, 10)
	in.Wait(t, "the first records", 30*time.Second, hasAll(0, 10))

	in.Down()
	r.logN(10, 100)
	st := r.waitStatus("the outage in status", func(st Status) bool { return st.State == StateRetrying && st.Buffered >= 100 })
	if st.LastError == "" {
		t.Errorf("no last error during the outage: %+v", st)
	}
	in.Up(t)
	in.Wait(t, "the records of the outage", 30*time.Second, hasAll(10, 100))

	in.SetFault(logshiptest.Fault{Status: http.StatusServiceUnavailable})
	r.logN(110, 20)
	in.WaitAnswer(t, http.StatusServiceUnavailable, 2, 30*time.Second)
	if st := r.s.Status(); st.State != StateRetrying || !strings.Contains(st.LastError, "503") {
		t.Errorf("status while the intake answers 503: %+v", st)
	}
	in.SetFault(logshiptest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})
	r.logN(130, 20)
	in.WaitAnswer(t, http.StatusTooManyRequests, 1, 30*time.Second)
	asked := time.Now()
	in.SetFault(logshiptest.Fault{Delay: time.Second}) // slower than the request timeout
	r.logN(150, 20)
	r.waitStatus("a timeout in status", func(st Status) bool {
		return strings.Contains(st.LastError, "deadline") || strings.Contains(st.LastError, "Timeout")
	})
	if waited := time.Since(asked); waited < time.Second {
		t.Errorf("the next attempt came %v after a 429 with Retry-After: 1", waited)
	}
	in.SetFault(logshiptest.Fault{})
	in.Wait(t, "every record", 30*time.Second, hasAll(0, 170))
	got := received(t, in)
	if len(got) != 170 {
		t.Errorf("%d distinct records received, want 170", len(got))
	}
	st = r.waitStatus("caught up", func(st Status) bool { return st.Buffered == 0 && st.State == StateOK })
	if st.Dropped != 0 || st.Rejected != 0 || st.LastError != "" {
		t.Errorf("status after the outages: %+v", st)
	}
}

// Records buffered when the daemon stops are sent by the next run, with the same sequence
// numbers, and numbering goes on after them.
func TestRestartKeepsBufferedRecords(t *testing.T) {
	proxy := "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{})
	in := logshiptest.Start(t, testKey)
	dir := t.TempDir()
	r := newRig(t, in, proxy, dir, nil)
	r.run()
	r.logN(0, 5)
	in.Wait(t, "the first records", 30*time.Second, hasAll(0, 5))
	r.waitStatus("the first records acknowledged", func(st Status) bool { return st.Shipped == 5 })
	in.Down()
	r.logN(5, 300)
	r.stop()

	in.Up(t)
	r2 := newRig(t, in, proxy, dir, nil)
	if st := r2.s.Status(); st.Buffered != 300 {
		t.Fatalf("after the restart %d records are buffered, want 300", st.Buffered)
	}
	r2.run()
	r2.logN(305, 5)
	in.Wait(t, "the records of both runs", 30*time.Second, hasAll(0, 310))
	got := received(t, in)
	for i := range 310 {
		if seq := got[fmt.Sprintf("record %d", i)]; seq != uint64(i+1) {
			t.Fatalf("record %d has sequence number %d, want %d", i, seq, i+1)
		}
	}
}

// When the buffer is full the oldest records go, counted, and a record says how many.
func TestFullBufferDropsOldest(t *testing.T) {
	proxy := "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{})
	in := logshiptest.Start(t, testKey)
	in.Down()
	r := newRig(t, in, proxy, t.TempDir(), func(o *Options) { o.BufferBytes = 256 << 10 })
	r.run()
	const n = 3000 // about 220 bytes each: more than twice the buffer
	r.logN(0, n)
	st := r.waitStatus("every record written", func(st Status) bool { return st.Buffered+st.Dropped >= n })
	if st.Dropped == 0 || st.BufferBytes > 256<<10 {
		t.Fatalf("status with more records than room: %+v", st)
	}
	in.Up(t)
	in.Wait(t, "the newest record", 30*time.Second, hasAll(n-1, 1))
	st = r.waitStatus("the buffer sent", func(st Status) bool { return st.Buffered == 0 })
	recs := in.Records()
	got := received(t, in)
	var notices uint64
	for _, rec := range recs {
		if strings.HasPrefix(rec.Message, "logship: records dropped") {
			notices += uint64(rec.Attrs["dropped"].(float64))
		}
	}
	if uint64(len(got))+st.Dropped != n {
		t.Errorf("%d records received and %d dropped, of %d logged", len(got), st.Dropped, n)
	}
	if notices != st.Dropped {
		t.Errorf("the shipped notices count %d dropped records, status %d", notices, st.Dropped)
	}
	for i := int(st.Dropped); i < n; i++ { // the oldest went, the newest stayed
		if _, ok := got[fmt.Sprintf("record %d", i)]; !ok {
			t.Fatalf("record %d is missing; only the %d oldest should be", i, st.Dropped)
		}
	}
}

// A batch the intake refuses for good is dropped and counted; a refused key keeps the records
// until it is accepted; a batch too large is sent in halves.
func TestIntakeRefusals(t *testing.T) {
	proxy := "socks5://" + testenv.StartDante(t)
	in := logshiptest.Start(t, testKey)
	r := newRig(t, in, proxy, t.TempDir(), nil)
	r.run()

	in.SetFault(logshiptest.Fault{Status: http.StatusUnprocessableEntity})
	r.logN(0, 10)
	r.waitStatus("the refused batch counted", func(st Status) bool { return st.Rejected == 10 && st.Buffered == 0 })

	in.SetFault(logshiptest.Fault{Status: http.StatusUnauthorized})
	r.logN(10, 10)
	st := r.waitStatus("the refused key in status", func(st Status) bool { return st.State == StateRefused })
	if !strings.Contains(st.LastError, "401") || !strings.Contains(st.LastError, "logs.ship.api_key") || st.Buffered != 10 {
		t.Errorf("status while the key is refused: %+v", st)
	}
	in.SetFault(logshiptest.Fault{})
	in.Wait(t, "the records kept while the key was refused", 30*time.Second, hasAll(10, 10))

	in.SetFault(logshiptest.Fault{Status: http.StatusRequestEntityTooLarge})
	r.logN(20, 80)
	in.WaitAnswer(t, http.StatusRequestEntityTooLarge, 3, 30*time.Second)
	in.SetFault(logshiptest.Fault{})
	in.Wait(t, "the records in smaller batches", 30*time.Second, hasAll(20, 80))
	if lim := r.s.batchLimit.Load(); lim >= 100 {
		t.Errorf("batch limit %d after 413s", lim)
	}
	if len(received(t, in)) != 90 {
		t.Errorf("received %d records, want 90 (10 rejected)", len(received(t, in)))
	}

	// A batch refused for good after the key was refused: the intake answered and took the key,
	// so the state is ok again (openapi.yaml), its answer the last error, the records rejected.
	in.SetFault(logshiptest.Fault{Status: http.StatusUnauthorized})
	r.logN(100, 5)
	r.waitStatus("the key refused again", func(st Status) bool { return st.State == StateRefused })
	in.SetFault(logshiptest.Fault{Status: http.StatusUnprocessableEntity})
	st = r.waitStatus("the batch refused for good", func(st Status) bool { return st.Rejected == 15 })
	if st.State != StateOK || !strings.Contains(st.LastError, "422") {
		t.Errorf("status after a batch refused for good: %+v, want state ok and the 422 in last_error", st)
	}
}

// A line damaged on disk counts once as dropped, however many times the batch holding it is
// sent again, and a record says so: the intake sees the gap in the sequence numbers explained.
func TestDamagedRecordCountsOnce(t *testing.T) {
	proxy := "http://" + testenv.StartTinyproxy(t, testenv.TinyproxyOptions{})
	in := logshiptest.Start(t, testKey)
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.appendLines([]byte("{\"message\":\"record 0\"}\nnot json\n{\"message\":\"record 1\"}\n"), 3, 0); err != nil {
		t.Fatal(err)
	}
	s.close()

	in.SetFault(logshiptest.Fault{Status: http.StatusServiceUnavailable})
	r := newRig(t, in, proxy, dir, nil)
	r.run()
	in.WaitAnswer(t, http.StatusServiceUnavailable, 3, 30*time.Second)
	in.SetFault(logshiptest.Fault{})
	in.Wait(t, "the whole records", 30*time.Second, hasAll(0, 2))
	st := r.waitStatus("caught up", func(st Status) bool { return st.Buffered == 0 && st.State == StateOK })
	if st.Dropped != 1 {
		t.Errorf("one damaged line after 3 refused sends counts as %d dropped, want 1", st.Dropped)
	}
	r.logN(2, 1) // the notice goes with the next records
	in.Wait(t, "the notice of the damaged record", 30*time.Second, func(recs []logshiptest.Record) bool {
		for _, rec := range recs {
			if strings.HasPrefix(rec.Message, "logship: records dropped") && rec.Attrs["dropped"] == float64(1) {
				return true
			}
		}
		return false
	})
}

// A server that logs nothing at the shipping level (logs.ship.level warn, a quiet shop) still
// tells whether the intake takes its key: an empty batch, which the intake stores nothing of,
// gives the state, and the next one after a refusal shows the key accepted again.
func TestQuietServerShowsTheIntakesAnswer(t *testing.T) {
	in := logshiptest.Start(t, testKey)
	r := newRig(t, in, "", t.TempDir(), nil)
	in.SetFault(logshiptest.Fault{Status: http.StatusUnauthorized})
	r.run()
	st := r.waitStatus("the refused key in status", func(st Status) bool { return st.State == StateRefused })
	if !strings.Contains(st.LastError, "401") {
		t.Errorf("status while the key is refused: %+v", st)
	}
	in.SetFault(logshiptest.Fault{})
	st = r.waitStatus("the intake's acceptance in status", func(st Status) bool { return st.State == StateOK })
	if st.LastError != "" || st.LastSuccess == nil || st.Shipped != 0 || len(in.Records()) != 0 {
		t.Errorf("status %+v, %d records at the intake; want ok with nothing shipped", st, len(in.Records()))
	}
}

// An intake that refuses the empty batch as malformed (against its contract) still answered
// and took the key: ok, its answer the last error, not "cannot be reached".
func TestQuietServerWithAnIntakeRefusingTheEmptyBatch(t *testing.T) {
	in := logshiptest.Start(t, testKey)
	r := newRig(t, in, "", t.TempDir(), nil)
	in.SetFault(logshiptest.Fault{Status: http.StatusUnprocessableEntity})
	r.run()
	st := r.waitStatus("the intake's answer in status", func(st Status) bool { return st.LastError != "" })
	if st.State != StateOK || !strings.Contains(st.LastError, "422") {
		t.Errorf("status %+v: want ok, the 422 as last error", st)
	}
}
