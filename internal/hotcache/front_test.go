package hotcache

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
)

// inFront says whether the front holds key's record.
func inFront(c *Cache, key string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t := c.tag([]byte(key))
	mask := uint64(len(c.slots) - 1)
	for i := c.home(t); c.slots[i] != 0; i = (i + 1) & mask {
		s := c.slots[i]
		if s == tombstone || uint32(s>>32)&^smallBit != t {
			continue
		}
		off := int(uint32(s)-1) * recordAlign
		f := c.arena.front
		if s>>32&smallBit != 0 {
			f = c.arena.small
		}
		j := f.set(off)
		f.lock(j).Lock()
		in := f.slot(j, off) >= 0
		f.lock(j).Unlock()
		if in {
			return true
		}
	}
	return false
}

func fill(t *testing.T, c *Cache, n int, version string) {
	t.Helper()
	pad := make([]byte, 300)
	for i := range n {
		k := "P" + strconv.Itoa(i)
		if !c.PutIf(c.Gen(), []byte(k), append([]byte(k+"@"+version+"/"), pad...)) {
			t.Fatalf("put %s refused", k)
		}
	}
}

func check(c *Cache, key, version string) error {
	v, ok := c.Get(nil, []byte(key))
	if !ok {
		return nil // not cached is always a right answer
	}
	if want := key + "@" + version + "/"; len(v) < len(want) || string(v[:len(want)]) != want {
		return fmt.Errorf("%s = %.20q…, want %q…", key, v, want)
	}
	return nil
}

// The records read most are kept in the front, a record read once does not push them out, and
// what the front answers is always the record the cache holds now: after records are replaced,
// deleted, or the whole cache emptied and filled again at the same offsets.
func TestFrontKeepsTheHotRecordsAndNeverAnOldOne(t *testing.T) {
	c := newCache(t, 16<<20)
	if c.arena.front == nil {
		t.Fatal("no front for a 16 MiB cache")
	}
	const n = 30000 // about 10 MB: most of it read from the file
	fill(t, c, n, "v1")
	hot := []string{"P7", "P1234", "P20000", "P25999"} // not among the last, still in the tail buffer
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		for _, k := range hot {
			if err := check(c, k, "v1"); err != nil {
				t.Fatal(err)
			}
		}
		for range 200 { // the cold rest, read once each
			k := "P" + strconv.Itoa(r.IntN(n))
			if err := check(c, k, "v1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range hot {
		if !inFront(c, k) {
			t.Errorf("%s, read 20 times among 4,000 cold reads, is not in the front", k)
		}
	}
	// Emptied and filled again the same way: every record is where the old one was.
	c.Reset()
	fill(t, c, n, "v0")
	for _, k := range hot {
		if err := check(c, k, "v0"); err != nil {
			t.Fatalf("after a reset: %v", err)
		}
	}
	c.Reset()
	fill(t, c, n, "v1")

	// Readers all the time while records are replaced and deleted and the cache is emptied and
	// filled again (run with -race).
	var mu sync.RWMutex // version of every key: held for reading while checking
	version := "v1"
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := hot[r.IntN(len(hot))]
				if r.IntN(2) == 0 {
					k = "P" + strconv.Itoa(r.IntN(n))
				}
				mu.RLock()
				err := check(c, k, version)
				mu.RUnlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for round := 2; round <= 4; round++ {
		mu.Lock()
		version = "v" + strconv.Itoa(round)
		if round == 3 {
			c.Reset()
		} else {
			for i := range n { // replaced one by one: new offsets, the old records stay in the file
				c.Delete([]byte("P" + strconv.Itoa(i)))
			}
		}
		fill(t, c, n, version)
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	for i := range n {
		if err := check(c, "P"+strconv.Itoa(i), version); err != nil {
			t.Fatal(err)
		}
	}
}

// A small record (a barcode's, which names its product) has a front of its own: a workload that
// reads as many products as the document front holds, and a barcode of each, keeps nearly all of
// both in memory, where one front of document slots would keep at most seven in ten of them.
func TestSmallRecordsHaveAFrontOfTheirOwn(t *testing.T) {
	c := newCache(t, 16<<20) // fronts of 1,024 slots each
	const hot = 700
	doc := make([]byte, 300)
	for i := range hot {
		p, b := "P"+strconv.Itoa(i), "B"+strconv.Itoa(i)
		if !c.PutAllIf(c.Gen(), []KV{{[]byte(p), doc}, {[]byte(b), []byte(p)}}) {
			t.Fatalf("put %s refused", p)
		}
	}
	fill(t, c, 4000, "cold") // over a megabyte more: the hot records are in the file, not the tail
	for range 5 {
		for i := range hot {
			for _, k := range []string{"P" + strconv.Itoa(i), "B" + strconv.Itoa(i)} {
				if _, ok := c.Get(nil, []byte(k)); !ok {
					t.Fatalf("%s is not cached", k)
				}
			}
		}
	}
	for _, prefix := range []string{"P", "B"} {
		in := 0
		for i := range hot {
			if inFront(c, prefix+strconv.Itoa(i)) {
				in++
			}
		}
		if in < hot*9/10 {
			t.Errorf("%d of the %d hot %s records are in a front, want at least nine in ten", in, hot, prefix)
		}
	}
}

// A record read once from the file is not copied into the front, where it would take the place
// of one read more often; read again, it is.
func TestFrontTakesARecordAtItsSecondRead(t *testing.T) {
	c := newCache(t, 16<<20)
	fill(t, c, 6000, "v1") // about 2 MB: P0 is in the file
	for read := 1; read <= 2; read++ {
		if err := check(c, "P0", "v1"); err != nil {
			t.Fatal(err)
		}
		if in := inFront(c, "P0"); in != (read == 2) {
			t.Errorf("after read %d, in the front: %v", read, in)
		}
	}
}

// The front takes a sixteenth of the cache's budget, at most 64 MiB (configuration.md), and
// none when that is too small to be worth it.
func TestFrontSize(t *testing.T) {
	for _, tc := range []struct{ budget, want int64 }{
		{1 << 16, 0},
		{16 << 20, 1 << 20},
		{1 << 30, 64 << 20},
		{8 << 30, 64 << 20},
	} {
		c := newCache(t, tc.budget)
		var got, small int64
		if f := c.arena.front; f != nil {
			got, small = int64(len(f.data)), int64(len(c.arena.small.data))
		}
		wantSmall := tc.want / (frontSlotBytes / smallSlotBytes)
		if got != tc.want || small != wantSmall {
			t.Errorf("budget %d: fronts of %d and %d bytes, want %d and %d", tc.budget, got, small, tc.want, wantSmall)
		}
	}
}
