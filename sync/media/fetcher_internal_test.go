package media

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
)

// newTestFetcher is a Fetcher on a fresh database and cache, with o's other options; no worker
// runs, so that a test drives its steps itself.
func newTestFetcher(t *testing.T, o Options) (*Fetcher, *storage.DB, *mediacache.Cache) {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cache, err := mediacache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o.DB, o.Cache = db, cache
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return f, db, cache
}
