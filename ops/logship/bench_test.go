package logship

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/ops/logship/logshiptest"
)

// BenchmarkLogCall measures one log call of the daemon's kind, in the same run: with shipping
// off (the local handler alone), with shipping on while a real intake takes the records, and
// with shipping on while the intake is down (records pile up on disk). The writer and the
// sender run meanwhile; dropped/op is the share the queue had no room for at that pace.
func BenchmarkLogCall(b *testing.B) {
	local := slog.NewJSONHandler(io.Discard, nil)
	b.Run("shipping=off", func(b *testing.B) { logCalls(b, slog.New(local), nil) })
	for _, down := range []bool{false, true} {
		name := "shipping=on"
		if down {
			name += ",intake=down"
		}
		b.Run(name, func(b *testing.B) {
			in := logshiptest.Start(b, testKey)
			if down {
				in.Down()
			}
			d, err := wan.New(wan.Options{ProxyURL: "direct", ExtraCAFile: in.CAFile})
			if err != nil {
				b.Fatal(err)
			}
			hc := d.HTTPClient(0)
			defer hc.CloseIdleConnections()
			s, err := Open(Options{Dir: b.TempDir(), URL: in.URL, APIKey: testKey, Level: slog.LevelInfo,
				BufferBytes: 64 << 20, BatchSize: 500, BatchInterval: 100 * time.Millisecond, Client: hc,
				Secrets: testSecrets, Meta: Meta{ServerID: "bench", Version: "v"}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			logCalls(b, slog.New(s.Handler(local)), s)
			cancel()
			<-done
			s.Close()
		})
	}
}

func logCalls(b *testing.B, log *slog.Logger, s *Shipper) {
	b.ReportAllocs()
	for b.Loop() {
		log.Warn("outbox: upload failed, entries stay queued",
			slog.String("error", `cloud: POST "https://api.server.commerce-hub.io/v1/events": 503 Service Unavailable`),
			slog.Duration("retry_in", 4200*time.Millisecond), slog.Int("pending", 42))
	}
	if s != nil {
		b.ReportMetric(float64(s.queueDropped.Load())/float64(b.N), "dropped/op")
	}
}

// BenchmarkRedactAndEncode is the writer's work per record (redaction and JSON), which bounds
// how many records a second reach the disk buffer.
func BenchmarkRedactAndEncode(b *testing.B) {
	r := NewRedactor(testSecrets)
	e := entry{time: time.Now(), level: slog.LevelWarn, msg: "outbox: upload failed, entries stay queued",
		attrs: []field{{"error", `cloud: POST "https://api.server.commerce-hub.io/v1/events": 503 Service Unavailable`}, {"retry_in", "4.2s"}, {"pending", int64(42)}}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = encodeLine(buf[:0], e, Meta{ServerID: "bench", Version: "v"}, r)
	}
}
