package cloudsim

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// streamAll writes the whole feed of coll from an empty cursor, as stream=true would.
func streamAll(tb testing.TB, s *Sim, coll int, w io.Writer) int64 {
	cur, err := s.parseCursor(coll, "")
	if err != nil {
		tb.Fatal(err)
	}
	first, err := s.page(coll, cur, MaxPageSize, make([]pageItem, 0, MaxPageSize))
	if err != nil {
		tb.Fatal(err)
	}
	fw := &feedWriter{s: s, coll: coll, w: bufio.NewWriterSize(w, 64<<10), flush: func() {}, cutAt: -1}
	if _, err := s.writeFeed(context.Background(), fw, first, MaxPageSize, true, s.Head()); err != nil {
		tb.Fatal(err)
	}
	if err := fw.w.Flush(); err != nil {
		tb.Fatal(err)
	}
	return fw.lines
}

// BenchmarkFeedEncode measures the server side alone: generating and encoding the streamed
// feed of 100k products on one goroutine.
func BenchmarkFeedEncode(b *testing.B) {
	for _, coll := range []int{cProducts, cPrices, cStock} {
		b.Run(collNames[coll], func(b *testing.B) {
			s := New(Options{Products: 100_000})
			var cw countingWriter
			var lines int64
			for b.Loop() {
				lines += streamAll(b, s, coll, &cw)
			}
			b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(float64(cw.n)/float64(lines), "bytes/line")
		})
	}
}

// BenchmarkFeedHTTP measures a streamed 100k-product feed over loopback HTTP, read raw.
func BenchmarkFeedHTTP(b *testing.B) {
	h := newHarness(b, Options{Products: 100_000})
	var lines int64
	for b.Loop() {
		resp := h.do(http.MethodGet, feedPath(cloudapi.Products, "", MaxPageSize, true), testKey, nil)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines++
		}
		resp.Body.Close()
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

func TestStreamAllMatchesPages(t *testing.T) {
	s := New(Options{Products: 2500})
	var cw countingWriter
	// 2500 items in pages of 10000: one page, one end line.
	if got := streamAll(t, s, cProducts, &cw); got != 2501 {
		t.Errorf("streamed %d lines", got)
	}
}

func FuzzParseCursor(f *testing.F) {
	s := New(Options{Products: 10})
	f.Add(s.formatCursor(cProducts, cursor{snapshot: true, asof: 30, next: 4}))
	f.Add(s.formatCursor(cProducts, cursor{rev: 12}))
	f.Add("d1.00000000.products.1")
	f.Add("s1..products.-1.2")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := s.parseCursor(cProducts, raw)
		if err != nil || raw == "" {
			return
		}
		back, err := s.parseCursor(cProducts, s.formatCursor(cProducts, c))
		if err != nil || back != c {
			t.Fatalf("%q parsed as %+v, which formats back to %+v (%v)", raw, c, back, err)
		}
		// Whatever parses is served or refused, never a crash.
		_, _ = s.page(cProducts, c, 5, nil)
	})
}

// TestStreamStopsAtHead checks that a stream ends, with more set, once it has sent what existed
// when it began, so a catalog that changes faster than a client reads cannot pin a response.
func TestStreamStopsAtHead(t *testing.T) {
	s := New(Options{Products: 1000})
	from := cursor{rev: s.Head()}
	s.Mutate(Mutation{PriceChanges: 6})
	headA := s.Head()
	s.Mutate(Mutation{Adds: 6}) // new products: their prices cannot supersede the first six

	read := func(c cursor, head int64) ([]*cloudapi.Change, cloudapi.PageEnd) {
		first, err := s.page(cPrices, c, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		fw := &feedWriter{s: s, coll: cPrices, w: bufio.NewWriter(&buf), flush: func() {}, cutAt: -1}
		if _, err := s.writeFeed(context.Background(), fw, first, 2, true, head); err != nil {
			t.Fatal(err)
		}
		_ = fw.w.Flush()
		dec := cloudapi.NewDecoder(&buf, cloudapi.Prices)
		var changes []*cloudapi.Change
		var end cloudapi.PageEnd
		for {
			line, err := dec.Next()
			if err == io.EOF {
				return changes, end
			}
			if err != nil || line.Malformed != nil {
				t.Fatalf("decode: %v %v", err, line.Malformed)
			}
			if line.Change != nil {
				changes = append(changes, line.Change)
			} else {
				end = *line.End
			}
		}
	}
	got, end := read(from, headA)
	if !end.More || len(got) != 6 || got[5].Rev != headA {
		t.Fatalf("stream bounded at %d: %d changes, end %+v", headA, len(got), end)
	}
	next, err := s.parseCursor(cPrices, end.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	rest, end := read(next, s.Head())
	if end.More || len(rest) != 6 {
		t.Errorf("rest: %d changes, end %+v", len(rest), end)
	}
}
