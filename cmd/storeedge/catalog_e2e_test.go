package main

// End-to-end tests of the catalog a shop keeps when the cloud forgets its cursor, and of what a
// device that keeps its own copy through the delta feed sees.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// catalogDevice keeps its own copy of the catalog from GET /api/v1/catalog/changes, as
// docs/openapi.yaml tells a device to.
type catalogDevice struct {
	since int64
	items map[string]json.RawMessage // "collection/id" → document
}

func newCatalogDevice() *catalogDevice { return &catalogDevice{items: map[string]json.RawMessage{}} }

// follow reads the delta feed until it says nothing more is ready.
func (d *catalogDevice) follow(t *testing.T, s *shop) {
	t.Helper()
	for {
		var page struct {
			Items []struct {
				Collection string          `json:"collection"`
				ID         string          `json:"id"`
				Op         string          `json:"op"`
				Doc        json.RawMessage `json:"doc"`
			} `json:"items"`
			NextSince int64 `json:"next_since"`
			More      bool  `json:"more"`
		}
		s.get(t, fmt.Sprintf("/api/v1/catalog/changes?since=%d&limit=1000", d.since), &page)
		for _, c := range page.Items {
			key := c.Collection + "/" + c.ID
			if c.Op == cloudapi.OpDelete {
				delete(d.items, key)
			} else {
				d.items[key] = c.Doc
			}
		}
		d.since = page.NextSince
		if !page.More {
			return
		}
	}
}

// assertHolds checks that the device's copy of each collection is exactly the cloud's.
func (d *catalogDevice) assertHolds(t *testing.T, c *cloudProc, collections ...string) {
	t.Helper()
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
				t.Errorf("device: %s %s is gone from the cloud, the device still has it", coll, id)
			} else if !bytes.Equal(doc, w.Doc) {
				t.Errorf("device: %s %s differs from the cloud's", coll, id)
			}
		}
		if n != len(want) {
			t.Errorf("device: %d %s, the cloud has %d", n, coll, len(want))
		}
		if t.Failed() {
			t.FailNow()
		}
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
// holds every product that is in both catalogs, and in the end it, and a device following its
// delta feed throughout, hold exactly the new catalog.
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
	before := cloud.export(t, cloudapi.Products)
	s.stop(t)
	cloud.stop()

	// A different seed: every document changes. Each page of the streamed feed takes 10 ms more,
	// so the re-snapshot (some 600 pages) outlasts six lives on a fast machine too.
	cloud = startCloud(t, "-products", "40000", "-seed", "12", "-page-delay", "10ms")
	cloud.post(t, "/_sim/mutate", map[string]int{"deletes": 500, "renames": 500, "price_changes": 500, "adds": 100}, nil)
	kept := cloud.export(t, cloudapi.Products) // less what the shop never had
	for id := range kept {
		if _, ok := before[id]; !ok {
			delete(kept, id)
		}
	}
	opts.cloud = cloud.url
	var cursor string
	for kills := 0; kills < 6; kills++ {
		s = startShop(t, opts)
		waitFor(t, s, "re-snapshot progress", 2*time.Minute, func() bool {
			st := s.status(t)
			for _, c := range st.Collections {
				if c.Name == cloudapi.Products && c.Cursor != cursor && strings.HasPrefix(c.Cursor, "s1.") {
					cursor = c.Cursor
					return true
				}
			}
			return false
		})
		dev.follow(t, s)
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
		if s.caughtUp(t) {
			t.Fatalf("re-snapshot finished after %d kills; the catalog is too small to kill it 6 times", kills)
		}
		s.kill()
		assertStillHeld(t, filepath.Join(dir, "storeedge.db"), kept)
	}
	s = startShop(t, opts)
	waitFor(t, s, "re-snapshot after the kills", 5*time.Minute, func() bool { return s.caughtUp(t) })
	assertSameCatalog(t, s, cloud)
	dev.follow(t, s)
	dev.assertHolds(t, cloud, cloudapi.Products, cloudapi.Prices, cloudapi.Stock)
	s.kill()
	s = startShop(t, opts)
	waitFor(t, s, "a pass after the re-snapshot", time.Minute, func() bool { return s.caughtUp(t) })
	assertSameCatalog(t, s, cloud)
	s.stop(t)
}

// assertStillHeld checks in the database of a killed shop that every product of ids is live.
func assertStillHeld(t *testing.T, path string, ids map[string]exportedItem) {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	missing := 0
	for id := range ids {
		if _, err := db.Get(ctx, cloudapi.Products, id); err != nil {
			if missing++; missing <= 5 {
				t.Errorf("after a kill in the re-snapshot, product %s (still in the cloud) is not served: %v", id, err)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d products of the cloud lost", missing)
	}
}
