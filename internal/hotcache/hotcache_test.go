package hotcache

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

func newCache(t *testing.T, budget int64) *Cache {
	t.Helper()
	c, err := New(t.TempDir(), budget)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func get(c *Cache, key string) (string, bool) {
	v, ok := c.Get(nil, []byte(key))
	return string(v), ok
}

func TestPutGetDelete(t *testing.T) {
	c := newCache(t, 1<<20)
	if _, ok := get(c, "a"); ok {
		t.Fatal("empty cache has a")
	}
	if !c.PutIf(c.Gen(), []byte("a"), []byte("apple")) || !c.PutIf(c.Gen(), []byte("b"), nil) {
		t.Fatal("put refused")
	}
	if v, ok := get(c, "a"); !ok || v != "apple" {
		t.Fatalf("a = %q, %v", v, ok)
	}
	if v, ok := get(c, "b"); !ok || v != "" {
		t.Fatalf("b = %q, %v; want an empty value", v, ok)
	}
	c.PutIf(c.Gen(), []byte("a"), []byte("apricot"))
	if v, _ := get(c, "a"); v != "apricot" {
		t.Fatalf("a after replace = %q", v)
	}
	if n := c.Stats().Entries; n != 2 {
		t.Fatalf("entries = %d after replacing a; want 2", n)
	}
	c.Delete([]byte("a"), []byte("absent"))
	if _, ok := get(c, "a"); ok {
		t.Fatal("a still cached after Delete")
	}
	if v, ok := get(c, "b"); !ok || v != "" {
		t.Fatal("Delete of a dropped b")
	}
}

// An invalidation between reading Gen and PutIf means the value may predate a write: refused.
func TestPutIfRefusedAfterInvalidation(t *testing.T) {
	c := newCache(t, 1<<20)
	gen := c.Gen()
	c.Delete([]byte("unrelated"))
	if c.PutIf(gen, []byte("k"), []byte("stale")) {
		t.Fatal("PutIf accepted a value read before an invalidation")
	}
	if _, ok := get(c, "k"); ok {
		t.Fatal("refused value is cached")
	}
	if c.PutAllIf(gen, []KV{{[]byte("x"), []byte("1")}}) {
		t.Fatal("PutAllIf accepted a stale generation")
	}
	if !c.PutIf(c.Gen(), []byte("k"), []byte("fresh")) {
		t.Fatal("PutIf with the current generation refused")
	}
}

// Many keys grow the table; every key stays readable across the rehashes, and churn that leaves
// tombstones does not lose live keys.
func TestGrowthAndChurn(t *testing.T) {
	c := newCache(t, 64<<20)
	const n = 50000
	for i := range n {
		k := "key-" + strconv.Itoa(i)
		if !c.PutIf(c.Gen(), []byte(k), []byte("v"+strconv.Itoa(i))) {
			t.Fatalf("put %s refused", k)
		}
	}
	for i := 0; i < n; i += 2 {
		c.Delete([]byte("key-" + strconv.Itoa(i)))
	}
	for i := range n {
		v, ok := get(c, "key-"+strconv.Itoa(i))
		if want := i%2 == 1; ok != want || (ok && v != "v"+strconv.Itoa(i)) {
			t.Fatalf("key-%d = %q, %v; want present %v", i, v, ok, want)
		}
	}
	if s := c.Stats(); s.Entries != n/2 || s.TableBytes < int64(n/2*8) {
		t.Fatalf("stats %+v; want %d entries", s, n/2)
	}
}

// A full arena empties the whole cache and keeps going; what is cached after is right.
func TestFullArenaResets(t *testing.T) {
	c := newCache(t, 1<<16) // the smallest budget
	val := make([]byte, 1000)
	for i := range 200 {
		val[0] = byte(i)
		if !c.PutIf(c.Gen(), []byte(strconv.Itoa(i)), val) {
			t.Fatalf("put %d refused", i)
		}
	}
	s := c.Stats()
	if s.Resets == 0 {
		t.Fatalf("200 KB into a 64 KiB cache: no reset (%+v)", s)
	}
	if s.ArenaBytes > s.Budget {
		t.Fatalf("arena %d over budget %d", s.ArenaBytes, s.Budget)
	}
	if v, ok := c.Get(nil, []byte("199")); !ok || v[0] != 199 {
		t.Fatal("the last value put is not cached")
	}
	if c.PutIf(c.Gen(), []byte("huge"), make([]byte, 1<<17)) {
		t.Fatal("a record larger than the budget was accepted")
	}
}

// Readers and writers at once (run with -race): a reader sees either no value or a whole one.
func TestConcurrent(t *testing.T) {
	c := newCache(t, 1<<20)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 20000 {
				k := strconv.Itoa(r.IntN(500))
				switch r.IntN(4) {
				case 0:
					c.Delete([]byte(k))
				case 1:
					c.PutIf(c.Gen(), []byte(k), []byte(k+"="+k))
				default:
					if v, ok := get(c, k); ok && v != k+"="+k {
						panic(fmt.Sprintf("%s = %q", k, v))
					}
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkGet(b *testing.B) {
	c, _ := New(b.TempDir(), 256<<20)
	defer c.Close()
	val := make([]byte, 400)
	keys := make([][]byte, 100000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "P%07d", i)
		c.PutIf(c.Gen(), keys[i], val)
	}
	b.RunParallel(func(pb *testing.PB) {
		var dst []byte
		i := 0
		for pb.Next() {
			dst, _ = c.Get(dst[:0], keys[i%len(keys)])
			i += 7919
		}
	})
}

func TestGetLinked(t *testing.T) {
	c := newCache(t, 1<<20)
	link := func(kb, v []byte) []byte { return append(kb, v...) } // the value is the next key
	if _, _, ok := c.GetLinked(nil, []byte("code"), link); ok {
		t.Fatal("found in an empty cache")
	}
	c.PutIf(c.Gen(), []byte("code"), []byte("item"))
	if _, _, ok := c.GetLinked(nil, []byte("code"), link); ok {
		t.Fatal("found although the linked key is not cached")
	}
	c.PutIf(c.Gen(), []byte("item"), []byte("doc"))
	out, second, ok := c.GetLinked([]byte("x"), []byte("code"), link)
	if !ok || string(out[:second]) != "xitem" || string(out[second:]) != "doc" {
		t.Fatalf("GetLinked = %q, %d, %v; want \"xitem\" then \"doc\"", out, second, ok)
	}
	if _, _, ok := c.GetLinked(nil, []byte("code"), func([]byte, []byte) []byte { return nil }); ok {
		t.Fatal("found although link named no key")
	}
}

// The largest budget the configuration allows (32768 MiB) is a little over what 32-bit slot
// offsets address: it is reserved at the most the cache can use, not refused.
func TestLargestBudget(t *testing.T) {
	c := newCache(t, 32768<<20)
	if b := c.Stats().Budget; b != MaxArena {
		t.Fatalf("budget %d, want MaxArena %d", b, MaxArena)
	}
	if !c.PutIf(c.Gen(), []byte("k"), []byte("v")) {
		t.Fatal("put refused")
	}
}

// Records of every size come back whole: small ones read in one go, ones larger than a read's
// first go, ones larger than the write buffer, whether still buffered or already in the file.
func TestRecordSizes(t *testing.T) {
	c := newCache(t, 64<<20)
	sizes := []int{0, 1, readAhead - headerBytes - 2, readAhead, 3 * readAhead, tailBytes + 5, 17}
	vals := make([][]byte, len(sizes))
	check := func(when string) {
		t.Helper()
		for i, v := range vals {
			got, ok := c.Get(nil, []byte("k"+strconv.Itoa(i)))
			if !ok || !bytes.Equal(got, v) {
				t.Fatalf("%s: k%d (%d bytes): got %d bytes, %v", when, i, len(v), len(got), ok)
			}
		}
	}
	for i, n := range sizes {
		vals[i] = bytes.Repeat([]byte{byte('a' + i)}, n)
		if !c.PutIf(c.Gen(), []byte("k"+strconv.Itoa(i)), vals[i]) {
			t.Fatalf("put of %d bytes refused", n)
		}
	}
	check("before the buffer is written")
	filler := make([]byte, 4000)
	for i := range 600 { // 2.4 MB: every record above is in the file now
		c.PutIf(c.Gen(), []byte("f"+strconv.Itoa(i)), filler)
	}
	check("from the file")
}

// The records live in a file that leaves no trace: on Linux it is gone from the folder at once,
// and the process's own memory does not grow with the records.
func TestArenaIsAFileThatLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	c, err := New(dir, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte{1}, 1000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 20000 {
		c.PutIf(c.Gen(), []byte("k"+strconv.Itoa(i)), value)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 4<<20 {
		t.Errorf("the Go heap grew by %d bytes for 20 MB of records", grew)
	}
	if runtime.GOOS != "windows" {
		if names, _ := os.ReadDir(dir); len(names) != 0 {
			t.Fatalf("files left in the folder while open: %v", names)
		}
	}
	if st := c.Stats(); st.ArenaBytes < 20e6 || st.TableBytes > 1<<20 {
		t.Fatalf("stats %+v: want 20 MB of records in the file and a table under 1 MiB", st)
	}
	c.Close()
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Fatalf("files left in the folder after Close: %v", names)
	}
}
