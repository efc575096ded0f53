package logship

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The disk buffer is a folder of segment files, each a run of records, one JSON object per
// line, named by the sequence number of its first record (00000000000000000042.ndjson); the
// file "cursor" holds the sequence number of the first record the intake has not accepted.
// Records are appended to the newest segment; a segment is removed once every record in it is
// accepted, or, when the buffer is over its size, as the oldest, its unsent records counted as
// dropped. A record's sequence number is its segment's plus its line: they only grow, across
// restarts too, so the intake sees a gap wherever records were dropped.
const (
	segmentExt   = ".ndjson"
	cursorFile   = "cursor"
	minSegment   = 64 << 10
	segmentParts = 8 // a segment is at most 1/8 of the buffer: dropping one drops at most that
)

type segment struct {
	first uint64 // sequence number of its first record
	n     uint64 // records in it
	size  int64  // bytes
}

func (g *segment) end() uint64 { return g.first + g.n }

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentExt) }

// spool is the disk buffer. Its methods are safe for concurrent use: one writer appends while
// the sender reads and commits. Every file operation happens under mu, so that no segment is
// removed while it is read (Windows cannot remove an open file).
type spool struct {
	dir      string
	maxBytes int64
	segBytes int64

	mu      sync.Mutex // protects the fields below
	segs    []*segment // oldest first; the last is the one appended to
	bytes   int64      // size of all segments
	next    uint64     // sequence number of the next record appended
	cursor  uint64     // first record not accepted yet
	saved   uint64     // cursor as the cursor file holds it
	dropped uint64     // records dropped since open, the buffer being full
	// inflight is the range of the last read, being sent; orphaned counts the records of it
	// whose segment was dropped meanwhile: delivered if the send succeeds, else dropped.
	inflight [2]uint64
	orphaned uint64
	// notices are the notice records in the buffer, oldest first, with the count each carries.
	// A notice dropped with its segment is not counted as a dropped record: its count is
	// carried into the next notice, so that the notices the intake gets add up to dropped.
	notices []noticeRec
	carried uint64                      // counts of notices dropped, for the next notice
	orphans []noticeRec                 // notices of the last read whose segment was dropped (see orphaned)
	damaged []noticeRec                 // notices of the last read whose line was damaged on disk
	notice  func(dropped uint64) []byte // the record appended after records are dropped; nil: none
	active  *os.File                    // the last segment, open for appending; nil when none is open
	rd      [2]readPos                  // where the last read started and ended
}

// noticeRec is a notice record in the buffer: its sequence number and the records it counts.
type noticeRec struct{ seq, count uint64 }

// readPos remembers the byte offset of a record, so that reading on does not scan the segment
// from its start.
type readPos struct {
	seg uint64 // first of the segment
	seq uint64
	off int64
}

// openSpool opens (or creates) the buffer in dir, limited to maxBytes. It keeps every record a
// previous run left, less any last line cut short by a crash.
func openSpool(dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("logship: buffer folder: %w", err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, segBytes: min(max(maxBytes/segmentParts, minSegment), maxBytes)}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeAcceptedLocked()
	s.enforceLocked(s.maxBytes)
	return s, nil
}

// load reads the segments and the cursor a previous run left.
func (s *spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("logship: buffer folder: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		first, err := strconv.ParseUint(name, 10, 64)
		if !ok || err != nil || !e.Type().IsRegular() {
			continue
		}
		g, err := s.recover(first)
		if err != nil {
			return err
		}
		if g != nil {
			s.segs = append(s.segs, g)
			s.bytes += g.size
		}
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmpUint(a.first, b.first) })
	s.next = 1
	if n := len(s.segs); n > 0 {
		s.next = s.segs[n-1].end()
		s.cursor = s.segs[0].first
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, cursorFile)); err == nil {
		if c, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			s.saved = c
			s.cursor = max(s.cursor, c)
			s.next = max(s.next, c)
		}
	}
	s.cursor = min(s.cursor, s.next)
	if s.cursor == 0 {
		s.cursor = 1
	}
	return nil
}

// recover counts the records of a segment and cuts off a last line left incomplete by a crash.
// An empty segment is removed and nil returned.
func (s *spool) recover(first uint64) (*segment, error) {
	path := filepath.Join(s.dir, segmentName(first))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("logship: buffer: %w", err)
	}
	size := int64(bytes.LastIndexByte(data, '\n') + 1)
	if size < int64(len(data)) {
		if err := os.Truncate(path, size); err != nil {
			return nil, fmt.Errorf("logship: buffer: %w", err)
		}
	}
	if size == 0 {
		return nil, removeFile(path)
	}
	return &segment{first: first, n: uint64(bytes.Count(data[:size], []byte{'\n'})), size: size}, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("logship: buffer: %w", err)
	}
	return nil
}

// appendLines adds n records (what lines holds), each a JSON object ending in '\n', and drops
// the oldest if the buffer goes over its size: a burst larger than the buffer keeps its newest
// records. If that drops records, it appends the record notice(dropped) after them at once, so
// that no reader sees the buffer without it. noticed, when not 0, says that the last of lines
// is a notice of that many records dropped elsewhere: should it be dropped in turn, its count
// goes into the next notice. It returns how many records were dropped, and how many of lines
// could not be written (with the error).
func (s *spool) appendLines(lines []byte, n, noticed uint64) (dropped, lost uint64, err error) {
	if n == 0 {
		return 0, 0, nil
	}
	if lines[len(lines)-1] != '\n' {
		lines = append(lines[:len(lines):len(lines)], '\n') // every record ends its line
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.dropped
	// In pieces that fit a segment each: a burst written whole into one segment would make the
	// buffer drop that segment, the records just written with it, rather than the oldest an
	// eighth at a time.
	written := uint64(0)
	for len(lines) > 0 {
		cut, count := s.pieceLocked(lines)
		if _, err = s.appendLocked(lines[:cut], count); err != nil {
			break
		}
		written += count
		lines = lines[cut:]
		s.enforceLocked(s.maxBytes)
	}
	if written < n {
		lost = n - written
	} else if noticed > 0 {
		s.notices = append(s.notices, noticeRec{seq: s.next - 1, count: noticed})
	}
	serr := s.settleLocked(before)
	return s.dropped - before, lost, errors.Join(err, serr)
}

// pieceLocked is how much of lines to append next, at record boundaries: what the segment
// appended to has room for, or one record.
func (s *spool) pieceLocked(lines []byte) (cut int, count uint64) {
	room := s.segBytes
	if k := len(s.segs); k > 0 && s.segs[k-1].size < s.segBytes && s.segs[k-1].end() == s.next {
		room -= s.segs[k-1].size // activeLocked appends to that segment
	}
	for cut < len(lines) {
		end := cut + bytes.IndexByte(lines[cut:], '\n') + 1
		if end <= cut {
			end = len(lines) // no newline: the rest is one record
		}
		if count > 0 && int64(end) > room {
			break
		}
		cut, count = end, count+1
	}
	return cut, count
}

// noticeOpenDrops appends the notice of the records dropped when the buffer was opened (a
// smaller buffer_mb than the records a previous run left), once the notice is known.
func (s *spool) noticeOpenDrops() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settleLocked(0)
}

// settleLocked brings the buffer within its size, and appends the notice of the records dropped
// since dropped was before, if any, in room made for it first: appending the notice must not
// drop records it does not count (the notice of a notice would never end).
func (s *spool) settleLocked(before uint64) error {
	s.enforceLocked(s.maxBytes)
	if s.notice == nil {
		return nil
	}
	for {
		dropped := s.dropped - before + s.carried
		if dropped == 0 {
			return nil
		}
		note := s.notice(dropped)
		s.enforceLocked(s.maxBytes - int64(len(note)))
		if s.dropped-before+s.carried == dropped {
			seq := s.next
			if _, err := s.appendLocked(note, 1); err != nil {
				s.carried = dropped // the next notice says it: this call's drops are counted already
				return err
			}
			s.notices = append(s.notices, noticeRec{seq: seq, count: dropped})
			s.carried = 0
			return nil
		}
	}
}

// appendLocked writes lines, n records, to the segment appended to.
func (s *spool) appendLocked(lines []byte, n uint64) (*segment, error) {
	g, err := s.activeLocked()
	if err != nil {
		return nil, err
	}
	if _, err := s.active.Write(lines); err != nil {
		// Take back a partial line, so that what follows stays readable.
		s.closeActiveLocked()
		_ = os.Truncate(filepath.Join(s.dir, segmentName(g.first)), g.size)
		return nil, fmt.Errorf("logship: buffer: %w", err)
	}
	g.n += n
	g.size += int64(len(lines))
	s.bytes += int64(len(lines))
	s.next += n
	return g, nil
}

// activeLocked returns the segment to append to, opening or starting one.
func (s *spool) activeLocked() (*segment, error) {
	var last *segment
	if n := len(s.segs); n > 0 {
		last = s.segs[n-1]
	}
	if s.active != nil && last != nil && last.size < s.segBytes {
		return last, nil
	}
	s.closeActiveLocked()
	if last == nil || last.size >= s.segBytes || last.end() != s.next {
		last = &segment{first: s.next}
		s.segs = append(s.segs, last)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, segmentName(last.first)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		if last.n == 0 {
			s.segs = s.segs[:len(s.segs)-1]
		}
		return nil, fmt.Errorf("logship: buffer: %w", err)
	}
	s.active = f
	return last, nil
}

func (s *spool) closeActiveLocked() {
	if s.active != nil {
		s.active.Close()
		s.active = nil
	}
}

// enforceLocked drops the oldest segments while the buffer holds more than limit bytes.
func (s *spool) enforceLocked(limit int64) {
	for s.bytes > limit && len(s.segs) > 0 {
		g := s.segs[0]
		if len(s.segs) == 1 {
			s.closeActiveLocked()
		}
		if from := max(s.cursor, g.first); from < g.end() {
			// Records being sent are not dropped yet: their fate is the send's.
			sending := overlap(from, g.end(), s.inflight[0], s.inflight[1])
			notes := uint64(0)
			for len(s.notices) > 0 && s.notices[0].seq < g.end() {
				nr := s.notices[0]
				s.notices = s.notices[1:]
				switch {
				case nr.seq < from: // accepted already
				case nr.seq >= s.inflight[0] && nr.seq < s.inflight[1]:
					s.orphans = append(s.orphans, nr)
				default:
					notes++
					s.carried += nr.count
				}
			}
			s.dropped += g.end() - from - sending - notes
			s.orphaned += sending
			s.cursor = g.end()
		}
		s.removeFirstLocked()
	}
}

// overlap is how many numbers [a, b) and [c, d) have in common.
func overlap(a, b, c, d uint64) uint64 {
	lo, hi := max(a, c), min(b, d)
	if lo >= hi {
		return 0
	}
	return hi - lo
}

// removeFirstLocked removes the oldest segment. A file that cannot be removed is forgotten all
// the same (its records are behind the cursor, and the next open removes it).
func (s *spool) removeFirstLocked() {
	g := s.segs[0]
	_ = removeFile(filepath.Join(s.dir, segmentName(g.first)))
	s.bytes -= g.size
	s.segs = s.segs[1:]
}

// removeAcceptedLocked removes the segments whose every record is accepted, but the one
// appended to.
func (s *spool) removeAcceptedLocked() {
	s.removeAcceptedBeforeNewestLocked()
	if len(s.segs) == 1 && s.segs[0].end() <= s.cursor && s.active == nil {
		s.removeFirstLocked()
	}
}

// removeAcceptedBeforeNewestLocked removes the segments whose records were all accepted, but the
// newest.
func (s *spool) removeAcceptedBeforeNewestLocked() {
	for len(s.segs) > 1 && s.segs[0].end() <= s.cursor {
		s.removeFirstLocked()
	}
}

// read returns up to limit records from the cursor on, at most maxBytes of them (at least one),
// from one segment, and the sequence number after the last record read. Lines that are not a
// JSON object (a damaged disk) are skipped: end covers them, so commit passes them; bad counts
// them.
func (s *spool) read(limit int, maxBytes int) (recs []spooled, end uint64, bad uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var g *segment
	for _, c := range s.segs {
		if s.cursor < c.end() {
			g = c
			break
		}
	}
	if g == nil {
		return nil, s.cursor, 0, nil
	}
	f, err := os.Open(filepath.Join(s.dir, segmentName(g.first)))
	if err != nil {
		return nil, s.cursor, 0, fmt.Errorf("logship: buffer: %w", err)
	}
	defer f.Close()
	seq, off := g.first, int64(0)
	for _, p := range s.rd {
		if p.seg == g.first && p.seq <= s.cursor && p.seq >= seq {
			seq, off = p.seq, p.off
		}
	}
	start := readPos{seg: g.first, seq: seq, off: off}
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, g.size-off), 64<<10)
	size := 1 // the batch's closing bracket; each record counts the comma or bracket before it
	var damaged []noticeRec
	for seq < g.end() && len(recs) < limit {
		line, err := br.ReadBytes('\n')
		if err != nil {
			break // the end of what was written (a line is never cut short here)
		}
		body := line[:len(line)-1]
		if seq >= s.cursor {
			// What the record takes in the batch (encodeBatch): {"seq":N, before its members.
			n := len(body) + len(`{"seq":,`) + len(strconv.FormatUint(seq, 10))
			if len(recs) > 0 && size+n > maxBytes {
				break
			}
			if len(body) > 0 && body[0] == '{' && json.Valid(body) {
				recs = append(recs, spooled{seq: seq, line: body})
				size += n
			} else {
				bad++
				if i := slices.IndexFunc(s.notices, func(nr noticeRec) bool { return nr.seq == seq }); i >= 0 {
					damaged = append(damaged, s.notices[i])
				}
			}
		}
		off += int64(len(line))
		seq++
	}
	s.rd = [2]readPos{start, {seg: g.first, seq: seq, off: off}}
	s.inflight, s.orphaned, s.orphans, s.damaged = [2]uint64{s.cursor, seq}, 0, nil, damaged
	return recs, seq, bad, nil
}

// commit marks every record before end, the end of the last read, as delivered (or rejected
// for good), removes the segments that leaves empty and saves the cursor.
func (s *spool) commit(end uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A damaged notice reaches the intake as nothing: its count goes into the next notice, as a
	// dropped notice's does (the damaged line itself is a record dropped, counted by the caller).
	for _, nr := range s.damaged {
		if nr.seq < end {
			s.carried += nr.count
		}
	}
	s.inflight, s.orphaned, s.orphans, s.damaged = [2]uint64{}, 0, nil, nil
	if end <= s.cursor {
		return nil
	}
	s.cursor = min(end, s.next)
	for len(s.notices) > 0 && s.notices[0].seq < s.cursor {
		s.notices = s.notices[1:] // delivered
	}
	// The cursor first: segments removed before it is saved would leave a start that follows
	// (a failed write, a crash) with neither, numbering new records from the old cursor: the
	// intake, which drops what it has by seq, would drop them.
	if err := s.saveCursorLocked(); err != nil {
		// The accepted segments but the newest still go: a full disk, the likeliest reason, gets
		// their room back, and the newest keeps the numbering past them.
		s.removeAcceptedBeforeNewestLocked()
		return err
	}
	s.removeAcceptedLocked()
	return nil
}

// release says the last read was not delivered: its records stay to be read again, but for
// those whose segment was dropped meanwhile, which are now counted as dropped.
func (s *spool) release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.dropped
	for _, nr := range s.orphans { // a notice is not a record dropped: its count goes on
		s.carried += nr.count
		s.orphaned--
	}
	s.dropped += s.orphaned
	s.inflight, s.orphaned, s.orphans, s.damaged = [2]uint64{}, 0, nil, nil
	return s.settleLocked(before)
}

// saveCursorLocked writes the cursor file: a temporary file renamed over it, so that a crash
// leaves the old value or the new one.
func (s *spool) saveCursorLocked() error {
	if s.saved == s.cursor {
		return nil
	}
	tmp := filepath.Join(s.dir, cursorFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(s.cursor, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("logship: buffer: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, cursorFile)); err != nil {
		return fmt.Errorf("logship: buffer: %w", err)
	}
	s.saved = s.cursor
	return nil
}

// spoolStats is what the buffer holds now.
type spoolStats struct {
	Records uint64 // not accepted yet
	Bytes   int64
	Dropped uint64 // since open, the buffer being full
}

func (s *spool) stats() spoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return spoolStats{Records: s.next - s.cursor, Bytes: s.bytes, Dropped: s.dropped}
}

// close closes the segment being appended to and saves the cursor.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeActiveLocked()
	return s.saveCursorLocked()
}
