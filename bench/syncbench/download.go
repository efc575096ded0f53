package syncbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

type download struct {
	bytes   int64
	seconds float64
}

// downloadFeeds saves each collection's whole feed (a snapshot, as one streamed response) to
// DIR/COLLECTION.ndjson for the baseline. Not part of any timed figure.
func downloadFeeds(ctx context.Context, cloudURL, dir string, limit time.Duration, w io.Writer) (download, error) {
	var dl download
	if err := os.RemoveAll(dir); err != nil {
		return dl, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return dl, err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c := harness.NewClient(0, true)
	start := time.Now()
	for _, coll := range cloudapi.Collections {
		u := cloudURL + "/v1/feed/" + coll + "?stream=true&limit=10000"
		fmt.Fprintf(w, "download (untimed): GET %s -> %s\n", u, filepath.Join(dir, coll+".ndjson"))
		n, err := downloadFeed(ctx, c, u, filepath.Join(dir, coll+".ndjson"))
		if err != nil {
			return dl, fmt.Errorf("download %s feed: %w", coll, err)
		}
		dl.bytes += n
	}
	dl.seconds = time.Since(start).Seconds()
	fmt.Fprintf(w, "downloaded %.0f MB of feed in %.1f s\n", float64(dl.bytes)/1e6, dl.seconds)
	return dl, nil
}

func downloadFeed(ctx context.Context, c *http.Client, u, file string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+harness.StoreKey)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("%s: %s", resp.Status, b)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/x-ndjson" {
		return 0, fmt.Errorf("content type %q, want application/x-ndjson", mt)
	}
	f, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	tw := &tailWriter{}
	n, err := io.Copy(io.MultiWriter(f, tw), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	// A stream ends with the end line of a page that has nothing more to send.
	last := tw.lastLine()
	var end struct {
		End *cloudapi.PageEnd `json:"end"`
	}
	if json.Unmarshal(last, &end) != nil || end.End == nil || end.End.More {
		return n, fmt.Errorf("the feed did not end with a final end line (got %.200q)", last)
	}
	return n, nil
}

// tailWriter keeps the last bytes written, to check how a stream ended.
type tailWriter struct{ b []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8192 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tailWriter) lastLine() []byte {
	b := strings.TrimRight(string(t.b), "\n")
	if i := strings.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return []byte(b)
}
