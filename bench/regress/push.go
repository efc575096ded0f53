package regress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
	"github.com/storeedge/storeedge/devices/devicesim"
)

// pushBatch is how many rounds make one measurement of a side: a single plain TCP round lasts
// about a millisecond, too short to time alone on a busy machine.
const pushBatch = 5

// PushRates measures rounds per second of one command pushed to every device (POST
// /api/v1/admin/commands to all, until each device did it) and of the same bytes written to as
// many plain TCP peers, each answering a line: rounds measurements of pushBatch rounds each,
// the sides alternating.
func PushRates(ctx context.Context, base string, devs []*devicesim.Device, rounds int, w io.Writer) (daemon, baseline []float64, err error) {
	c := harness.NewClient(30*time.Second, true)
	body := []byte(`{"target":{"all":true},"type":"ping","payload":{"text":"regression bench round"}}`)
	peers, err := startPeers(ctx, len(devs))
	if err != nil {
		return nil, nil, err
	}
	defer peers.close()
	frame := append(bytes.Clone(body), '\n')
	done := 0
	for i := range rounds + 1 { // the first measurement of each side is a warm-up
		var d, b time.Duration
		err := harness.Alternate(i, func() error {
			start := time.Now()
			for range pushBatch {
				done++
				if err := pushRound(ctx, c, base, body, devs, done); err != nil {
					return err
				}
			}
			d = time.Since(start) / pushBatch
			return nil
		}, func() error {
			start := time.Now()
			for range pushBatch {
				if err := peers.round(frame); err != nil {
					return err
				}
			}
			b = time.Since(start) / pushBatch
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if i > 0 {
			daemon, baseline = append(daemon, 1/d.Seconds()), append(baseline, 1/b.Seconds())
			fmt.Fprintf(w, "push: %d devices in %s, plain TCP round in %s\n", len(devs), harness.FmtMs(d), harness.FmtMs(b))
		}
	}
	return daemon, baseline, nil
}

// pushRound sends the command to every device and waits until each has done its n-th one.
func pushRound(ctx context.Context, c *http.Client, base string, body []byte, devs []*devicesim.Device, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/admin/commands", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST /api/v1/admin/commands: %s: %.200s", resp.Status, b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, d := range devs {
		if err := d.WaitFor(ctx, func(d *devicesim.Device) bool { return len(d.Commands()) >= n }); err != nil {
			return fmt.Errorf("push round %d: device %s did %d commands: %w", n, d.ID(), len(d.Commands()), err)
		}
	}
	return nil
}

// peers are plain TCP connections to as many listeners, each answering every line with "ok".
type peers struct {
	lns   []net.Listener
	conns []net.Conn
	rds   []*bufio.Reader
}

func startPeers(ctx context.Context, n int) (*peers, error) {
	p := &peers{}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.close()
			return nil, err
		}
		p.lns = append(p.lns, ln)
		go echo(ln)
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			p.close()
			return nil, err
		}
		p.conns, p.rds = append(p.conns, nc), append(p.rds, bufio.NewReader(nc))
	}
	return p, nil
}

// echo answers each line of each connection with "ok", until the listener closes.
func echo(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			r := bufio.NewReader(nc)
			for {
				line, err := r.ReadBytes('\n')
				if err != nil {
					return
				}
				var v any
				if json.Unmarshal(line, &v) != nil {
					return
				}
				if _, err := nc.Write([]byte("ok\n")); err != nil {
					return
				}
			}
		}()
	}
}

// round writes frame to every peer at once and waits for every answer.
func (p *peers) round(frame []byte) error {
	errs := make([]error, len(p.conns))
	var wg sync.WaitGroup
	for i, nc := range p.conns {
		wg.Go(func() {
			if _, err := nc.Write(frame); err != nil {
				errs[i] = err
				return
			}
			if _, err := p.rds[i].ReadString('\n'); err != nil {
				errs[i] = fmt.Errorf("peer %s: %w", strconv.Itoa(i), err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *peers) close() {
	for _, nc := range p.conns {
		nc.Close()
	}
	for _, ln := range p.lns {
		ln.Close()
	}
}
