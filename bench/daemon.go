//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// benchKey is the store key of the bench's cloudsim. It is not a secret.
const benchKey = "bench-store-key"

// daemonConfig is how the bench runs storeedge: every listener on 127.0.0.1.
type daemonConfig struct {
	dataDir   string
	cloudURL  string
	frontDoor int
	catalog   int // 0: no own catalog port
	extra     []string
}

func (c daemonConfig) args() []string {
	args := []string{"run",
		"--set", "data_dir=" + c.dataDir,
		"--set", "cloud.url=" + c.cloudURL,
		"--set", "cloud.store_key=" + benchKey,
		"--set", "admin.token=" + benchAdminToken,
		"--set", "wan.proxy=direct",
		"--set", "lan.bind=127.0.0.1",
		"--set", "lan.front_door=" + strconv.Itoa(c.frontDoor),
		"--set", "lan.services.catalog=" + strconv.Itoa(c.catalog),
		"--set", "lan.services.media=0",
		"--set", "lan.services.orders=0",
		"--set", "lan.services.devices=0",
		"--set", "lan.services.events=0",
		"--set", "lan.services.admin=0",
	}
	for _, s := range c.extra {
		args = append(args, "--set", s)
	}
	return args
}

// status is the part of GET /api/v1/status the bench reads.
type status struct {
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
}

// caughtUp tells that the last pass reached the cloud and every collection is current, as the
// end-to-end tests judge it.
func (s *status) caughtUp() bool {
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

func (s *status) totalRows() int64 {
	var n int64
	for _, c := range s.Collections {
		n += c.Rows
	}
	return n
}

func (s *status) brief() string {
	parts := []string{"wan=" + s.WAN.State}
	for _, c := range s.Collections {
		parts = append(parts, fmt.Sprintf("%s=%d(rem %d)", c.Name, c.Rows, c.Remaining))
	}
	if s.WAN.LastError != "" {
		parts = append(parts, "last_error="+strconv.Quote(s.WAN.LastError))
	}
	return strings.Join(parts, " ")
}

func getStatus(ctx context.Context, c *http.Client, base string) (*status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/status: %s: %.200s", resp.Status, body)
	}
	var s status
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("GET /api/v1/status: %w", err)
	}
	return &s, nil
}

// waitFirst200 polls GET url every interval, each on a new connection, until it answers 200,
// and returns when that answer arrived. It fails when p exits or limit passes.
func waitFirst200(ctx context.Context, p *proc, url string, interval, limit time.Duration) (time.Time, error) {
	c := newClient(2*time.Second, false)
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
		if p.exited() {
			return time.Time{}, p.exitErr()
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s: no 200 from %s within %v (last: %v); its last output:\n%s", p.name, url, limit, last, p.Tail())
		}
		if err := sleepCtx(ctx, interval); err != nil {
			return time.Time{}, err
		}
	}
}
