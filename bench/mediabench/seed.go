package mediabench

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/storage/mediacache"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// serveFile is one file of the serving benchmark.
type serveFile struct {
	id   string
	size int
	md5  string // hex
}

// cachePath is the file's path in the media cache's folder, as nginx serves it.
func (f serveFile) cachePath() string { return "/" + f.md5[:2] + "/" + f.md5 }

// seedMediaCache puts the files into a fresh data directory as the fetcher would have: verified
// files in the cache and their records, under media manifests in the catalog.
func seedMediaCache(ctx context.Context, dataDir string, files []serveFile) ([]serveFile, error) {
	db, err := storage.Open(ctx, filepath.Join(dataDir, "storeedge.db"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	cache, err := mediacache.Open(filepath.Join(dataDir, "media"))
	if err != nil {
		return nil, err
	}
	var changes []cloudapi.Change
	for i := range files {
		data := randomBytes(files[i].size, uint64(i))
		sum := md5.Sum(data)
		files[i].md5 = hex.EncodeToString(sum[:])
		d, err := cache.Begin(files[i].md5, int64(len(data)))
		if err != nil {
			return nil, err
		}
		d.Write(data)
		if err := d.Commit(int64(len(data))); err != nil {
			return nil, err
		}
		m := cloudapi.MediaManifest{ID: files[i].id, Blob: files[i].id + ".mp4", Size: int64(len(data)), MD5: base64.StdEncoding.EncodeToString(sum[:]), ContentType: "video/mp4"}
		doc, _ := json.Marshal(m)
		changes = append(changes, cloudapi.Change{Collection: cloudapi.Media, ID: m.ID, Op: cloudapi.OpUpsert, Rev: int64(i + 1), Doc: doc})
	}
	if _, err := db.ApplyPage(ctx, storage.Page{Collection: cloudapi.Media, Changes: changes, End: cloudapi.PageEnd{Cursor: "bench", Count: len(changes)}}); err != nil {
		return nil, err
	}
	for _, f := range files {
		if _, err := db.StoreMedia(ctx, f.id, f.md5, "video/mp4", int64(f.size), time.Now()); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// randomBytes is n bytes of a generator seeded with seed: the same file every run.
func randomBytes(n int, seed uint64) []byte {
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for j := range data {
		data[j] = byte(r.Uint32())
	}
	return data
}

// nginxConf serves root on port with sendfile, as a shop would set nginx up for static files.
func nginxConf(dir, root string, port int) string {
	// The cache's files are readable by their owner only (0640 in 0750 folders): the workers run
	// as the bench's own user, as storeedge does.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	return fmt.Sprintf(`daemon off;
%[4]s
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  sendfile on;
  tcp_nopush on;
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
  types { video/mp4 mp4; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
    etag on;
  }
}
`, dir, port, root, user)
}
