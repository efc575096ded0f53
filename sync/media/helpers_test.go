package media_test

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
	"github.com/storeedge/storeedge/sync/media"
	"github.com/storeedge/storeedge/tools/testenv"
)

// blobStore is a container in a running Azurite.
type blobStore struct {
	az     *testenv.Azurite
	admin  *container.Client // with the account key: uploads, SAS
	name   string
	client *http.Client // trusts the test CA when Azurite runs HTTPS
}

func startStore(t *testing.T, o testenv.AzuriteOptions, client *http.Client) *blobStore {
	t.Helper()
	az := testenv.StartAzurite(t, o)
	opts := &container.ClientOptions{}
	opts.Transport = client
	admin, err := container.NewClientFromConnectionString(az.ConnectionString, "media", opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Create(context.Background(), nil); err != nil {
		t.Fatalf("create container: %v", err)
	}
	return &blobStore{az: az, admin: admin, name: "media", client: client}
}

// put uploads content under name.
func (b *blobStore) put(t *testing.T, name string, content []byte) {
	t.Helper()
	_, err := b.admin.NewBlockBlobClient(name).UploadBuffer(context.Background(), content, &blockblob.UploadBufferOptions{})
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
}

// sasURL is a container URL with a read SAS valid for d.
func (b *blobStore) sasURL(t *testing.T, d time.Duration) string {
	t.Helper()
	u, err := b.admin.GetSASURL(sas.ContainerPermissions{Read: true, List: true}, time.Now().Add(d), nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// content is deterministic pseudo-random bytes.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func md5b64(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// item is one media item of a test catalog.
type item struct {
	id, blob, contentType string
	data                  []byte
}

func (it item) manifest() cloudapi.MediaManifest {
	return cloudapi.MediaManifest{ID: it.id, Blob: it.blob, Size: int64(len(it.data)), MD5: md5b64(it.data), ContentType: it.contentType}
}

// shop is a local database and cache.
type shop struct {
	db    *storage.DB
	cache *mediacache.Cache
	rev   int64
	log   *testenv.Buffer
}

func newShop(t *testing.T) *shop {
	t.Helper()
	dir := t.TempDir()
	db, err := storage.Open(context.Background(), filepath.Join(dir, "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cache, err := mediacache.Open(filepath.Join(dir, "media"))
	if err != nil {
		t.Fatal(err)
	}
	return &shop{db: db, cache: cache, log: &testenv.Buffer{}}
}

// catalog applies media manifests (and products that list them) as the feed would.
func (s *shop) catalog(t *testing.T, items ...item) {
	t.Helper()
	var changes []cloudapi.Change
	for _, it := range items {
		s.rev++
		doc, _ := json.Marshal(it.manifest())
		changes = append(changes, cloudapi.Change{Collection: cloudapi.Media, ID: it.id, Op: cloudapi.OpUpsert, Rev: s.rev, Doc: doc})
	}
	s.apply(t, cloudapi.Media, changes)
}

// products applies products, each listing the given media.
func (s *shop) products(t *testing.T, media map[string][]string) {
	t.Helper()
	var changes []cloudapi.Change
	for id, m := range media {
		s.rev++
		doc, _ := json.Marshal(cloudapi.Product{ID: id, Name: "Product " + id, Media: m})
		changes = append(changes, cloudapi.Change{Collection: cloudapi.Products, ID: id, Op: cloudapi.OpUpsert, Rev: s.rev, Doc: doc})
	}
	s.apply(t, cloudapi.Products, changes)
}

func (s *shop) deleteMedia(t *testing.T, id string) {
	t.Helper()
	s.rev++
	s.apply(t, cloudapi.Media, []cloudapi.Change{{Collection: cloudapi.Media, ID: id, Op: cloudapi.OpDelete, Rev: s.rev}})
}

func (s *shop) apply(t *testing.T, coll string, changes []cloudapi.Change) {
	t.Helper()
	_, err := s.db.ApplyPage(context.Background(), storage.Page{Collection: coll, Changes: changes,
		End: cloudapi.PageEnd{Cursor: fmt.Sprintf("c%d", s.rev), Count: len(changes)}})
	if err != nil {
		t.Fatal(err)
	}
}

// fetcher starts a Fetcher over the shop until the test ends.
func (s *shop) fetcher(t *testing.T, src media.Source, mod func(*media.Options)) *media.Fetcher {
	t.Helper()
	f, stop := s.startFetcher(t, src, mod)
	t.Cleanup(stop)
	return f
}

// startFetcher starts a Fetcher over the shop; stop ends its Run and checks what it returned.
func (s *shop) startFetcher(t *testing.T, src media.Source, mod func(*media.Options)) (*media.Fetcher, func()) {
	t.Helper()
	o := media.Options{DB: s.db, Cache: s.cache, Source: src, Prefetch: true, MaxBytes: 1 << 30, Parallel: 2,
		OnDemandWait: 10 * time.Second, PollInterval: 20 * time.Millisecond, RetryMax: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&o)
	}
	f, err := media.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	return f, func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if t.Failed() {
				t.Logf("fetcher log:\n%s", s.log)
			}
		})
	}
}

// waitStatus polls the fetcher's status until cond holds.
func waitStatus(t *testing.T, f *media.Fetcher, what string, cond func(media.Status) bool) media.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := f.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; status %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// read opens a media item through the fetcher and returns its bytes.
func read(t *testing.T, f *media.Fetcher, id string) ([]byte, *media.File, error) {
	t.Helper()
	file, err := f.Open(context.Background(), id)
	if err != nil {
		return nil, nil, err
	}
	defer file.Close()
	f.Served(file.MD5) // as the media service does once it has sent it
	b, err := io.ReadAll(file)
	if err != nil {
		t.Fatal(err)
	}
	return b, file, nil
}

func idle(st media.Status) bool { return st.Pending == 0 && st.State == media.StateOK }
