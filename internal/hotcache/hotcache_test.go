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

// getAlias reads key's alias, accepting a record whose value is want ("" accepts any).
func getAlias(c *Cache, key, want string) (target, value string, ok bool) {
	out, split, ok := c.GetAlias([]byte("x"), []byte(key), func(_, v []byte) bool { return want == "" || string(v) == want })
	if !ok {
		return "", "", false
	}
	if string(out[:1]) != "x" {
		panic("GetAlias did not append to dst")
	}
	return string(out[1:split]), string(out[split:]), true
}

func TestAlias(t *testing.T) {
	c := newCache(t, 1<<20)
	alias := func(key, target string) int {
		t.Helper()
		n, ok := c.AliasAllIf(c.Gen(), []Alias{{Key: []byte(key), Target: []byte(target)}})
		if !ok {
			t.Fatal("AliasAllIf refused without an invalidation")
		}
		return n
	}
	if n := alias("code", "item"); n != 0 {
		t.Fatalf("made %d aliases of a key not cached", n)
	}
	if _, _, ok := getAlias(c, "code", ""); ok {
		t.Fatal("an alias of a key not cached answers")
	}
	c.PutIf(c.Gen(), []byte("item"), []byte("doc 1"))
	if n := alias("code", "item"); n != 1 {
		t.Fatalf("made %d aliases, want 1", n)
	}
	if k, v, ok := getAlias(c, "code", ""); !ok || k != "item" || v != "doc 1" {
		t.Fatalf("alias = %q %q %v, want item's record", k, v, ok)
	}
	if _, _, ok := getAlias(c, "code", "doc 2"); ok {
		t.Fatal("answered a record that check refused")
	}
	if _, ok := get(c, "code"); ok {
		t.Fatal("Get finds an alias as a record of its own")
	}

	// The alias stands for the record it was made with: a new value of its target ends it.
	c.PutIf(c.Gen(), []byte("item"), []byte("doc 2"))
	if k, v, ok := getAlias(c, "code", ""); ok {
		t.Fatalf("alias answers %q %q after its target changed", k, v)
	}
	alias("code", "item")
	if _, v, ok := getAlias(c, "code", ""); !ok || v != "doc 2" {
		t.Fatalf("alias made again = %q %v, want doc 2", v, ok)
	}
	c.Delete([]byte("item"))
	if _, _, ok := getAlias(c, "code", ""); ok {
		t.Fatal("alias answers after its target was deleted")
	}

	// Deleting the alias's key ends it, and keeps its target.
	c.PutIf(c.Gen(), []byte("item"), []byte("doc 3"))
	alias("code", "item")
	c.Delete([]byte("code"))
	if _, _, ok := getAlias(c, "code", ""); ok {
		t.Fatal("alias answers after Delete of its key")
	}
	if v, ok := get(c, "item"); !ok || v != "doc 3" {
		t.Fatalf("item = %q %v after Delete of its alias", v, ok)
	}

	// An invalidation after gen was read refuses the aliases.
	gen := c.Gen()
	c.Delete([]byte("other"))
	if n, ok := c.AliasAllIf(gen, []Alias{{Key: []byte("code"), Target: []byte("item")}}); ok || n != 0 {
		t.Fatalf("AliasAllIf after an invalidation = %d, %v", n, ok)
	}
	if _, _, ok := getAlias(c, "code", ""); ok {
		t.Fatal("a refused alias answers")
	}
	c.Reset()
	if _, ok := get(c, "item"); ok {
		t.Fatal("Reset kept a record")
	}
}

// Aliases are found by a 30-bit tag of their key alone: two keys sharing a tag must never answer
// each other's record, which is what check is for; the second alias of a tag replaces the first.
func TestAliasesSharingATag(t *testing.T) {
	c := newCache(t, 1<<20)
	seen := map[uint32]string{}
	var a, b string
	for i := 0; a == ""; i++ {
		k := "code" + strconv.Itoa(i)
		if o, ok := seen[c.tag([]byte(k))]; ok {
			a, b = o, k
		}
		seen[c.tag([]byte(k))] = k
	}
	c.PutAllIf(c.Gen(), []KV{{[]byte("item a"), []byte("doc a")}, {[]byte("item b"), []byte("doc b")}})
	c.AliasAllIf(c.Gen(), []Alias{{[]byte(a), []byte("item a")}})
	if _, _, ok := getAlias(c, b, "doc b"); ok {
		t.Fatalf("%s answered with the record of %s, which shares its tag", b, a)
	}
	if _, v, ok := getAlias(c, a, "doc a"); !ok || v != "doc a" {
		t.Fatalf("%s = %q %v", a, v, ok)
	}
	c.AliasAllIf(c.Gen(), []Alias{{[]byte(b), []byte("item b")}})
	if _, v, ok := getAlias(c, b, "doc b"); !ok || v != "doc b" {
		t.Fatalf("%s = %q %v", b, v, ok)
	}
	if _, _, ok := getAlias(c, a, "doc a"); ok {
		t.Fatalf("%s still answers: two aliases share a tag", a)
	}
	if n := c.Stats().Entries; n != 3 {
		t.Fatalf("%d entries, want the two records and one alias", n)
	}
}

// Aliases survive the table's growth, and each answers its own target.
func TestAliasesThroughGrowth(t *testing.T) {
	c := newCache(t, 64<<20)
	const n = 20000
	var kvs []KV
	var as []Alias
	for i := range n {
		kvs = append(kvs, KV{[]byte("p" + strconv.Itoa(i)), []byte("doc " + strconv.Itoa(i))})
		as = append(as, Alias{[]byte("b" + strconv.Itoa(i)), []byte("p" + strconv.Itoa(i))})
	}
	if !c.PutAllIf(c.Gen(), kvs) {
		t.Fatal("put refused")
	}
	made, ok := c.AliasAllIf(c.Gen(), as)
	if !ok || made != n {
		t.Fatalf("made %d aliases (%v), want %d", made, ok, n)
	}
	answered := 0
	for i := range n {
		want := "doc " + strconv.Itoa(i)
		if k, v, ok := getAlias(c, "b"+strconv.Itoa(i), want); ok {
			if k != "p"+strconv.Itoa(i) || v != want {
				t.Fatalf("b%d = %q %q", i, k, v)
			}
			answered++
		}
	}
	// A pair of keys sharing a tag keeps one alias: at 20,000 keys and 30 bits, almost never.
	if answered < n-2 {
		t.Fatalf("%d of %d aliases answer", answered, n)
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
