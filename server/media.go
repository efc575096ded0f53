package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/storeedge/storeedge/sync/media"
)

// Media is what the media service needs of the media cache (sync/media.Fetcher).
type Media interface {
	// Open returns the verified file of a media item, fetching it first within a bounded wait
	// when the catalog knows it and the cache does not. Errors: media.ErrUnknown (no such item),
	// *media.UnavailableError (not servable now, with a Retry-After), others (local failures).
	Open(ctx context.Context, id string) (*media.File, error)
	// Served notes that a file (by hex MD5) was served, for the cache's eviction order.
	Served(md5hex string)
	// Status is the media section of the status page.
	Status(ctx context.Context) (media.Status, error)
	// Hits counts the items Open found in the cache and those it had to fetch first (or tried
	// to) since start, for the metrics. Quick and safe for concurrent use.
	Hits() (hits, misses int64)
}

var _ Media = (*media.Fetcher)(nil)

// mediaRoutes are the media service: the shop's images, videos and documents, served from the
// verified files of the local cache.
func (s *Server) mediaRoutes(r chi.Router) {
	r.Get("/api/v1/media/{id}", s.handle(s.getMedia))
	r.Head("/api/v1/media/{id}", s.handle(s.getMedia))
}

var (
	probMediaUnavailable    = problemType{"media-unavailable", "Media not available yet", http.StatusServiceUnavailable}
	probRangeNotSatisfiable = problemType{"range-not-satisfiable", "Range not satisfiable", http.StatusRequestedRangeNotSatisfiable}
	probPreconditionFailed  = problemType{"precondition-failed", "Precondition failed", http.StatusPreconditionFailed}
)

// mediaCacheControl lets a device keep a copy but ask again before using it: the item may get a
// new version at any sync, and asking again costs a 304 on the LAN.
var mediaCacheControl = []string{"private, no-cache"}

// minSendRate is the slowest a device is assumed to read a media file: the write deadline of a
// media answer grows with its size, so that a large video is not cut by lan.write_timeout.
const minSendRate = 256 << 10

// getMedia serves a media item, whole, in ranges or only its headers, with the conditional
// requests of RFC 9110 answered by http.ServeContent from the open file (so the kernel sends it
// with sendfile).
func (s *Server) getMedia(w http.ResponseWriter, r *http.Request) error {
	if s.o.Media == nil {
		return refuse(probNotFound, "this server has no media service")
	}
	id, err := pathID(r)
	if err != nil {
		return err
	}
	// Open may wait for the item's download (media.on_demand_wait), longer than the write
	// deadline the server set when the request was read: the answer, a 503 problem too, gets a
	// deadline of its own once Open returns.
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	f, err := s.o.Media.Open(r.Context(), id)
	if err != nil {
		rc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		return whenMissing(fmt.Errorf("open media: %w", err), "no media item with id "+strconv.Quote(id)+" in the catalog as last synced")
	}
	defer f.Close()
	h := w.Header()
	h["Content-Type"] = []string{cmp.Or(f.ContentType, "application/octet-stream")} // content_type is optional
	h["Etag"] = []string{`"` + f.MD5 + `"`}
	h["Cache-Control"] = mediaCacheControl
	h["X-Content-Type-Options"] = []string{"nosniff"}
	rc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout + time.Duration(f.Size/minSendRate)*time.Second))
	byteRangesOnly(r.Header, f.Size)
	http.ServeContent(&rangeProblem{ResponseWriter: w, r: r, size: f.Size}, r, "", f.ModTime, f.File)
	s.o.Media.Served(f.MD5)
	return nil
}

// byteRangesOnly makes a Range header in a unit other than bytes go unheeded, as RFC 9110
// (section 14.2) asks of a server, where http.ServeContent would refuse it with 416; and reads
// the unit without regard to case ("Bytes=0-9"), as the RFC says units are. A suffix of no
// bytes ("-0") is unsatisfiable (RFC 9110, section 14.1.1), where http.ServeContent would
// answer 206 with an empty, backwards Content-Range: it is left out of the set, and a set of
// nothing else is asked from the file's end, which ServeContent refuses with 416. A set of more
// than maxRanges ranges, or of ranges that overlap, is not heeded either (the whole file, 200),
// as RFC 9110 (section 14.2) lets a server do: such a set asks for many small parts or the same
// bytes again, an answer many times the file's size.
func byteRangesOnly(h http.Header, size int64) {
	v := h.Get("Range")
	if v == "" {
		return
	}
	unit, ranges, ok := strings.Cut(v, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		h.Del("Range")
		return
	}
	specs := strings.Split(ranges, ",")
	kept := specs[:0]
	n := 0 // ranges, the empty elements of the list aside (http.ServeContent skips them)
	clamped := false
	for _, spec := range specs {
		if c, ok := clampSpec(spec); ok {
			spec, clamped = c, true
		}
		if !emptySuffix(spec) {
			kept = append(kept, spec)
			if textproto.TrimString(spec) != "" {
				n++
			}
		}
	}
	switch {
	case n > maxRanges || overlap(kept, size):
		h.Del("Range")
	case n == 0 && len(kept) < len(specs): // suffixes of no bytes, and empty elements at most
		h.Set("Range", "bytes="+strconv.FormatInt(size, 10)+"-")
	case unit != "bytes" || len(kept) < len(specs) || clamped:
		h.Set("Range", "bytes="+strings.Join(kept, ","))
	}
}

// clampSpec gives a byte range spec whose positions have more digits than an int64 holds with
// those positions at the largest int64, and true; false for any other spec. Such a position is
// valid (RFC 9110, section 14.1.1: a last position at or past the end means the rest of the file,
// a suffix longer than the file the whole file), where http.ServeContent, failing to read the
// number, would refuse the range with 416.
func clampSpec(spec string) (string, bool) {
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return "", false
	}
	first, last = textproto.TrimString(first), textproto.TrimString(last)
	changed := false
	for _, p := range []*string{&first, &last} {
		if _, err := strconv.ParseInt(*p, 10, 64); errors.Is(err, strconv.ErrRange) && digitsOnly(*p) {
			*p, changed = strconv.FormatInt(math.MaxInt64, 10), true
		}
	}
	if !changed {
		return "", false
	}
	return first + "-" + last, true
}

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// maxRanges is the most ranges a Range header is heeded with.
const maxRanges = 16

// overlap tells whether two of the byte range specs, read against a file of size bytes, ask
// for a byte in common. A set with a spec that cannot be read is not judged (false):
// http.ServeContent refuses it, 416. Specs past the end are not compared.
func overlap(specs []string, size int64) bool {
	type span struct{ from, to int64 } // inclusive
	var spans []span
	for _, spec := range specs {
		if textproto.TrimString(spec) == "" {
			continue
		}
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return false
		}
		first, last = textproto.TrimString(first), textproto.TrimString(last)
		if first == "" {
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n <= 0 {
				return false
			}
			spans = append(spans, span{max(size-n, 0), size - 1})
			continue
		}
		from, err := strconv.ParseInt(first, 10, 64)
		if err != nil || from < 0 {
			return false
		}
		to := size - 1
		if last != "" {
			if to, err = strconv.ParseInt(last, 10, 64); err != nil || to < from {
				return false
			}
		}
		if from < size { // past the end: not compared
			spans = append(spans, span{from, min(to, size-1)})
		}
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.from <= b.to && b.from <= a.to {
				return true
			}
		}
	}
	return false
}

// emptySuffix tells whether a byte range spec asks for the last zero bytes, read as
// http.ServeContent reads a spec ("-0", " - +00 ").
func emptySuffix(spec string) bool {
	first, last, ok := strings.Cut(spec, "-")
	if !ok || textproto.TrimString(first) != "" {
		return false
	}
	last = textproto.TrimString(last)
	if last == "" || last[0] == '-' {
		return false
	}
	n, err := strconv.ParseInt(last, 10, 64)
	return err == nil && n == 0
}

// rangeProblem turns http.ServeContent's plain-text 416 answer, and its empty 412, into problem
// documents, and passes everything else, io.ReaderFrom included (the sendfile path), through.
type rangeProblem struct {
	http.ResponseWriter
	r       *http.Request
	size    int64 // the file's
	swallow bool
}

func (w *rangeProblem) WriteHeader(code int) {
	if code == http.StatusPreconditionFailed {
		w.swallow = true
		problem(w.ResponseWriter, w.r, probPreconditionFailed, "the file is not the version the request's If-Match or If-Unmodified-Since names: "+
			"it changed since; ask for it again without them, or with its ETag "+w.Header().Get("ETag"))
		return
	}
	if code != http.StatusRequestedRangeNotSatisfiable {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.swallow = true
	// ServeContent sets "bytes */size" for a range past the end, nothing for a Range it cannot
	// read (bytes=abc, bytes=5-2); both answers say the file's size, as RFC 9110 asks.
	outside := w.Header().Get("Content-Range") != ""
	size := "bytes */" + strconv.FormatInt(w.size, 10)
	w.Header().Set("Content-Range", size)
	detail := "the Range asked for lies outside the file (" + size + "); ask for bytes within it, or for the whole file without Range"
	if !outside {
		asked := w.r.Header.Get("Range")
		if len(asked) > 64 {
			asked = asked[:64] + "…"
		}
		detail = "the Range header " + strconv.Quote(asked) + " is not a byte range this server can read; ask for bytes=first-last within the file (" +
			size + "), or for the whole file without Range"
	}
	problem(w.ResponseWriter, w.r, probRangeNotSatisfiable, detail)
}

func (w *rangeProblem) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *rangeProblem) ReadFrom(src io.Reader) (int64, error) {
	if w.swallow {
		return io.Copy(io.Discard, src)
	}
	return readFrom(w.ResponseWriter, src)
}

func (w *rangeProblem) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// readFrom copies src to w through w's own ReadFrom when it has one (net/http's answer does,
// and uses sendfile for a file), else with io.Copy.
func readFrom(w http.ResponseWriter, src io.Reader) (int64, error) {
	if rf, ok := w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w}, src)
}

// writerOnly hides every method but Write, so that io.Copy does not call ReadFrom again.
type writerOnly struct{ io.Writer }
