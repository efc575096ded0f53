package cloudsim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/jsonenc"
)

// Feed limits of the contract.
const (
	DefaultPageSize = 1000
	MaxPageSize     = 10000
)

// cursor is the decoded position of a client in a collection's feed.
//
// A snapshot cursor "s1.<epoch>.<collection>.<asof>.<next>" means: the snapshot that began when
// the head revision was asof has sent every live item below index next. A delta cursor
// "d1.<epoch>.<collection>.<rev>" means: every change with a revision up to rev has been sent.
// The epoch ties a cursor to this process; a cursor from an earlier run is answered 410 Gone so
// the client starts again with a snapshot rather than read a different history.
type cursor struct {
	snapshot bool
	asof     int64 // snapshot: head revision when the snapshot began
	next     int   // snapshot: index of the next item to send
	rev      int64 // delta: last revision sent
}

var (
	errBadCursor  = errors.New("malformed cursor")
	errGoneCursor = errors.New("cursor unknown to this feed")
)

func (s *Sim) formatCursor(coll int, c cursor) string {
	b := make([]byte, 0, 48)
	if c.snapshot {
		b = append(b, "s1."...)
	} else {
		b = append(b, "d1."...)
	}
	b = append(b, s.epoch...)
	b = append(b, '.')
	b = append(b, collNames[coll]...)
	b = append(b, '.')
	if c.snapshot {
		b = appendInt(b, c.asof)
		b = append(b, '.')
		b = appendInt(b, int64(c.next))
	} else {
		b = appendInt(b, c.rev)
	}
	return string(b)
}

// parseCursor decodes a cursor of coll. An empty cursor starts a snapshot at the current head.
// A cursor that does not parse, or belongs to another collection, is errBadCursor; one from
// another run of the sim is errGoneCursor. Positions are checked against the state in page.
func (s *Sim) parseCursor(coll int, raw string) (cursor, error) {
	if raw == "" {
		return cursor{snapshot: true, asof: s.Head()}, nil
	}
	parts := strings.Split(raw, ".")
	if len(parts) < 4 {
		return cursor{}, errBadCursor
	}
	kind, epoch, name := parts[0], parts[1], parts[2]
	num := func(p string) (int64, bool) {
		n, err := strconv.ParseInt(p, 10, 64)
		return n, err == nil && n >= 0
	}
	var c cursor
	switch {
	case kind == "s1" && len(parts) == 5:
		asof, ok1 := num(parts[3])
		next, ok2 := num(parts[4])
		if !ok1 || !ok2 || next > maxIDNumber {
			return cursor{}, errBadCursor
		}
		c = cursor{snapshot: true, asof: asof, next: int(next)}
	case kind == "d1" && len(parts) == 4:
		rev, ok := num(parts[3])
		if !ok {
			return cursor{}, errBadCursor
		}
		c = cursor{rev: rev}
	default:
		return cursor{}, errBadCursor
	}
	if name != collNames[coll] {
		return cursor{}, fmt.Errorf("%w: it belongs to the %q feed", errBadCursor, name)
	}
	if len(epoch) != 8 {
		return cursor{}, errBadCursor
	}
	if epoch != s.epoch {
		return cursor{}, errGoneCursor
	}
	return c, nil
}

// pageItem is one change line to write: which item, in which state.
type pageItem struct {
	rev int64
	idx int32
	ver uint32
	op  uint8
}

// page is one page of a feed, collected under the read lock and encoded after it is released,
// so a slow client never holds up mutations.
type page struct {
	items     []pageItem
	next      cursor
	more      bool
	remaining int64
}

// page collects up to limit changes of coll after cur, reusing items.
func (s *Sim) page(coll int, cur cursor, limit int, items []pageItem) (page, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := &s.colls[coll]
	if cur.snapshot {
		if cur.asof > s.head || cur.next > len(c.rev) {
			return page{}, errGoneCursor
		}
		// The snapshot sends each live item in its current state, which may be newer than asof;
		// the deltas after asof then send it again, and the revision rule makes that harmless.
		i, n := cur.next, len(c.rev)
		for ; i < n && len(items) < limit; i++ {
			if !c.dead[i] {
				items = append(items, pageItem{rev: c.rev[i], idx: int32(i), ver: c.ver[i], op: opUpsert})
			}
		}
		for i < n && c.dead[i] {
			i++
		}
		if i < n {
			return page{
				items:     items,
				next:      cursor{snapshot: true, asof: cur.asof, next: i},
				more:      true,
				remaining: int64(n-i) + int64(len(c.log)-searchLog(c.log, cur.asof)),
			}, nil
		}
		// Snapshot done: fill the rest of the page with the changes made since it began.
		cur = cursor{rev: cur.asof}
	} else if cur.rev > s.head {
		return page{}, errGoneCursor
	}
	pos, last := searchLog(c.log, cur.rev), cur.rev
	// A log entry whose revision is no longer its item's is stale: a later entry carries the
	// item's newest state, so only that one is sent.
	stale := func(e logEntry) bool { return c.rev[e.idx] != e.rev }
	for ; pos < len(c.log) && len(items) < limit; pos++ {
		e := c.log[pos]
		last = e.rev
		if stale(e) {
			continue
		}
		items = append(items, pageItem{rev: e.rev, idx: e.idx, ver: c.ver[e.idx], op: e.op})
	}
	// Step over stale entries so that "more" is true only when a change is really waiting.
	for ; pos < len(c.log) && stale(c.log[pos]); pos++ {
		last = c.log[pos].rev
	}
	return page{
		items:     items,
		next:      cursor{rev: last},
		more:      pos < len(c.log),
		remaining: int64(len(c.log) - pos),
	}, nil
}

// searchLog returns the index of the first entry with a revision greater than rev.
func searchLog(log []logEntry, rev int64) int {
	return sort.Search(len(log), func(i int) bool { return log[i].rev > rev })
}

// errCut is returned by writeFeed when the cut fault stopped the response inside a line.
var errCut = errors.New("feed: response cut by fault injection")

// feedWriter encodes the lines of one feed response.
type feedWriter struct {
	s             *Sim
	coll          int
	w             *bufio.Writer
	flush         func() // pushes what was written to the client
	malformedRate float64
	cutAt         int64 // index of the line cut in half; -1 for none
	lines         int64 // lines written so far
	line          []byte
	doc           []byte
	corrupted     int64
}

// writeFeed writes first and, when stream is set, the following pages until the feed is caught
// up or ctx ends. A stream also ends once it has sent every change up to the revision head: a
// catalog changing faster than the client reads would otherwise keep one response open
// forever. The end line then says more, and the client asks again.
func (s *Sim) writeFeed(ctx context.Context, fw *feedWriter, first page, limit int, stream bool, head int64) (pages int, err error) {
	pg := first
	for {
		for _, it := range pg.items {
			fw.line = fw.appendChange(fw.line[:0], it)
			if err := fw.writeLine(false); err != nil {
				return pages, err
			}
		}
		last := !stream || !pg.more || (!pg.next.snapshot && pg.next.rev >= head)
		fw.line = s.appendEnd(fw.line[:0], fw.coll, pg)
		if err := fw.writeLine(last); err != nil {
			return pages, err
		}
		pages++
		if last {
			return pages, nil
		}
		if err := fw.w.Flush(); err != nil {
			return pages, err
		}
		fw.flush()
		if err := s.pageDelay(ctx); err != nil {
			return pages, err
		}
		if pg, err = s.page(fw.coll, pg.next, limit, pg.items[:0]); err != nil {
			return pages, err
		}
	}
}

// pageDelay waits out the page-delay fault before the next page of a stream, or returns ctx's
// error once the client has gone.
func (s *Sim) pageDelay(ctx context.Context) error {
	return backoff.Sleep(ctx, time.Duration(s.Faults().PageDelayMS)*time.Millisecond)
}

// writeLine writes fw.line and a newline, or, when the cut fault falls on this line (or on the
// final line of a response that ended sooner than expected), half of it followed by errCut.
func (fw *feedWriter) writeLine(final bool) error {
	if fw.cutAt >= 0 && (fw.lines >= fw.cutAt || final) {
		if _, err := fw.w.Write(fw.line[:len(fw.line)/2]); err != nil {
			return err
		}
		if err := fw.w.Flush(); err != nil {
			return err
		}
		fw.flush()
		return errCut
	}
	fw.lines++
	fw.line = append(fw.line, '\n')
	_, err := fw.w.Write(fw.line)
	return err
}

// appendChange appends the change line of it, without its newline.
func (fw *feedWriter) appendChange(b []byte, it pageItem) []byte {
	s, coll := fw.s, fw.coll
	if it.op == opDelete {
		b = append(b, `{"collection":"`...)
		b = append(b, collNames[coll]...)
		b = append(b, `","id":"`...)
		b = s.appendID(b, coll, int(it.idx))
		b = append(b, `","op":"delete","rev":`...)
		b = appendInt(b, it.rev)
		return append(b, '}')
	}
	if kind := s.corruptionOf(coll, int(it.idx), it.rev, fw.malformedRate); kind != corruptNone {
		fw.corrupted++
		fw.doc = s.appendDoc(fw.doc[:0], coll, int(it.idx), it.ver)
		return s.appendCorruptChange(b, coll, int(it.idx), it.rev, fw.doc, kind)
	}
	b = append(b, `{"collection":"`...)
	b = append(b, collNames[coll]...)
	b = append(b, `","id":"`...)
	b = s.appendID(b, coll, int(it.idx))
	b = append(b, `","op":"upsert","rev":`...)
	b = appendInt(b, it.rev)
	b = append(b, `,"doc":`...)
	b = s.appendDoc(b, coll, int(it.idx), it.ver)
	return append(b, '}')
}

// appendEnd appends the end line of pg, without its newline.
func (s *Sim) appendEnd(b []byte, coll int, pg page) []byte {
	b = append(b, `{"end":{"cursor":`...)
	b = jsonenc.AppendString(b, s.formatCursor(coll, pg.next))
	b = append(b, `,"count":`...)
	b = appendInt(b, int64(len(pg.items)))
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, pg.more)
	b = append(b, `,"remaining":`...)
	b = appendInt(b, pg.remaining)
	return append(b, "}}"...)
}

// ExportItem is one line of an export: a live item as the sim holds it.
type ExportItem struct {
	ID  string          `json:"id"`
	Rev int64           `json:"rev"`
	Doc json.RawMessage `json:"doc"`
	// Corrupted tells whether the feed would send this item's current revision corrupted under
	// the current malformed rate, and Corruption how.
	Corrupted  bool   `json:"corrupted"`
	Corruption string `json:"corruption,omitempty"`
}

// Export writes every live item of collection as NDJSON lines
// {"id","rev","doc","corrupted","corruption"} in id order. It reads the state in chunks so that
// mutations are not held up; an export that runs while mutations happen is therefore not a
// single point in time.
func (s *Sim) Export(w io.Writer, collection string) error {
	coll, ok := collIndex(collection)
	if !ok {
		return fmt.Errorf("export %q: %w", collection, ErrUnknownCollection)
	}
	rate := s.Faults().MalformedRate
	bw := bufio.NewWriterSize(w, 64<<10)
	var items []pageItem
	var line []byte
	for next := 0; ; {
		items = items[:0]
		s.mu.RLock()
		c := &s.colls[coll]
		n := len(c.rev)
		for ; next < n && len(items) < MaxPageSize; next++ {
			if !c.dead[next] {
				items = append(items, pageItem{rev: c.rev[next], idx: int32(next), ver: c.ver[next]})
			}
		}
		s.mu.RUnlock()
		for _, it := range items {
			kind := s.corruptionOf(coll, int(it.idx), it.rev, rate)
			line = append(line[:0], `{"id":"`...)
			line = s.appendID(line, coll, int(it.idx))
			line = append(line, `","rev":`...)
			line = appendInt(line, it.rev)
			line = append(line, `,"doc":`...)
			line = s.appendDoc(line, coll, int(it.idx), it.ver)
			line = append(line, `,"corrupted":`...)
			line = strconv.AppendBool(line, kind != corruptNone)
			if kind != corruptNone {
				line = append(line, `,"corruption":"`...)
				line = append(line, kind.String()...)
				line = append(line, '"')
			}
			line = append(line, "}\n"...)
			if _, err := bw.Write(line); err != nil {
				return fmt.Errorf("export %s: %w", collection, err)
			}
		}
		if next >= n {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export %s: %w", collection, err)
	}
	return nil
}
