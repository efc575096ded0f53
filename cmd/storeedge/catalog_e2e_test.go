package main

// End-to-end tests of the catalog a shop keeps when the cloud forgets its cursor, and of what a
// device that keeps its own copy through the delta feed sees.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// catalogDevice keeps its own copy of the catalog from GET /api/v1/catalog/changes, following
// the rules of docs/catalog.md: it sends back next_since and epoch, and on a changes-reset answer
// drops its copy and starts again from 0.
type catalogDevice struct {
	since  int64
	epoch  string
	items  map[string]json.RawMessage // "collection/id" → document
	resets int
}

func newCatalogDevice() *catalogDevice { return &catalogDevice{items: map[string]json.RawMessage{}} }

// changePage is an answer of the delta feed.
type changePage struct {
	Items []struct {
		Collection string          `json:"collection"`
		ID         string          `json:"id"`
		Op         string          `json:"op"`
		Doc        json.RawMessage `json:"doc"`
	} `json:"items"`
	NextSince int64  `json:"next_since"`
	More      bool   `json:"more"`
	Epoch     string `json:"epoch"`
}

// follow reads the delta feed until it says nothing more is ready.
func (d *catalogDevice) follow(t *testing.T, s *shop) {
	t.Helper()
	for range 100000 {
		path := fmt.Sprintf("/api/v1/catalog/changes?since=%d&limit=1000", d.since)
		if d.epoch != "" {
			path += "&epoch=" + d.epoch
		}
		resp, err := http.DefaultClient.Do(s.request(t, http.MethodGet, path, nil))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if resp.StatusCode == http.StatusGone {
			var p struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(body, &p) != nil || p.Type != "https://storeedge.dev/problems/changes-reset" {
				t.Fatalf("GET %s: 410 that is not a changes-reset: %s", path, body)
			}
			d.since, d.epoch, d.items = 0, "", map[string]json.RawMessage{}
			d.resets++
			continue
		}
		var page changePage
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &page) != nil {
			t.Fatalf("GET %s: %s %s", path, resp.Status, body)
		}
		for _, c := range page.Items {
			key := c.Collection + "/" + c.ID
			if c.Op == cloudapi.OpDelete {
				delete(d.items, key)
			} else {
				d.items[key] = c.Doc
			}
		}
		d.since, d.epoch = page.NextSince, page.Epoch
		if !page.More {
			return
		}
	}
	t.Fatal("the delta feed does not end")
}

// differences lists how the device's copy of each collection differs from the cloud's.
func (d *catalogDevice) differences(t *testing.T, c *cloudProc, collections ...string) []string {
	t.Helper()
	var out []string
	for _, coll := range collections {
		want := c.export(t, coll)
		n := 0
		for key, doc := range d.items {
			id, ok := strings.CutPrefix(key, coll+"/")
			if !ok {
				continue
			}
			n++
			if w, ok := want[id]; !ok {
				out = append(out, fmt.Sprintf("%s %s is gone from the cloud, the device still has it", coll, id))
			} else if !bytes.Equal(doc, w.Doc) {
				out = append(out, fmt.Sprintf("%s %s differs from the cloud's", coll, id))
			}
		}
		if n != len(want) {
			out = append(out, fmt.Sprintf("%d %s, the cloud has %d", n, coll, len(want)))
		}
	}
	return out
}

// assertHolds checks that the device's copy of each collection is exactly the cloud's.
func (d *catalogDevice) assertHolds(t *testing.T, c *cloudProc, collections ...string) {
	t.Helper()
	if diff := d.differences(t, c, collections...); len(diff) > 0 {
		t.Fatalf("device: %d differences with the cloud, first %q", len(diff), diff[:min(len(diff), 10)])
	}
}

// barcodeOf returns the first barcode of a product as the cloud has it.
func barcodeOf(t *testing.T, items map[string]exportedItem, id string) string {
	t.Helper()
	var p cloudapi.Product
	if err := json.Unmarshal(items[id].Doc, &p); err != nil || len(p.Barcodes) == 0 {
		t.Fatalf("product %s: no barcode (%v)", id, err)
	}
	return p.Barcodes[0]
}

// TestCloudRestartedWithFewerProducts is a shop whose cloud comes back with a smaller catalog
// and without the shop's cursor: the shop and the devices that follow it end up with exactly the
// new catalog, and a product that is gone answers 404.
func TestCloudRestartedWithFewerProducts(t *testing.T) {
	cloud := startCloud(t, "-products", "3000", "-seed", "5")
	dir := t.TempDir()
	s := startShop(t, shopOptions{dataDir: dir, cloud: cloud.url})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	dev := newCatalogDevice()
	dev.follow(t, s)
	gone := barcodeOf(t, cloud.export(t, cloudapi.Products), "P0002001")
	s.stop(t)
	cloud.stop()

	cloud = startCloud(t, "-products", "2000", "-seed", "5")
	s = startShop(t, shopOptions{dataDir: dir, cloud: cloud.url})
	waitFor(t, s, "sync with the restarted cloud", time.Minute, func() bool { return s.caughtUp(t) })
	assertSameCatalog(t, s, cloud)
	for _, path := range []string{"/api/v1/catalog/products/P0002001", "/api/v1/catalog/prices/P0002001",
		"/api/v1/catalog/stock/P0002001", "/api/v1/catalog/barcodes/" + gone} {
		if resp := s.get(t, path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
	dev.follow(t, s)
	dev.assertHolds(t, cloud, cloudapi.Products, cloudapi.Prices, cloudapi.Stock)
	if !strings.Contains(s.log.String(), "items the cloud no longer has deleted") {
		t.Errorf("the log does not say that the re-snapshot deleted items:\n%s", s.log)
	}
	s.stop(t)
}

// TestKilledDuringResnapshot kills the daemon with SIGKILL at random moments of a re-snapshot
// (the cloud restarted with fewer products and changes of its own): at every kill the shop still
// holds every product, price and stock level that is in both catalogs, and in the end it, and a
// device following its delta feed throughout (never told to start again), hold exactly the new
// catalog.
func TestKilledDuringResnapshot(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	cloud := startCloud(t, "-products", "60000", "-seed", "11")
	dir := t.TempDir()
	opts := shopOptions{dataDir: dir, cloud: cloud.url, sets: []string{"cloud.page_size=200"}}
	s := startShop(t, opts)
	waitFor(t, s, "first sync", 5*time.Minute, func() bool { return s.caughtUp(t) })
	dev := newCatalogDevice()
	dev.follow(t, s)
	collections := []string{cloudapi.Products, cloudapi.Prices, cloudapi.Stock}
	before := map[string]map[string]exportedItem{}
	for _, c := range collections {
		before[c] = cloud.export(t, c)
	}
	s.stop(t)
	cloud.stop()

	// A different seed: every document changes. Each page of the streamed feed takes 20 ms more,
	// so the re-snapshot (some 650 pages over the collections) outlasts six lives on a fast
	// machine too.
	cloud = startCloud(t, "-products", "40000", "-seed", "12", "-page-delay", "20ms")
	cloud.post(t, "/_sim/mutate", map[string]int{"deletes": 500, "renames": 500, "price_changes": 500, "adds": 100}, nil)
	kept := map[string]map[string]exportedItem{} // in both catalogs
	for _, c := range collections {
		kept[c] = cloud.export(t, c)
		for id := range kept[c] {
			if _, ok := before[c][id]; !ok {
				delete(kept[c], id)
			}
		}
	}
	opts.cloud = cloud.url
	cursors := map[string]string{}
	for kills := 0; kills < 6; kills++ {
		s = startShop(t, opts)
		// Wait until this life has committed a page of some collection, then let it run a random
		// moment more.
		waitFor(t, s, "re-snapshot progress", 2*time.Minute, func() bool {
			moved := false
			for _, c := range s.status(t).Collections {
				if cursors[c.Name] != c.Cursor {
					cursors[c.Name], moved = c.Cursor, true
				}
			}
			return moved
		})
		dev.follow(t, s)
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
		done := s.caughtUp(t)
		s.kill()
		if done {
			// A loaded machine makes each life long: three kills in the middle still tell.
			if kills < 3 {
				t.Fatalf("re-snapshot finished after %d kills; the catalog is too small to kill it 3 times", kills)
			}
			t.Logf("re-snapshot finished after %d kills", kills)
			break
		}
		assertStillHeld(t, filepath.Join(dir, "storeedge.db"), kept)
	}
	s = startShop(t, opts)
	waitFor(t, s, "re-snapshot after the kills", 5*time.Minute, func() bool { return s.caughtUp(t) })
	assertSameCatalog(t, s, cloud)
	dev.follow(t, s)
	dev.assertHolds(t, cloud, collections...)
	if dev.resets != 0 {
		t.Errorf("the kills made the device start again %d times; they must not break the delta feed", dev.resets)
	}
	s.kill()
	s = startShop(t, opts)
	waitFor(t, s, "a pass after the re-snapshot", time.Minute, func() bool { return s.caughtUp(t) })
	assertSameCatalog(t, s, cloud)
	s.stop(t)
}

// assertStillHeld checks in the database of a killed shop that every item of kept (by collection)
// is live.
func assertStillHeld(t *testing.T, path string, kept map[string]map[string]exportedItem) {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	missing := 0
	for c, ids := range kept {
		for id := range ids {
			if _, err := db.Get(ctx, c, id); err != nil {
				if missing++; missing <= 5 {
					t.Errorf("after a kill in the re-snapshot, %s %s (still in the cloud) is not served: %v", c, id, err)
				}
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d items of the cloud lost", missing)
	}
}

// TestDeviceNoticesAReplacedDatabase follows the shop's delta feed with a device that keeps the
// documented rules, while shop IT restores a backup of the database and then moves the shop to a
// new data_dir: each time the device is told to start again, and ends up holding exactly the
// cloud's catalog.
func TestDeviceNoticesAReplacedDatabase(t *testing.T) {
	cloud := startCloud(t, "-products", "3000", "-seed", "21")
	dir := t.TempDir()
	opts := shopOptions{dataDir: dir, cloud: cloud.url}
	s := startShop(t, opts)
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })
	dev := newCatalogDevice()
	dev.follow(t, s)
	backup := filepath.Join(t.TempDir(), "shop.backup")
	if out, code := cli(t, append([]string{"backup", backup}, shopSets(dir)...)...); code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, out)
	}

	// Life goes on after the backup, and the device follows.
	cloud.post(t, "/_sim/mutate", map[string]int{"price_changes": 200, "deletes": 50, "adds": 20}, nil)
	waitFor(t, s, "the changes after the backup on the device", time.Minute, func() bool {
		dev.follow(t, s)
		return len(dev.differences(t, cloud, cloudapi.Products, cloudapi.Prices, cloudapi.Stock)) == 0
	})
	s.stop(t)

	// The backup is restored; the cloud changed meanwhile.
	cloud.post(t, "/_sim/mutate", map[string]int{"renames": 100, "deletes": 30, "stock_changes": 100}, nil)
	if out, code := cli(t, append([]string{"restore", backup}, shopSets(dir)...)...); code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, out)
	}
	s = startShop(t, opts)
	waitFor(t, s, "sync of the restored database", time.Minute, func() bool { return s.caughtUp(t) })
	dev.follow(t, s)
	if dev.resets != 1 {
		t.Fatalf("after the restore the device was told to start again %d times, want once", dev.resets)
	}
	dev.assertHolds(t, cloud, cloudapi.Products, cloudapi.Prices, cloudapi.Stock)
	if !strings.Contains(s.log.String(), "new delta feed epoch") {
		t.Errorf("the log does not say the epoch changed:\n%s", s.log)
	}
	s.stop(t)

	// The shop moves to a new, empty data_dir; the cloud changes again.
	cloud.post(t, "/_sim/mutate", map[string]int{"price_changes": 100, "deletes": 20}, nil)
	s = startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url})
	waitFor(t, s, "first sync in the new data_dir", time.Minute, func() bool { return s.caughtUp(t) })
	dev.follow(t, s)
	if dev.resets != 2 {
		t.Fatalf("after the move to a new data_dir the device was told to start again %d times in all, want 2", dev.resets)
	}
	dev.assertHolds(t, cloud, cloudapi.Products, cloudapi.Prices, cloudapi.Stock)
	s.stop(t)
}
