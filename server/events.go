package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

// Event stream tuning.
const (
	eventBatch       = 500              // events read from the database at a time
	eventKeepAlive   = 15 * time.Second // a comment line keeps proxies and NATs from closing a quiet stream
	eventRetryMillis = 2000             // what the stream tells clients to wait before reconnecting
	// eventFlushEvery is the least time between two writes on one stream: events that come
	// faster are gathered into one write, at most this much later. At 500 orders a second to
	// 200 followers, a write and a flush per event per follower are 100,000 system calls a
	// second; gathered, the load costs 10-30 % less CPU (docs/PERFORMANCE.md, section 4).
	eventFlushEvery = 5 * time.Millisecond
	// defaultCatalogNoticeEvery is the least time between two catalog.changed events on one
	// stream (Options.CatalogNoticeEvery), as between two rounds of the pushed notice.
	defaultCatalogNoticeEvery = 5 * time.Second
)

// eventCatalogChanged is the event a stream that asks for it gets when the delta feed changed:
// the notice the server pushes to a device with the catalog capability (not one an admin sends
// as a command, which goes by push only). It has no id: it is not in the event log, and leaves
// the device's position where it was.
const eventCatalogChanged = "catalog.changed"

// maxStreamsPerDevice bounds the event streams one device holds open at once: each costs a
// goroutine, a connection and its buffers, and one stream gets every event. A device that opens
// one more ends its oldest: a device that lost its connection without the server seeing it
// (Wi-Fi gone, no FIN) and reconnects is never refused, and its dead streams go.
const maxStreamsPerDevice = 8

// streamCount holds the event streams open, by device, oldest first.
type streamCount struct {
	mu sync.Mutex
	by map[string][]*streamSlot
}

// streamSlot is one open stream; end stops it.
type streamSlot struct {
	end context.CancelFunc
	// evicted: ended to make room for a newer stream of its device, and still listed until its
	// handler returns, so that a revocation meanwhile stops its last write too (guarded by the
	// streamCount's mu).
	evicted bool
	// dl orders stop against a write's deadline: a write sets its deadline under it unless
	// stopped, and stop sets stopped and a deadline already past, which fails a write under
	// way at once (a device that stopped reading would hold it for lan.write_timeout). It
	// guards the fields below.
	dl      sync.Mutex
	stopped bool                     // once set, no write starts; set without waiting for one under way
	rc      *http.ResponseController // the stream's, once open and until its handler returns
	inWrite bool                     // a write is under way
	// mu is held while the stream writes; ended, once set under it, lets no write start.
	mu    sync.Mutex
	ended bool
}

// stop lets no write start and fails the one under way (a stream between writes ends
// cleanly, its last chunk written).
func (s *streamSlot) stop() {
	s.dl.Lock()
	defer s.dl.Unlock()
	s.stopped = true
	if s.rc != nil && s.inWrite {
		s.rc.SetWriteDeadline(time.Now())
	}
}

// writing sets the stream's write deadline for a write about to start (at d, zero for none);
// false: stopped, no write may start.
func (s *streamSlot) writing(rc *http.ResponseController, d time.Duration) bool {
	s.dl.Lock()
	defer s.dl.Unlock()
	if s.stopped {
		return false
	}
	if d > 0 {
		rc.SetWriteDeadline(time.Now().Add(d))
	}
	s.inWrite = true
	return true
}

// wrote ends the write writing let start.
func (s *streamSlot) wrote() {
	s.dl.Lock()
	s.inWrite = false
	s.dl.Unlock()
}

// setResponse gives stop the stream's response once it is open, nil once its handler returns
// (the connection may serve another request then).
func (s *streamSlot) setResponse(rc *http.ResponseController) {
	s.dl.Lock()
	s.rc = rc
	s.dl.Unlock()
}

// endDevice ends the streams of a device: none starts a write after it returns, and none of
// its live streams is still writing, so a revoked device's streams carry nothing begun after its
// revocation is answered. A write under way is failed rather than waited for: a device that
// stopped reading (a stolen tablet, a dead connection) would hold the revocation's answer for
// lan.write_timeout. A stream already ended for room is stopped without waiting for its handler.
func (c *streamCount) endDevice(device string) {
	c.mu.Lock()
	open := slices.Clone(c.by[device])
	evicted := make([]bool, len(open))
	for i, slot := range open {
		evicted[i] = slot.evicted
	}
	c.mu.Unlock()
	for i, slot := range open {
		slot.stop()
		if evicted[i] {
			continue // ended already
		}
		slot.mu.Lock()
		slot.ended = true
		slot.end()
		slot.mu.Unlock()
	}
}

// open notes a new stream of device, ended by end, and ends the device's oldest when it holds
// maxStreamsPerDevice already.
func (c *streamCount) open(device string, end context.CancelFunc) *streamSlot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil {
		c.by = map[string][]*streamSlot{}
	}
	slot := &streamSlot{end: end}
	open := c.by[device]
	live := 0
	for _, s := range open {
		if !s.evicted {
			live++
		}
	}
	if live >= maxStreamsPerDevice {
		for _, s := range open {
			if !s.evicted {
				// Ended, and stopped: a write under way to a device that stopped reading
				// (the dead connection the limit is there for) fails now, not after
				// lan.write_timeout.
				s.evicted = true
				s.end()
				s.stop()
				break
			}
		}
	}
	c.by[device] = append(open, slot)
	return slot
}

// close forgets a stream that ended.
func (c *streamCount) close(device string, slot *streamSlot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	open := slices.DeleteFunc(c.by[device], func(s *streamSlot) bool { return s == slot })
	if len(open) == 0 {
		delete(c.by, device)
		return
	}
	c.by[device] = open
}

// eventsRoutes are the events service: orders announced to devices as Server-Sent Events.
func (s *Server) eventsRoutes(r chi.Router) {
	r.Get("/api/v1/events", s.handle(s.events))
}

// events streams the event log from where the device left it (Last-Event-ID, or the after
// parameter), then follows it live. Events are stored with the change they announce, so a device
// that reconnects with the last id it saw misses nothing, even across a restart of the server.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "after", "order", "types")
	if err != nil {
		return err
	}
	after, given, err := eventCursor(r, q)
	if err != nil {
		return err
	}
	head, err := s.o.DB.LastEventID(r.Context())
	if err != nil {
		return fmt.Errorf("event stream: read the newest event: %w", err)
	}
	// Without a position the stream starts at the newest event: a device opening it for the
	// first time gets what happens from now on, not the whole log since the server was
	// installed (it is never pruned). The stream then names that position first, so that a
	// reconnect resumes from it.
	//
	// A position beyond the newest event was given by a log that is gone: a power cut undid its
	// last writes. New events take ids past every id given out (storage/ids.go), so starting
	// from the newest event skips none of them; a copy of the database brought back with its
	// old marks (a snapshot of the whole folder) could give those ids again.
	after = min(after, head)
	if !given {
		after = head
	}
	orderID := q.Get("order")
	types, err := eventTypes(q.Get("types"))
	if err != nil {
		return err
	}
	dev := deviceID(r.Context())
	ctx, end := context.WithCancel(r.Context())
	defer end()
	slot := s.streams.open(dev, end)
	defer s.streams.close(dev, slot)
	rc, err := openEventStream(w)
	if err != nil {
		return err
	}
	slot.setResponse(rc)
	defer slot.setResponse(nil)
	buf := []byte("retry: " + strconv.Itoa(eventRetryMillis) + "\n\n")
	if !given {
		buf = append(buf, "id: "...)
		buf = strconv.AppendInt(buf, after, 10)
		buf = append(buf, "\n\n"...)
	}
	keepAlive := time.NewTicker(eventKeepAlive)
	defer keepAlive.Stop()
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	defer gather.Stop()
	var flushed time.Time
	// A stream that asks for catalog.changed gets one when the delta feed changed, at most one
	// every Options.CatalogNoticeEvery: catalogChanged is the change waited for, catalogDue the
	// end of the wait before the next notice may go (nil: not waiting).
	var catalogChanged <-chan struct{}
	var catalogDue <-chan time.Time
	var catalogNext time.Time
	catalogWait := time.NewTimer(time.Hour)
	catalogWait.Stop()
	defer catalogWait.Stop()
	catalogNotice := func() {
		catalogChanged = s.o.DB.CatalogChanged() // before reading, so no change slips between
		buf = appendCatalogNotice(buf, s.o.DB.Epoch(), s.o.DB.Seq())
		catalogNext = time.Now().Add(s.o.CatalogNoticeEvery)
	}
	if types[eventCatalogChanged] {
		catalogChanged = s.o.DB.CatalogChanged()
	}
	token, _ := bearer(r)
	for {
		// A device revoked while its stream is open gets nothing more: the credential is checked
		// again before every write, as every request checks it.
		if _, err := s.o.Devices.Authenticate(token); err != nil {
			return nil
		}
		changed := s.o.DB.EventsChanged() // before reading, so no event slips between read and wait
		events, err := s.o.DB.EventsAfter(ctx, after, eventBatch)
		if err != nil {
			if ctx.Err() != nil {
				return nil // the device went away
			}
			return fmt.Errorf("event stream: read events: %w", err)
		}
		skipped := false // the batch ends with events the filters leave out
		for i := range events {
			e := &events[i]
			after = e.ID
			if skipped = (orderID != "" && e.OrderID != orderID) || (types != nil && !types[e.Type]); skipped {
				continue
			}
			buf = appendEvent(buf, e)
		}
		if skipped {
			// An id without an event moves the device's Last-Event-ID past what it does not
			// want, so that it does not ask for all of it again when it reconnects.
			buf = append(buf, "id: "...)
			buf = strconv.AppendInt(buf, after, 10)
			buf = append(buf, "\n\n"...)
		}
		if len(buf) > 0 {
			if !s.writeStream(w, rc, slot, buf) {
				return nil
			}
			buf = buf[:0]
			flushed = time.Now()
		}
		if len(events) == eventBatch {
			continue // more waiting
		}
		select {
		case <-changed:
			if wait := eventFlushEvery - time.Since(flushed); wait > 0 {
				gather.Reset(wait)
				select {
				case <-gather.C:
				case <-ctx.Done():
					return nil
				case <-s.stopping:
					return nil
				}
			}
		case <-catalogChanged:
			catalogChanged = nil
			if wait := time.Until(catalogNext); wait > 0 {
				catalogWait.Reset(wait)
				catalogDue = catalogWait.C
			} else {
				catalogNotice()
			}
		case <-catalogDue:
			catalogDue = nil
			catalogNotice()
		case <-keepAlive.C:
			buf = append(buf, ": keep-alive\n\n"...)
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		}
	}
}

// appendCatalogNotice appends a catalog.changed event: the delta feed's epoch and latest change
// number, as the pushed notice carries them (docs/push-protocol.md), and no id.
func appendCatalogNotice(b []byte, epoch string, latest int64) []byte {
	b = append(b, "event: "+eventCatalogChanged+"\ndata: {\"epoch\":\""...)
	b = append(b, epoch...)
	b = append(b, "\",\"latest\":"...)
	b = strconv.AppendInt(b, latest, 10)
	return append(b, "}\n\n"...)
}

// writeStream writes and flushes b on an event stream, unless the stream was ended (its
// device revoked meanwhile); false: the stream is over.
func (s *Server) writeStream(w http.ResponseWriter, rc *http.ResponseController, slot *streamSlot, b []byte) bool {
	slot.mu.Lock()
	defer slot.mu.Unlock()
	// A device that stops reading would hold the stream, its goroutine and its buffers for
	// ever: each write has lan.write_timeout to get through.
	if slot.ended || !slot.writing(rc, s.o.WriteTimeout) {
		return false
	}
	defer slot.wrote()
	if _, err := w.Write(b); err != nil {
		return false // the device went away
	}
	return rc.Flush() == nil
}

// openEventStream answers 200 with the headers of an event stream, which has no write deadline.
func openEventStream(w http.ResponseWriter) (*http.ResponseController, error) {
	rc := http.NewResponseController(w)
	// The server's write timeout protects ordinary answers; a stream lives as long as the device
	// listens.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("open event stream: %w", err)
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-store"}
	h["X-Accel-Buffering"] = []string{"no"}
	w.WriteHeader(http.StatusOK)
	return rc, nil
}

// eventTypes reads the types parameter, the event types a device wants; nil for both order
// events (catalog.changed only when asked for).
func eventTypes(v string) (map[string]bool, error) {
	if v == "" {
		return nil, nil
	}
	types := map[string]bool{}
	for _, name := range strings.Split(v, ",") {
		if name != orders.EventCreated && name != orders.EventUpdated && name != eventCatalogChanged {
			return nil, refuse(probBadParameter, "types: "+strconv.Quote(name)+" is not one of order.created, order.updated, catalog.changed")
		}
		types[name] = true
	}
	return types, nil
}

// eventCursor reads where the device left the stream: the Last-Event-ID header that EventSource
// sends on reconnecting, else the after parameter; given is false when there is neither.
func eventCursor(r *http.Request, q url.Values) (after int64, given bool, err error) {
	v, name := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if v == "" {
		v, name = q.Get("after"), "after"
	}
	if v == "" {
		return 0, false, nil
	}
	n, ok := wholeNumber(v)
	if !ok {
		return 0, false, refuse(probBadParameter, name+": "+strconv.Quote(v)+" is not an event id (a whole number ≥ 0)")
	}
	return n, true, nil
}

// appendEvent appends one event in the text/event-stream format. The data is one line of JSON,
// which never contains a newline.
func appendEvent(b []byte, e *storage.Event) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, e.ID, 10)
	b = append(b, "\nevent: "...)
	b = append(b, e.Type...)
	b = append(b, "\ndata: "...)
	b = append(b, e.Data...)
	return append(b, "\n\n"...)
}
