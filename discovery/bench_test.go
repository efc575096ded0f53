package discovery

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// BenchmarkRoundTrip measures probe → answer against the server, and in the same run a raw UDP
// echo on the same socket setup (an ipv4.PacketConn with the same control messages, one read
// loop, the same 1024-byte datagram): the echo is the floor, and the ratio is the figure to read
// on a noisy machine. The two alternate, one round trip each, so that noise hits both alike.
//
//	go test -run '^$' -bench RoundTrip -benchtime 20000x ./discovery/
func BenchmarkRoundTrip(b *testing.B) {
	s, err := NewServer(Options{Addr: "127.0.0.1:0", Interfaces: []string{"lo"}, Info: testInfo(), HTTPPort: 80,
		AnswerInterval: time.Nanosecond, AnswerBurst: 1 << 20, MaxPerSecond: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	go s.Run(ctx)
	echo := startEcho(b)

	probe, _ := EncodeProbe(ProbeRequest{Nonce: [NonceSize]byte{1, 2, 3, 4, 5, 6, 7, 8}})
	toServer := dialBench(b, s.Addr().AddrPort())
	toEcho := dialBench(b, echo)
	buf := make([]byte, MaxDatagramSize+1)
	roundTrip := func(c *net.UDPConn, check func([]byte) error) time.Duration {
		start := time.Now()
		if _, err := c.Write(probe); err != nil {
			b.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		if err := check(buf[:n]); err != nil {
			b.Fatal(err)
		}
		return d
	}
	isAnswer := func(p []byte) error {
		d, err := Decode(p)
		if err != nil || d.Type != TypeAnswer || d.Answer.Nonce != [NonceSize]byte{1, 2, 3, 4, 5, 6, 7, 8} {
			return errors.New("not the answer to the probe")
		}
		return nil
	}
	isEcho := func(p []byte) error {
		if len(p) != len(probe) {
			return errors.New("not the echo")
		}
		return nil
	}
	for range 200 { // warm up both paths
		roundTrip(toEcho, isEcho)
		roundTrip(toServer, isAnswer)
	}
	var echoes, answers []time.Duration
	b.ResetTimer()
	for range b.N {
		echoes = append(echoes, roundTrip(toEcho, isEcho))
		answers = append(answers, roundTrip(toServer, isAnswer))
	}
	b.StopTimer()
	slices.Sort(echoes)
	slices.Sort(answers)
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(answers, 0.50), "probe-p50-µs")
	b.ReportMetric(pct(answers, 0.99), "probe-p99-µs")
	b.ReportMetric(pct(echoes, 0.50), "echo-p50-µs")
	b.ReportMetric(pct(echoes, 0.99), "echo-p99-µs")
	b.ReportMetric(pct(answers, 0.50)/pct(echoes, 0.50), "p50-ratio")
	b.ReportMetric(pct(answers, 0.99)/pct(echoes, 0.99), "p99-ratio")
	if st := s.Status(); st.RateLimited != 0 {
		b.Errorf("%d probes rate-limited during the benchmark", st.RateLimited)
	}
}

// startEcho runs a UDP echo with the server's socket setup, until the benchmark ends.
func startEcho(b *testing.B) netip.AddrPort {
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	pc := ipv4.NewPacketConn(ln)
	_ = pc.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, MaxDatagramSize+1)
		for {
			n, _, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], nil, src)
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	return ln.LocalAddr().(*net.UDPAddr).AddrPort()
}

func dialBench(b *testing.B, to netip.AddrPort) *net.UDPConn {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
