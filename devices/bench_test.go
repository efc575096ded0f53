//go:build unix

package devices

// Benchmarks of the push channel, each next to a baseline measured in the same run (see
// docs/PERFORMANCE.md):
//
//	go test -run '^$' -bench . -benchtime 20x ./devices
//
// BenchmarkFanout500 stores one command for each of 500 connected simulated devices and waits
// until all 500 acknowledgements are stored; the baseline writes a frame of the same size to
// 500 raw loopback connections and reads a 69-byte answer from each. BenchmarkOneDevice pushes
// 5,000 commands to one device over its persistent connection; the baseline pipelines the same
// frames over one raw connection.

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storeedge/storeedge/devices/devicesim"
	"github.com/storeedge/storeedge/devices/push"
	"github.com/storeedge/storeedge/storage"
)

const benchSecret = "bench-enrollment-secret-0123"

// acks counts acknowledgements as the writer stores them.
type acks struct {
	mu   sync.Mutex // protects the fields below
	n    int
	want int
	done chan struct{}
}

func (a *acks) expect(n int) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n, a.want, a.done = 0, n, make(chan struct{})
	return a.done
}

func (a *acks) committed(ups []storage.CommandUpdate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, u := range ups {
		if u.State == storage.CommandAcknowledged {
			a.n++
		}
	}
	if a.done != nil && a.n >= a.want {
		close(a.done)
		a.done = nil
	}
}

// benchShop runs a Manager with n paired simulated devices and waits until a first command
// reached all of them, so that every push connection is up.
func benchShop(b *testing.B, n int) (*Manager, *acks, []*devicesim.Device) {
	b.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(b.TempDir(), "shop.db"))
	if err != nil {
		b.Fatal(err)
	}
	a := &acks{}
	m, err := New(context.Background(), Options{DB: db, EnrollmentSecret: benchSecret, Committed: a.committed})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait(); db.Close() })
	sims := make([]*devicesim.Device, n)
	for i := range sims {
		d := devicesim.New(devicesim.Options{Heartbeat: -1})
		addr, err := d.Listen()
		if err != nil {
			b.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		creds, err := m.Pair(ctx, PairRequest{EnrollmentSecret: benchSecret, Kind: "tablet", PushPort: p}, "127.0.0.1")
		if err != nil {
			b.Fatal(err)
		}
		d.SetCredentials(creds.DeviceID, creds.Secret)
		wg.Go(func() { d.Run(ctx) })
		sims[i] = d
	}
	wg.Go(func() { m.Run(ctx) })
	done := a.expect(n)
	if _, err := m.Send(ctx, Target{All: true}, CmdPing, nil, 0); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatal("the devices did not all connect")
	}
	return m, a, sims
}

var benchPayload = json.RawMessage(`{"text":"Table 4: 2 x tea, 1 x croissant"}`)

func BenchmarkFanout500(b *testing.B) {
	const n = 500
	m, a, _ := benchShop(b, n)
	ctx := context.Background()
	var total time.Duration
	iters := 0
	cpu0 := cpuTime()
	for b.Loop() {
		start := time.Now()
		done := a.expect(n)
		if _, err := m.Send(ctx, Target{All: true}, CmdPrint, benchPayload, 0); err != nil {
			b.Fatal(err)
		}
		<-done
		total += time.Since(start)
		iters++
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(total.Microseconds())/float64(iters)/1000, "ms/fanout")
	b.ReportMetric(float64(cpu.Microseconds())/float64(iters)/1000, "cpu-ms/fanout")
	raw, rawCPU := rawFanout(b, n, iters)
	b.ReportMetric(raw, "raw-ms/fanout")
	b.ReportMetric(rawCPU, "raw-cpu-ms/fanout")
}

// cpuTime is the CPU time the process used so far (user and system): on a busy 2-core machine
// it tells the cost of a path better than the time it took.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// frameSizes are the sizes of the command frame storeedge sends for benchPayload and of an ack.
func frameSizes() (cmd, ack int) {
	f := push.Frame{Type: push.TypeCommand, Seq: 1, ID: "cmd_01a2338c-7a4e-7b55-a9d0-6f1d1c1e5f00", CommandType: CmdPrint, Payload: benchPayload}
	c, _ := f.Encode(make([]byte, 32), nil)
	a := push.Frame{Type: push.TypeAck, Seq: 1, ID: f.ID}
	k, _ := a.Encode(make([]byte, 32), nil)
	return len(c), len(k)
}

// rawFanout is the baseline of BenchmarkFanout500: the same bytes over n raw loopback
// connections, a goroutine per connection as the links have, no database and no MAC. It
// returns the average milliseconds per fan-out over iters rounds, of time and of CPU.
func rawFanout(b *testing.B, n, iters int) (float64, float64) {
	cmdSize, ackSize := frameSizes()
	conns := rawPeers(b, n, cmdSize, ackSize)
	msg := make([]byte, cmdSize)
	var total time.Duration
	cpu0 := cpuTime()
	for range iters {
		start := time.Now()
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() {
				c.Write(msg)
				io.ReadFull(c, make([]byte, ackSize))
			})
		}
		wg.Wait()
		total += time.Since(start)
	}
	cpu := cpuTime() - cpu0
	return float64(total.Microseconds()) / float64(iters) / 1000, float64(cpu.Microseconds()) / float64(iters) / 1000
}

// rawPeers opens n loopback connections whose far ends answer each cmdSize bytes read with
// ackSize bytes.
func rawPeers(b *testing.B, n, cmdSize, ackSize int) []net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				in, out := make([]byte, cmdSize), make([]byte, ackSize)
				for {
					if _, err := io.ReadFull(c, in); err != nil {
						return
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns
}

func BenchmarkOneDevice(b *testing.B) {
	const batch = 5000
	m, a, sims := benchShop(b, 1)
	ctx := context.Background()
	id := sims[0].ID()
	var total time.Duration
	iters := 0
	for b.Loop() {
		now := m.now()
		cmds := make([]storage.Command, batch)
		for i := range cmds {
			cmds[i] = m.newCommand(id, CmdPrint, benchPayload, "", now, time.Hour)
		}
		start := time.Now()
		done := a.expect(batch)
		if err := m.enqueue(ctx, cmds, nil); err != nil {
			b.Fatal(err)
		}
		<-done
		total += time.Since(start)
		iters++
	}
	b.ReportMetric(float64(batch*iters)/total.Seconds(), "commands/s")
	b.ReportMetric(rawOneConn(b, batch, iters), "raw-frames/s")
}

// rawOneConn is the baseline of BenchmarkOneDevice: batch frames of the same size written at once
// on one raw loopback connection, with an answer for each; it returns frames per second.
func rawOneConn(b *testing.B, batch, iters int) float64 {
	cmdSize, ackSize := frameSizes()
	c := rawPeers(b, 1, cmdSize, ackSize)[0]
	// The whole batch in one write: the best a sender can do.
	msgs := make([]byte, cmdSize*batch)
	var total time.Duration
	for range iters {
		start := time.Now()
		go c.Write(msgs)
		io.ReadFull(c, make([]byte, ackSize*batch))
		total += time.Since(start)
	}
	return float64(batch*iters) / total.Seconds()
}
