package hotcache

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkFrontZipf reads a cache of twelve times as many records as its front has slots by a
// Zipf law of exponent 1.1 and reports the share of reads the front answered (front-%), the
// figure behind the doorkeeper's sizing in front.go:
//
//	go test -run '^$' -bench FrontZipf ./internal/hotcache
func BenchmarkFrontZipf(b *testing.B) {
	c, err := New(b.TempDir(), 128<<20) // fronts of 8,192 slots
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const n = 100000
	pad := make([]byte, 300)
	for i := range n + 4000 { // the last 4,000 push the first ones out of the tail buffer
		k := []byte("P" + strconv.Itoa(i%n))
		if !c.PutIf(c.Gen(), k, pad) {
			b.Fatalf("put %s refused", k)
		}
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, n-1)
	key := func() []byte { return []byte("P" + strconv.Itoa(int(z.Uint64()))) }
	for range 500_000 { // warm the front
		c.Get(nil, key())
	}
	hits := 0
	b.ResetTimer()
	for b.Loop() {
		k := key()
		if inFront(c, string(k)) {
			hits++
		}
		c.Get(nil, k)
	}
	b.ReportMetric(100*float64(hits)/float64(b.N), "front-%")
}
