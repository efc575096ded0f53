package server

import (
	"bytes"
	"fmt"
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
	for _, s := range []string{"bytes=0-9", "Bytes=10-19", "bytes=-0", "bytes=-10", "bytes=10-19,-0", "bytes=5-2", "bytes=abc",
		"items=0-5", "bytes=0-,0-", "bytes=", "bytes=,", "bytes= -00 , -0", "bytes=99-", "bytes=0-0,2-3", "=", "bytes=-"} {
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
		case 206:
			cr := rec.Header().Get("Content-Range")
			if cr == "" {
				if !strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/byteranges") {
					t.Fatalf("Range %q: 206 with neither Content-Range nor parts", rng)
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
