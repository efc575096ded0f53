package server

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzMediaRange feeds arbitrary Range headers, as any device may send them, to the media
// answer's range handling over a small file: never a panic; a 200 with the whole file, a 206
// whose single range lies within the file and holds its bytes, a multipart 206, or a 416 problem
// giving the file's size (media.md).
func FuzzMediaRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "Bytes=10-19", "bytes=-0", "bytes=-0,", "bytes=-10", "bytes=10-19,-0", "bytes=5-2", "bytes=abc",
		"items=0-5", "bytes=0-,0-", "bytes=", "bytes=,", "bytes= -00 , -0", "bytes=99-", "bytes=0-0,2-3", "=", "bytes=-",
		"bytes=0-0,0-0", "bytes=0-5,3-8", "bytes=-5,90-", "bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,26-26,28-28,30-30,32-32"} {
		f.Add(s)
	}
	data := []byte(strings.Repeat("0123456789", 10))
	size := int64(len(data))
	f.Fuzz(func(t *testing.T, rng string) {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/media/M1", nil)
		r.Header.Set("Range", rng)
		rec := httptest.NewRecorder()
		byteRangesOnly(r.Header, size)
		http.ServeContent(&rangeProblem{ResponseWriter: rec, r: r, size: size}, r, "", time.Unix(0, 0), bytes.NewReader(data))
		body := rec.Body.Bytes()
		switch rec.Code {
		case 200:
			if !bytes.Equal(body, data) {
				t.Fatalf("Range %q: 200 with %d bytes", rng, len(body))
			}
			if onlyNoBytes(rng) {
				t.Fatalf("Range %q asks for no bytes: 200, want 416", rng)
			}
		case 206:
			cr := rec.Header().Get("Content-Range")
			if cr == "" {
				_, params, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
				if err != nil || !strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/byteranges") {
					t.Fatalf("Range %q: 206 with neither Content-Range nor parts", rng)
				}
				// At most maxRanges parts, none repeating a byte: never more than the file.
				mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
				parts, sent := 0, 0
				for {
					p, err := mr.NextPart()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("Range %q: 206 with a broken multipart body: %v", rng, err)
					}
					b, _ := io.ReadAll(p)
					parts, sent = parts+1, sent+len(b)
				}
				if parts > maxRanges || sent > len(data) {
					t.Fatalf("Range %q: 206 with %d parts, %d bytes of a %d-byte file", rng, parts, sent, len(data))
				}
				return
			}
			var first, last, total int64
			if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err != nil || total != size ||
				first < 0 || last < first || last >= size || !bytes.Equal(body, data[first:last+1]) {
				t.Fatalf("Range %q: 206 with Content-Range %q and %d bytes", rng, cr, len(body))
			}
		case 416:
			if got := rec.Header().Get("Content-Range"); got != fmt.Sprintf("bytes */%d", size) ||
				!bytes.Contains(body, []byte(probRangeNotSatisfiable.slug)) {
				t.Fatalf("Range %q: 416 with Content-Range %q: %s", rng, got, body)
			}
		default:
			t.Fatalf("Range %q: %d", rng, rec.Code)
		}
	})
}

// onlyNoBytes tells whether a Range header asks in bytes for suffixes of no bytes ("-0") and
// nothing else, empty elements of the list aside (RFC 9110, 5.6.1): an unsatisfiable set.
func onlyNoBytes(rng string) bool {
	unit, set, ok := strings.Cut(rng, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return false
	}
	some := false
	for _, spec := range strings.Split(set, ",") {
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue
		}
		if len(spec) < 2 || spec[0] != '-' || strings.Trim(spec[1:], "0") != "" {
			return false
		}
		some = true
	}
	return some
}

// Many small ranges, or ranges asking for the same bytes again, are not heeded: the whole file,
// 200, rather than an answer many times its size (media.md).
func TestMediaRangeSetsNotHeeded(t *testing.T) {
	data := []byte(strings.Repeat("0123456789", 100))
	size := int64(len(data))
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("%d-%d", i, i)
	}
	for rng, want := range map[string]int{
		"bytes=" + strings.Join(many, ","):             200,
		"bytes=" + strings.Repeat("0-0,", 999) + "0-0": 200,
		"bytes=0-5,3-8":   200,
		"bytes=-10,990-":  200,
		"bytes=0-4,10-14": 206,
		"bytes=" + strings.Join(many[:maxRanges:maxRanges], ","): 206,
		"bytes=" + strings.Join(many[:maxRanges+1], ","):         200,
		"bytes=0-1" + strings.Repeat(",", 17):                    206,
		"bytes=0-5,3-8,abc":                                      416,
		"bytes=0-5,3-8,5-2":                                      416,
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/media/M1", nil)
		r.Header.Set("Range", rng)
		rec := httptest.NewRecorder()
		byteRangesOnly(r.Header, size)
		http.ServeContent(&rangeProblem{ResponseWriter: rec, r: r, size: size}, r, "", time.Unix(0, 0), bytes.NewReader(data))
		if rec.Code != want || rec.Code == 200 && rec.Body.Len() != len(data) {
			t.Errorf("Range of %d bytes (%.40s…): %d with %d bytes, want %d", len(rng), rng, rec.Code, rec.Body.Len(), want)
		}
	}
}

// FuzzMediaConditional feeds arbitrary conditional headers (If-Match, If-None-Match,
// If-Modified-Since, If-Unmodified-Since, If-Range), with a Range, as any device may send them,
// to the media answer over a small file whose ETag and Last-Modified are set as the server sets
// them: never a panic; 200 with the file, 206 with a part of it, 304 with no body, or a 412 or
// 416 problem document (media.md).
func FuzzMediaConditional(f *testing.F) {
	const etag = `"q83vEjRWeJq83vEjRWeJqw=="`
	mod := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	date := mod.Format(http.TimeFormat)
	f.Add(etag, "", "", "", "", "")
	f.Add("", etag, "", "", "", "")
	f.Add("", "W/"+etag+", *", "", "", "", "bytes=0-9")
	f.Add(`"other"`, "", "", date, "", "")
	f.Add("*", "", date, "", etag, "bytes=10-19")
	f.Add("", "", "Mon, 30 Nov 2026 08:00:00 GMT", "", date, "bytes=-5")
	f.Add(",,", "\x00", "not a date", "Sunday, 06-Nov-94 08:49:37 GMT", "W/"+etag, "bytes=0-0,2-3")
	data := []byte(strings.Repeat("0123456789", 10))
	size := int64(len(data))
	f.Fuzz(func(t *testing.T, ifMatch, ifNoneMatch, ifModified, ifUnmodified, ifRange, rng string) {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/media/M1", nil)
		for k, v := range map[string]string{"If-Match": ifMatch, "If-None-Match": ifNoneMatch, "If-Modified-Since": ifModified,
			"If-Unmodified-Since": ifUnmodified, "If-Range": ifRange, "Range": rng} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		rec := httptest.NewRecorder()
		rec.Header()["Etag"] = []string{etag}
		byteRangesOnly(r.Header, size)
		http.ServeContent(&rangeProblem{ResponseWriter: rec, r: r, size: size}, r, "", mod, bytes.NewReader(data))
		body := rec.Body.Bytes()
		switch rec.Code {
		case 200:
			if !bytes.Equal(body, data) {
				t.Fatalf("200 with %d bytes", len(body))
			}
		case 206:
			if len(body) == 0 || len(body) > 2*len(data)+4096 {
				t.Fatalf("206 with %d bytes", len(body))
			}
		case 304:
			if len(body) != 0 {
				t.Fatalf("304 with a body of %d bytes", len(body))
			}
		case 412, 416:
			if rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d without a problem document: %q", rec.Code, body)
			}
		default:
			t.Fatalf("%d", rec.Code)
		}
	})
}
