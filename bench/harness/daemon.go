package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
)

// DaemonConfig is how the bench runs storeedge: every listener on 127.0.0.1, the cloud at
// CloudURL with the bench's store key, the admin token AdminToken.
type DaemonConfig struct {
	DataDir   string
	CloudURL  string
	FrontDoor int
	Catalog   int      // 0: no own catalog port
	Extra     []string // more --set KEY=VALUE
}

// Args is the storeedge command line.
func (c DaemonConfig) Args() []string {
	args := []string{"run",
		"--set", "data_dir=" + c.DataDir,
		"--set", "cloud.url=" + c.CloudURL,
		"--set", "cloud.store_key=" + StoreKey,
		"--set", "admin.token=" + AdminToken,
		"--set", "wan.proxy=direct",
		"--set", "lan.bind=127.0.0.1",
		"--set", "lan.front_door=" + strconv.Itoa(c.FrontDoor),
		"--set", "lan.services.catalog=" + strconv.Itoa(c.Catalog),
		"--set", "lan.services.media=0",
		"--set", "lan.services.orders=0",
		"--set", "lan.services.devices=0",
		"--set", "lan.services.events=0",
		"--set", "lan.services.admin=0",
	}
	for _, s := range c.Extra {
		args = append(args, "--set", s)
	}
	return args
}

// Start runs the storeedge binary bin with this configuration.
func (c DaemonConfig) Start(bin string, hook func(line string, at time.Time)) (*Proc, error) {
	return Start("storeedge", bin, c.Args(), nil, hook)
}

// LocalURL is the base URL of a port on 127.0.0.1.
func LocalURL(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }

// Status is the part of GET /api/v1/status the bench reads.
type Status struct {
	WAN struct {
		State     string `json:"state"`
		LastError string `json:"last_error"`
	} `json:"wan"`
	Collections []struct {
		Name        string  `json:"name"`
		LastSuccess *string `json:"last_success"`
		Remaining   int64   `json:"remaining"`
		Rows        int64   `json:"rows"`
		Quarantined int64   `json:"quarantined"`
		LastError   string  `json:"last_error"`
	} `json:"collections"`
	Media struct {
		State         string `json:"state"`
		LastError     string `json:"last_error"`
		Files         int64  `json:"files"`
		Bytes         int64  `json:"bytes"`
		Pending       int    `json:"pending"`
		ReceivedBytes int64  `json:"received_bytes"`
	} `json:"media"`
}

// CaughtUp tells that the last pass reached the cloud and every collection is current, as the
// end-to-end tests judge it.
func (s *Status) CaughtUp() bool {
	if s.WAN.State != "ok" || len(s.Collections) == 0 {
		return false
	}
	for _, c := range s.Collections {
		if c.LastSuccess == nil || c.Remaining != 0 {
			return false
		}
	}
	return true
}

// Brief is a one-line summary: the WAN state and each collection's rows.
func (s *Status) Brief() string {
	parts := []string{"wan=" + s.WAN.State}
	for _, c := range s.Collections {
		parts = append(parts, fmt.Sprintf("%s=%d(rem %d)", c.Name, c.Rows, c.Remaining))
	}
	if s.WAN.LastError != "" {
		parts = append(parts, "last_error="+strconv.Quote(s.WAN.LastError))
	}
	return strings.Join(parts, " ")
}

// GetStatus reads GET /api/v1/status of the daemon at base.
func GetStatus(ctx context.Context, c *http.Client, base string) (*Status, error) {
	var s Status
	if err := GetJSON(ctx, c, base+"/api/v1/status", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// GetJSON GETs url and decodes its 200 answer's JSON into v; any other answer is an error that
// quotes the start of its body.
func GetJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("GET %s: %s: %.200s", req.URL.Path, resp.Status, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	return nil
}

// WaitFirst200 polls GET url every interval, each on a new connection, until it answers 200,
// and returns when that answer arrived. It fails when p exits or limit passes.
func WaitFirst200(ctx context.Context, p *Proc, url string, interval, limit time.Duration) (time.Time, error) {
	c := NewClient(2*time.Second, false)
	deadline := time.Now().Add(limit)
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return time.Time{}, err
		}
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
			last = fmt.Errorf("answered %s", resp.Status)
		} else {
			last = err
		}
		if p.Exited() {
			return time.Time{}, p.ExitErr()
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s: no 200 from %s within %v (last: %v); its last output:\n%s", p.name, url, limit, last, p.Tail())
		}
		if err := backoff.Sleep(ctx, interval); err != nil {
			return time.Time{}, err
		}
	}
}

// LogField reads key=value (or key="value") from a slog text line.
func LogField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if s, err := strconv.QuotedPrefix(v); err == nil {
			u, _ := strconv.Unquote(s)
			return u
		}
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}
