package media

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
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

// pictureBody is the content of the media items the internal tests fetch.
var pictureBody = []byte("a product's picture")

// picture is the manifest of media item id whose blob holds pictureBody, and its hex MD5.
func picture(id string) (cloudapi.MediaManifest, string) {
	sum := md5.Sum(pictureBody)
	return cloudapi.MediaManifest{ID: id, Blob: "products/" + id + ".jpg", Size: int64(len(pictureBody)),
		MD5: base64.StdEncoding.EncodeToString(sum[:]), ContentType: "image/jpeg"}, hex.EncodeToString(sum[:])
}
