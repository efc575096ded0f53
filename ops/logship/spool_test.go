package logship

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func lines(from, n int) []byte {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, `{"message":"r%d"}`+"\n", i)
	}
	return []byte(b.String())
}

func readAll(t *testing.T, s *spool) []string {
	t.Helper()
	var out []string
	for {
		recs, end, _, err := s.read(7, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 && s.stats().Records == 0 {
			return out
		}
		for _, r := range recs {
			out = append(out, fmt.Sprintf("%d:%s", r.seq, r.line))
		}
		if err := s.commit(end); err != nil {
			t.Fatal(err)
		}
	}
}

// A batch holds at most maxBytes once encoded (remote-support.md: at most 4 MiB decompressed),
// the sequence number added to each record counted, and as many records as fit.
func TestSpoolReadBoundsTheEncodedBatch(t *testing.T) {
	s, err := openSpool(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, `{"message":"r%d %s"}`+"\n", i, strings.Repeat("x", 90+i%7))
	}
	if _, _, err := s.appendLines([]byte(b.String()), 100, 0); err != nil {
		t.Fatal(err)
	}
	const maxBytes = 2000
	recs, _, _, err := s.read(1000, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	body, err := encodeBatch(recs)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) > maxBytes {
		t.Errorf("a batch of %d records is %d bytes decompressed, over the %d allowed", len(recs), len(plain), maxBytes)
	}
	i := len(recs) // the next record's, as written above
	nextBody := fmt.Sprintf(`{"message":"r%d %s"}`, i, strings.Repeat("x", 90+i%7))
	next := len(nextBody) + len(`,{"seq":,`) - 1 + len(strconv.FormatUint(recs[i-1].seq+1, 10))
	if len(plain)+next <= maxBytes {
		t.Errorf("a batch of %d records is %d bytes: the next one would have fit in %d", len(recs), len(plain), maxBytes)
	}
}

// A crash can leave a half-written last line and damaged lines: the next open keeps every
// whole record, skips the damaged ones and numbers on from the last.
func TestSpoolRecoversAfterACrash(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.appendLines(lines(1, 3), 3, 0); err != nil {
		t.Fatal(err)
	}
	s.close()
	seg := filepath.Join(dir, segmentName(1))
	f, _ := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n{\"message\":\"r5\"}\n{\"message\":\"cut sh")
	f.Close()

	s, err = openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.stats(); st.Records != 5 {
		t.Fatalf("after the crash %d records, want 5 (the cut one left out)", st.Records)
	}
	s.appendLines(lines(6, 1), 1, 0)
	got := strings.Join(readAll(t, s), " ")
	want := `1:{"message":"r1"} 2:{"message":"r2"} 3:{"message":"r3"} 5:{"message":"r5"} 6:{"message":"r6"}`
	if got != want {
		t.Errorf("read back %s\nwant         %s", got, want)
	}
	s.close()
	s, _ = openSpool(dir, 1<<20)
	defer s.close()
	if st := s.stats(); st.Records != 0 || s.next != 7 {
		t.Errorf("after everything was sent: %+v, next %d", st, s.next)
	}
	s.appendLines(lines(7, 1), 1, 0)
	if recs, _, _, _ := s.read(10, 1<<20); len(recs) != 1 || recs[0].seq != 7 {
		t.Errorf("numbering does not go on after a restart: %+v", recs)
	}
}

// Dropping the oldest segment while its records are being sent counts them only if the send
// fails: a record is delivered or counted as dropped, never both.
func TestSpoolDropDuringSend(t *testing.T) {
	for _, delivered := range []bool{true, false} {
		s, err := openSpool(t.TempDir(), 2*minSegment)
		if err != nil {
			t.Fatal(err)
		}
		one := lines(0, 1)
		// Fill the first segment, and start the second.
		for len(s.segs) < 2 {
			s.appendLines(one, 1, 0)
		}
		perSeg := s.segs[0].n
		recs, end, _, _ := s.read(10, 1<<20)
		for s.stats().Dropped == 0 && s.orphaned == 0 {
			s.appendLines(one, 1, 0)
		}
		if delivered {
			s.commit(end)
		} else {
			s.release()
		}
		st := s.stats()
		want := perSeg - uint64(len(recs))
		if !delivered {
			want = perSeg
		}
		if st.Dropped != want {
			t.Errorf("delivered %v: %d counted dropped, want %d", delivered, st.Dropped, want)
		}
		s.close()
	}
}

// Records dropped when the buffer is opened smaller than what a previous run left are told to
// the intake by the notice, as records dropped while running are.
func TestSpoolDropsAtOpenAreNoticed(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 8*minSegment)
	if err != nil {
		t.Fatal(err)
	}
	n := 6 * minSegment / len(lines(0, 1))
	if _, _, err := s.appendLines(lines(0, n), uint64(n), 0); err != nil {
		t.Fatal(err)
	}
	s.close()
	s, err = openSpool(dir, 2*minSegment)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.notice = func(dropped uint64) []byte { return []byte(fmt.Sprintf(`{"message":"dropped %d"}`+"\n", dropped)) }
	if err := s.noticeOpenDrops(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s)
	if st := s.stats(); st.Dropped == 0 || !strings.HasSuffix(got[len(got)-1], fmt.Sprintf(`{"message":"dropped %d"}`, st.Dropped)) {
		t.Errorf("dropped %d at open; the buffer ends with %s", st.Dropped, got[len(got)-1])
	}
}

// A record given without its newline still ends its line: the next one is a record of its own.
func TestSpoolRecordWithoutNewline(t *testing.T) {
	s, err := openSpool(t.TempDir(), 8*minSegment)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.appendLines([]byte(`{"message":"r0"}`), 1, 0)
	s.appendLines(lines(1, 1), 1, 0)
	if got := readAll(t, s); len(got) != 2 || !strings.HasSuffix(got[1], `{"message":"r1"}`) {
		t.Fatalf("records %q", got)
	}
}

// One burst larger than the whole buffer keeps its newest records, up to the buffer's size, and
// ends with the notice of every record it dropped, the buffer within its size notice included.
func TestSpoolBurstLargerThanTheBuffer(t *testing.T) {
	for _, size := range []int64{2 * minSegment, 8 * minSegment, 16 * minSegment} {
		s, err := openSpool(t.TempDir(), size)
		if err != nil {
			t.Fatal(err)
		}
		s.notice = func(dropped uint64) []byte { return []byte(fmt.Sprintf(`{"message":"dropped %d"}`+"\n", dropped)) }
		s.appendLines(lines(0, 10), 10, 0)
		n := int(3*size) / len(lines(0, 1))
		dropped, lost, err := s.appendLines(lines(10, n), uint64(n), 0)
		if err != nil || lost != 0 {
			t.Fatal(lost, err)
		}
		st := s.stats()
		if st.Bytes > size || dropped != st.Dropped || dropped == 0 {
			t.Errorf("buffer of %d bytes: %d bytes held, %d dropped (status %d)", size, st.Bytes, dropped, st.Dropped)
		}
		got := readAll(t, s)
		if want := fmt.Sprintf(`{"message":"dropped %d"}`, dropped); !strings.HasSuffix(got[len(got)-1], want) {
			t.Errorf("buffer of %d bytes: the last record is %s, want %s", size, got[len(got)-1], want)
		}
		// The newest records stayed, in order, to the last one written.
		kept := got[:len(got)-1]
		if uint64(len(kept))+dropped != uint64(10+n) || len(kept) < int(size)/len(lines(0, 1))/2 {
			t.Errorf("buffer of %d bytes: %d records kept and %d dropped of %d", size, len(kept), dropped, 10+n)
		}
		for i, rec := range kept {
			if want := fmt.Sprintf(`{"message":"r%d"}`, 10+n-len(kept)+i); !strings.HasSuffix(rec, want) {
				t.Fatalf("buffer of %d bytes: record %d of those kept is %s, want %s", size, i, rec, want)
			}
		}
		s.close()
	}
}

// A notice written by the shipper (records its queue dropped) that the buffer drops in turn
// passes its count on to the buffer's next notice: the notices the intake gets still add up.
func TestSpoolCarriesTheCountOfADroppedNotice(t *testing.T) {
	s, err := openSpool(t.TempDir(), 2*minSegment)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.notice = func(dropped uint64) []byte { return []byte(fmt.Sprintf(`{"message":"dropped %d"}`+"\n", dropped)) }
	if _, _, err := s.appendLines(append(lines(0, 3), `{"message":"queue dropped 5"}`+"\n"...), 4, 5); err != nil {
		t.Fatal(err)
	}
	n := int(3*2*minSegment) / len(lines(0, 1))
	dropped, _, err := s.appendLines(lines(3, n), uint64(n), 0)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s)
	// The 3 records before it and the burst's oldest were dropped; the queue's notice went with
	// them, not counted as a record, its 5 carried into the buffer's notice.
	if want := fmt.Sprintf(`{"message":"dropped %d"}`, dropped+5); !strings.HasSuffix(got[len(got)-1], want) {
		t.Errorf("the last record is %s, want %s", got[len(got)-1], want)
	}
	if uint64(len(got)-1)+dropped != uint64(3+n) {
		t.Errorf("%d kept and %d dropped of %d records (the queue's notice is none)", len(got)-1, dropped, 3+n)
	}
}

// Numbers are never given again, even when the cursor cannot be saved after the intake took a
// batch (a failed write, or a crash at that moment): the intake drops what it has by seq, and a
// record numbered again would be lost.
func TestSeqNotGivenAgainWhenTheCursorIsNotSaved(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	s.appendLines(lines(1, 10), 10, 0)
	s.close()
	s, err = openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, cursorFile+".tmp"), 0o700); err != nil { // the cursor's write now fails
		t.Fatal(err)
	}
	_, end, _, err := s.read(100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.commit(end); err == nil { // the intake accepted 1..10
		t.Fatal("the cursor was saved through a directory")
	}
	s.close()
	os.Remove(filepath.Join(dir, cursorFile+".tmp"))
	s, err = openSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.appendLines(lines(11, 1), 1, 0)
	recs, _, _, err := s.read(100, 1<<20)
	if err != nil || len(recs) == 0 {
		t.Fatalf("read: %d records, %v", len(recs), err)
	}
	if last := recs[len(recs)-1].seq; last <= 10 {
		t.Errorf("the new record is numbered %d after 1..10 were accepted", last)
	}
}

// A notice damaged on disk reaches the intake as nothing: the count it carried goes into the next
// notice, so that the notices the intake gets still add up to dropped.
func TestSpoolCarriesTheCountOfADamagedNotice(t *testing.T) {
	s, err := openSpool(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.notice = func(dropped uint64) []byte { return []byte(fmt.Sprintf(`{"message":"dropped %d"}`+"\n", dropped)) }
	// Two records, then the notice of 5 records the queue dropped, damaged on disk.
	if _, _, err := s.appendLines(append(lines(0, 2), "{\"message\":\"queue dro\x00\n"...), 3, 5); err != nil {
		t.Fatal(err)
	}
	recs, end, bad, err := s.read(100, 1<<20)
	if err != nil || len(recs) != 2 || bad != 1 {
		t.Fatalf("read: %d records, %d bad, %v; want 2 and the damaged notice", len(recs), bad, err)
	}
	if err := s.commit(end); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.appendLines(lines(2, 1), 1, 0); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s)
	if len(got) == 0 || !strings.HasSuffix(got[len(got)-1], `{"message":"dropped 5"}`) {
		t.Errorf("the records after the damaged notice: %q; want a notice of its 5 last", got)
	}
}
