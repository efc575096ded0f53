package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

type sseEvent struct {
	id, typ, data string
}

// sseClient reads a text/event-stream like EventSource does.
type sseClient struct {
	resp *http.Response
	sc   *bufio.Scanner
}

func openSSE(t *testing.T, ctx context.Context, url, lastID, token string) *sseClient {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("event stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sseClient{resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// next returns the next event (an id alone included, and an event with no id such as
// catalog.changed), skipping comments and the retry field.
func (c *sseClient) next(t *testing.T) sseEvent {
	t.Helper()
	var e sseEvent
	for c.sc.Scan() {
		line := c.sc.Text()
		switch {
		case line == "":
			if e.id != "" || e.typ != "" {
				return e
			}
		case strings.HasPrefix(line, "id: "):
			e.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			e.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			e.data = line[6:]
		}
	}
	t.Fatalf("stream ended: %v", c.sc.Err())
	return e
}

func newOrder(t *testing.T, f *fixture, key string) orders.Order {
	t.Helper()
	return decodeOrder(t, f.order(t, "pos", key, `{"lines":[{"product_id":"P0002","quantity":1}]}`), http.StatusCreated).Order
}

// eventsFixture is a fixture served over real connections, and a context that bounds the test.
func eventsFixture(t *testing.T, opts ...func(*Options)) (*fixture, *httptest.Server, context.Context) {
	t.Helper()
	f := newFixture(t, opts...)
	ts := httptest.NewServer(f.h)
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return f, ts, ctx
}

func TestEventsResumeWithLastEventID(t *testing.T) {
	f, ts, ctx := eventsFixture(t)

	first := newOrder(t, f, "k1")
	newOrder(t, f, "k2")
	c := openSSE(t, ctx, ts.URL+"/api/v1/events?after=0", "", f.device(t, "pos").Token)
	e1, e2 := c.next(t), c.next(t)
	if e1.typ != "order.created" || !strings.Contains(e1.data, first.ID) || e2.id <= e1.id {
		t.Fatalf("backlog: %+v %+v", e1, e2)
	}
	// Live: an order made while the device listens arrives on the open stream.
	third := newOrder(t, f, "k3")
	if e3 := c.next(t); !strings.Contains(e3.data, third.ID) {
		t.Fatalf("live event %+v, want order %s", e3, third.ID)
	}
	lastSeen := third
	c.resp.Body.Close()

	// While the device is away: two orders and a status change.
	missed := []string{newOrder(t, f, "k4").ID, newOrder(t, f, "k5").ID}
	decodeOrder(t, f.post(t, "/api/v1/orders/"+lastSeen.ID+"/status", "application/json", `{"status":"ready"}`), http.StatusOK)
	missed = append(missed, lastSeen.ID)

	events, _ := f.db.EventsAfter(ctx, 0, 100)
	c = openSSE(t, ctx, ts.URL+"/api/v1/events", strconv.FormatInt(events[2].ID, 10), f.device(t, "pos").Token)
	for i, id := range missed {
		e := c.next(t)
		if !strings.Contains(e.data, id) {
			t.Fatalf("after reconnecting, event %d is %+v, want order %s", i, e, id)
		}
		if i == 2 && e.typ != "order.updated" {
			t.Fatalf("status change announced as %q", e.typ)
		}
	}
}

// A stream opened with no position (a fresh EventSource) starts at the newest event: it names
// that position first (EventSource keeps it as its last event id, so a reconnect resumes from
// it) and then carries what happens from now on, not the whole log since the server was
// installed. after=0 asks for the whole log.
func TestEventsWithoutAPositionStartAtTheNewest(t *testing.T) {
	f, ts, ctx := eventsFixture(t)
	before := newOrder(t, f, "k1")
	head, err := f.db.LastEventID(ctx)
	if err != nil || head == 0 {
		t.Fatalf("newest event %d, %v", head, err)
	}
	token := f.device(t, "kds").Token
	c := openSSE(t, ctx, ts.URL+"/api/v1/events", "", token)
	if e := c.next(t); e.id != strconv.FormatInt(head, 10) || e.typ != "" || e.data != "" {
		t.Fatalf("the stream began with %+v; want the id %d alone", e, head)
	}
	made := newOrder(t, f, "k2")
	if e := c.next(t); !strings.Contains(e.data, made.ID) || strings.Contains(e.data, before.ID) {
		t.Fatalf("first event %+v; want order %s, made after the stream opened, and not %s", e, made.ID, before.ID)
	}
	c.resp.Body.Close()
	// Resuming from the position the stream named gets what was made after it.
	c = openSSE(t, ctx, ts.URL+"/api/v1/events", strconv.FormatInt(head, 10), token)
	if e := c.next(t); !strings.Contains(e.data, made.ID) {
		t.Fatalf("resumed from %d: %+v, want order %s", head, e, made.ID)
	}
	c.resp.Body.Close()
	c = openSSE(t, ctx, ts.URL+"/api/v1/events?after=0", "", token)
	if e := c.next(t); !strings.Contains(e.data, before.ID) {
		t.Fatalf("after=0: %+v, want the whole log from order %s", e, before.ID)
	}
}

// A stream that asks for catalog.changed gets one when the delta feed changed, with the feed's
// epoch and latest change number as the pushed notice has them, and no id (the device's place in
// the event log stays); another round of changes gets another notice once the least time
// between two has passed, and not before. A stream that does not ask gets none.
func TestEventsCarryCatalogNotices(t *testing.T) {
	for _, every := range []time.Duration{time.Millisecond, time.Hour} {
		f, ts, ctx := eventsFixture(t, func(o *Options) { o.CatalogNoticeEvery = every })
		token := f.device(t, "signage").Token
		c := openSSE(t, ctx, ts.URL+"/api/v1/events?types=catalog.changed,order.created", "", token)
		plain := openSSE(t, ctx, ts.URL+"/api/v1/events", "", token)
		c.next(t) // the position, alone
		plain.next(t)
		applyPage(t, f.db, cloudapi.Products, time.Minute, productChange("NEW1", 1, "Tea", "Drinks"))
		e := c.next(t)
		want := fmt.Sprintf(`{"epoch":%q,"latest":%d}`, f.db.Epoch(), f.db.Seq())
		if e.typ != "catalog.changed" || e.id != "" || e.data != want {
			t.Fatalf("every %v, first notice: %+v; want catalog.changed with no id and %s", every, e, want)
		}
		applyPage(t, f.db, cloudapi.Products, time.Minute, productChange("NEW2", 2, "Tea", "Drinks"))
		if every == time.Millisecond {
			// Past the least time between two: the second round's notice, with its number.
			e = c.next(t)
			want = fmt.Sprintf(`{"epoch":%q,"latest":%d}`, f.db.Epoch(), f.db.Seq())
			if e.typ != "catalog.changed" || e.data != want {
				t.Fatalf("second notice: %+v, want catalog.changed with %s", e, want)
			}
			continue
		}
		// Within the least time between two: the orders made after the change come, with no
		// notice before or between them (the stream may see the change and the first order
		// at once; a notice it then let through would come before the second).
		var made []orders.Order
		for _, key := range []string{"k1", "k2"} {
			made = append(made, newOrder(t, f, key))
			if e := c.next(t); e.typ != "order.created" || !strings.Contains(e.data, made[len(made)-1].ID) {
				t.Fatalf("within an hour of the first notice, the stream gave %+v before order %s", e, made[len(made)-1].ID)
			}
		}
		o := made[0]
		// The stream that did not ask carries the order, and no notice before it.
		for plain.sc.Scan() && !strings.Contains(plain.sc.Text(), o.ID) {
			if strings.Contains(plain.sc.Text(), "catalog.changed") {
				t.Fatalf("the stream that did not ask for catalog.changed carried %q", plain.sc.Text())
			}
		}
		if err := plain.sc.Err(); err != nil || !strings.Contains(plain.sc.Text(), o.ID) {
			t.Fatalf("the stream without catalog.changed ended before order %s: %v", o.ID, err)
		}
	}
}

// TestEventsAfterARestore checks that a device whose last event id is beyond the log (a power
// cut undid the last writes it saw, or the database was replaced by a copy made without its
// marks of the ids given out) gets the events made from then on even when their ids are below
// its own, instead of waiting for the log to pass its id. (After storeedge restore the new ids
// jump past every id given out: storage's tests of the marks hold that.)
func TestEventsAfterARestore(t *testing.T) {
	f, ts, ctx := eventsFixture(t)
	newOrder(t, f, "k1")
	head, err := f.db.LastEventID(ctx)
	if err != nil || head == 0 {
		t.Fatalf("newest event %d, %v", head, err)
	}
	// The device saw events up to head+5 before the restore.
	c := openSSE(t, ctx, ts.URL+"/api/v1/events", strconv.FormatInt(head+5, 10), f.device(t, "pos").Token)
	made := newOrder(t, f, "k2")
	e := c.next(t)
	if !strings.Contains(e.data, made.ID) || e.id != strconv.FormatInt(head+1, 10) {
		t.Fatalf("first event after the restore %+v, want order %s with id %d", e, made.ID, head+1)
	}
}

func TestEventsFilterAndBadCursor(t *testing.T) {
	f, ts, ctx := eventsFixture(t)
	a := newOrder(t, f, "a")
	b := newOrder(t, f, "b")
	decodeOrder(t, f.post(t, "/api/v1/orders/"+a.ID+"/status", "application/json", `{"status":"accepted"}`), http.StatusOK)
	c := openSSE(t, ctx, ts.URL+"/api/v1/events?order="+a.ID+"&types=order.updated", "0", f.device(t, "pos").Token)
	if e := c.next(t); e.typ != "order.updated" || !strings.Contains(e.data, a.ID) || strings.Contains(e.data, b.ID) {
		t.Fatalf("filtered stream gave %+v", e)
	}
	// What the filters leave out moves the position to resume from, with an id alone.
	other := newOrder(t, f, "c")
	last, err := f.db.LastEventID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e := c.next(t); e.id != strconv.FormatInt(last, 10) || e.typ != "" || e.data != "" {
		t.Fatalf("after order %s, left out, the stream gave %+v; want id %d alone", other.ID, e, last)
	}
	for _, target := range []string{"/api/v1/events?after=x", "/api/v1/events?after=-1", "/api/v1/events?types=order.deleted"} {
		wantProblem(t, f.get(t, target), http.StatusBadRequest, "bad-parameter")
	}
}

// TestEventStreamEndsOnShutdown checks that an open stream does not hold the server's shutdown
// for its grace period.
func TestEventStreamEndsOnShutdown(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.FrontDoor = EphemeralPort
		o.Bind = "127.0.0.1"
		o.ShutdownGrace = time.Minute
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- f.srv.Run(ctx) }()
	newOrder(t, f, "k")
	c := openSSE(t, context.Background(), "http://"+f.srv.Addrs()["front_door"]+"/api/v1/events", "0", f.device(t, "pos").Token)
	c.next(t)
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 30*time.Second {
		t.Fatalf("shutdown waited %v for the open stream", waited)
	}
}

// A device revoked while its event stream is open gets no event after the revocation: the
// stream ends, and reconnecting is refused.
func TestRevokedDeviceStreamEnds(t *testing.T) {
	f, ts, ctx := eventsFixture(t)
	lost := f.device(t, "lost tablet")
	first := newOrder(t, f, "k1")
	c := openSSE(t, ctx, ts.URL+"/api/v1/events", "0", lost.Token)
	if e := c.next(t); !strings.Contains(e.data, first.ID) {
		t.Fatalf("before the revocation: %+v", e)
	}
	if _, err := f.dm.Revoke(ctx, lost.DeviceID); err != nil {
		t.Fatal(err)
	}
	after := newOrder(t, f, "k2")
	for c.sc.Scan() {
		if strings.Contains(c.sc.Text(), after.ID) {
			t.Fatalf("the revoked device's stream carried the order made after the revocation: %s", c.sc.Text())
		}
	}
	if err := c.sc.Err(); err != nil {
		t.Fatalf("the stream did not end cleanly: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+lost.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reconnecting after the revocation: %s", resp.Status)
	}
}

// An admin's revocation ends the device's open event streams before it is answered, without
// waiting for the next event or keep-alive to find the credential refused.
func TestRevokeEndsTheStreamAtOnce(t *testing.T) {
	f, ts, ctx := eventsFixture(t)
	lost := f.device(t, "lost tablet")
	newOrder(t, f, "k1")
	c := openSSE(t, ctx, ts.URL+"/api/v1/events", "0", lost.Token)
	c.next(t)
	if rec := f.post(t, "/api/v1/admin/devices/"+lost.DeviceID+"/revoke", "", ""); rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	ended := make(chan error, 1)
	go func() {
		for c.sc.Scan() {
		}
		ended <- c.sc.Err()
	}()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("the stream did not end cleanly: %v", err)
		}
	case <-time.After(eventKeepAlive / 2):
		t.Fatal("the revoked device's stream stayed open after the revocation was answered")
	}
}

// A revocation is answered at once while the device's stream is stuck in a write to a device
// that stopped reading (a stolen tablet holding its stream open): the write fails, rather than
// holding the answer for lan.write_timeout.
func TestRevokeNotHeldByAStalledStream(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.WriteTimeout = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lost := f.device(t, "lost tablet")
	conn, _ := stalledStream(t, ctx, f, lost.Token)
	answered := make(chan int, 1)
	go func() {
		answered <- f.post(t, "/api/v1/admin/devices/"+lost.DeviceID+"/revoke", "", "").Code
	}()
	select {
	case code := <-answered:
		if code != http.StatusOK {
			t.Fatalf("revoke: %d", code)
		}
	case <-ctx.Done():
		conn.Close() // ends the write, and so the test
		t.Fatal("the revocation waits for the write of the device that stopped reading")
	}
	if !conn.failed() {
		t.Fatal("the stream's write under way was not failed by the revocation")
	}
}

// The stream a ninth one ends for room is ended even while it is stuck in a write to a device
// that stopped reading (the dead Wi-Fi connection the limit is there for): its write fails at
// once rather than after lan.write_timeout.
func TestStreamEndedForRoomNotHeldByAStalledWrite(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.WriteTimeout = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pos := f.device(t, "pos").Token
	conn, url := stalledStream(t, ctx, f, pos)
	for range maxStreamsPerDevice {
		openSSE(t, ctx, url+"/api/v1/events", "0", pos)
	}
	select { // the oldest's write fails in its own goroutine
	case <-conn.failedC:
	case <-ctx.Done():
		t.Fatal("the stream ended for room is still writing to the device that stopped reading")
	}
}

// stalledStream serves f on a listener whose connections can stall, opens an event stream with
// token, stops reading it, and returns once the stream is stuck writing an event: its connection
// and the server's URL. The connection is closed before the server when the test ends (the
// server's Close would wait for the stuck write).
func stalledStream(t *testing.T, ctx context.Context, f *fixture, token string) (*stallConn, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &stallListener{Listener: inner, conns: make(chan *stallConn, 1)}
	ts := httptest.NewUnstartedServer(f.h)
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	newOrder(t, f, "k1")
	c := openSSE(t, ctx, ts.URL+"/api/v1/events", "0", token)
	c.next(t)
	conn := <-ln.conns // the stream's, the first connection to this server
	t.Cleanup(func() { conn.Close() })
	conn.stall()
	newOrder(t, f, "k2")
	select {
	case <-conn.blocked:
	case <-ctx.Done():
		t.Fatal("the stream wrote no event to the device that stopped reading")
	}
	return conn, ts.URL
}

// stallListener hands out connections whose peer can stop reading.
type stallListener struct {
	net.Listener
	conns chan *stallConn
}

func (l *stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &stallConn{Conn: c, wake: make(chan struct{}), blocked: make(chan struct{}, 1), failedC: make(chan struct{})}
	select {
	case l.conns <- sc:
	default:
	}
	return sc, nil
}

// stallConn is a connection whose peer stops reading once stalled: a write then blocks until
// its deadline passes, as a write to a full socket does, including a deadline set while it
// blocks (net.Conn's contract).
type stallConn struct {
	net.Conn
	mu       sync.Mutex // guards the fields below
	stalled  bool
	deadline time.Time
	wake     chan struct{} // closed when the deadline changes or the connection closes
	timedOut bool
	blocked  chan struct{} // a write blocked
	failedC  chan struct{} // closed when a write has failed on its deadline
}

func (c *stallConn) stall() {
	c.mu.Lock()
	c.stalled = true
	c.mu.Unlock()
}

func (c *stallConn) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timedOut
}

func (c *stallConn) setWrite(d time.Time) {
	c.mu.Lock()
	c.deadline = d
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

func (c *stallConn) SetWriteDeadline(d time.Time) error {
	c.setWrite(d)
	return c.Conn.SetWriteDeadline(d)
}

func (c *stallConn) SetDeadline(d time.Time) error {
	c.setWrite(d)
	return c.Conn.SetDeadline(d)
}

func (c *stallConn) Close() error {
	c.setWrite(time.Now())
	return c.Conn.Close()
}

func (c *stallConn) Write(p []byte) (int, error) {
	for {
		c.mu.Lock()
		if !c.stalled {
			c.mu.Unlock()
			return c.Conn.Write(p)
		}
		d, wake := c.deadline, c.wake
		if !d.IsZero() && !time.Now().Before(d) {
			if !c.timedOut {
				c.timedOut = true
				close(c.failedC)
			}
			c.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Unlock()
		select {
		case c.blocked <- struct{}{}:
		default:
		}
		var timeout <-chan time.Time
		if !d.IsZero() {
			timer := time.NewTimer(time.Until(d))
			timeout = timer.C
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-timeout:
		}
	}
}

// One device holds at most maxStreamsPerDevice event streams: the next one is served and ends
// the device's oldest (a device whose connection died unseen reconnects and is never refused);
// another device's streams are not touched.
func TestEventStreamsPerDevice(t *testing.T) {
	f, ts, ctx := eventsFixture(t)
	pos := f.device(t, "pos").Token
	other := openSSE(t, ctx, ts.URL+"/api/v1/events", "0", f.device(t, "kiosk").Token)
	var open []*sseClient
	for range maxStreamsPerDevice + 1 {
		open = append(open, openSSE(t, ctx, ts.URL+"/api/v1/events", "0", pos))
	}
	// The oldest ends: its body reaches its end, after the retry field.
	for open[0].sc.Scan() {
	}
	if err := open[0].sc.Err(); err != nil {
		t.Fatalf("the oldest stream ended with %v, want its end", err)
	}
	// The others, and the other device's, still get events.
	o := newOrder(t, f, "k1")
	for i, c := range append(open[1:], other) {
		if e := c.next(t); !strings.Contains(e.data, o.ID) {
			t.Fatalf("stream %d: %+v, want order %s", i, e, o.ID)
		}
	}
}

// A revocation stops every stream of the device from writing, the one a newer stream ended to
// make room included: until its handler returns it may be about to write, so it stays known.
func TestRevocationStopsAStreamEndedForRoom(t *testing.T) {
	var c streamCount
	var slots []*streamSlot
	ended := make([]bool, maxStreamsPerDevice+1)
	for i := range maxStreamsPerDevice + 1 {
		slots = append(slots, c.open("dv_1", func() { ended[i] = true }))
	}
	if !ended[0] || slices.Contains(ended[1:], true) {
		t.Fatalf("ended %v: want the oldest only, for room", ended)
	}
	// The stream ended for room is in a write that does not end (a dead connection): the
	// revocation does not wait for it, and stops it all the same.
	slots[0].mu.Lock()
	revoked := make(chan struct{})
	go func() { c.endDevice("dv_1"); close(revoked) }()
	select {
	case <-revoked:
	case <-time.After(time.Minute):
		t.Fatal("the revocation waits for the write of a stream ended for room")
	}
	for i, s := range slots {
		s.dl.Lock()
		stopped := s.stopped
		s.dl.Unlock()
		if !s.ended && !stopped {
			t.Errorf("stream %d may still write after the revocation", i)
		}
	}
	slots[0].mu.Unlock()
	for _, s := range slots {
		c.close("dv_1", s)
	}
	if len(c.by) != 0 {
		t.Errorf("streams left after each closed: %v", c.by)
	}
	// Room again: a device with its streams closed opens eight without ending any.
	ended = make([]bool, maxStreamsPerDevice+1)
	for i := range maxStreamsPerDevice {
		c.open("dv_1", func() { ended[i] = true })
	}
	if slices.Contains(ended, true) {
		t.Errorf("ended %v with room for every stream", ended)
	}
}
