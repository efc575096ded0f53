package cloudsim

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"golang.org/x/sync/errgroup"
)

// The media blobs of the catalog are served by a Blob store the sim fills itself, and the remote
// configuration hands out a container URL with a SAS for it, renewed on every request:
//
//   - an Azure Storage account given by its connection string (Azurite in the tests and
//     benchmarks): the sim uploads every blob the catalog lists, and again after a mutation
//     changes some, and signs SAS URLs with the account key;
//   - or its own small Blob-compatible endpoint, /_blob/{container}/{name} (GET and HEAD, whole
//     or ranged by Range or x-ms-range), generating content on the fly and checking a SAS of its
//     own; for the demo, which must run without an emulator.

// MediaOptions configure the media blobs.
type MediaOptions struct {
	// ConnectionString and Container name an Azure Storage container for the blobs.
	ConnectionString string
	Container        string
	// BuiltIn serves the blobs from the sim's own endpoint under /_blob/.
	BuiltIn bool
	// SASLifetime is how long each container URL handed out stays valid; default 1h.
	SASLifetime time.Duration
	// Transport, when set, carries the requests to the storage account (a test CA, say).
	Transport policy.Transporter
}

func (o MediaOptions) enabled() bool { return o.ConnectionString != "" || o.BuiltIn }

// builtInContainer is the container name of the built-in endpoint.
const builtInContainer = "media"

// blobStore is the storage account side of the sim.
type blobStore struct {
	client *container.Client // nil for the built-in endpoint

	mu       sync.Mutex        // protects the field below
	uploaded map[string]uint32 // blob name -> version uploaded
}

func newBlobStore(o MediaOptions) (*blobStore, error) {
	st := &blobStore{uploaded: map[string]uint32{}}
	if o.ConnectionString == "" {
		return st, nil
	}
	copts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: o.Transport}}
	c, err := container.NewClientFromConnectionString(o.ConnectionString, o.Container, copts)
	if err != nil {
		return nil, fmt.Errorf("cloudsim: media container: %w", err)
	}
	st.client = c
	return st, nil
}

// SyncBlobs uploads the blob of every live media item whose current version the store lacks, and
// returns how many it uploaded. With the built-in endpoint there is nothing to do.
func (s *Sim) SyncBlobs(ctx context.Context) (int, error) {
	if s.blobsErr != nil {
		return 0, s.blobsErr
	}
	if s.blobs == nil || s.blobs.client == nil {
		return 0, nil
	}
	if _, err := s.blobs.client.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return 0, fmt.Errorf("cloudsim: create media container: %w", err)
	}
	var todo []mediaSpec
	s.mu.RLock()
	c := &s.colls[cMedia]
	s.blobs.mu.Lock()
	for idx := range c.rev {
		if c.dead[idx] {
			continue
		}
		spec := s.cat.mediaSpec(idx, c.ver[idx])
		if v, ok := s.blobs.uploaded[spec.name]; !ok || v != spec.ver {
			todo = append(todo, spec)
		}
	}
	s.blobs.mu.Unlock()
	s.mu.RUnlock()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, spec := range todo {
		g.Go(func() error {
			// The blob carries its Content-MD5 and type, as Azure's own upload tools set them.
			sum := s.cat.blobs.sum(s.seed, spec)
			_, err := s.blobs.client.NewBlockBlobClient(spec.name).UploadStream(gctx, blobContent{s.seed, spec}.reader(),
				&blockblob.UploadStreamOptions{BlockSize: 4 << 20, Concurrency: 2,
					HTTPHeaders: &blob.HTTPHeaders{BlobContentMD5: sum[:], BlobContentType: &spec.contentType}})
			if err != nil {
				return fmt.Errorf("cloudsim: upload %s: %w", spec.name, err)
			}
			s.blobs.mu.Lock()
			s.blobs.uploaded[spec.name] = spec.ver
			s.blobs.mu.Unlock()
			return nil
		})
	}
	return len(todo), g.Wait()
}

// mediaContainerURL is the container URL the remote configuration hands out now. refused makes
// its signature wrong, as a revoked SAS would be.
func (s *Sim) mediaContainerURL(r *http.Request, refused bool) (string, error) {
	o := s.opts.Media
	expiry := s.now().Add(o.SASLifetime).UTC().Truncate(time.Second)
	var u string
	if s.blobs.client != nil {
		var err error
		u, err = s.blobs.client.GetSASURL(sas.ContainerPermissions{Read: true, List: true}, expiry, nil)
		if err != nil {
			return "", err
		}
	} else {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		q := url.Values{"se": {expiry.Format(time.RFC3339)}, "sp": {"rl"}, "sig": {s.sign(expiry)}}
		u = scheme + "://" + r.Host + "/_blob/" + builtInContainer + "?" + q.Encode()
	}
	if refused {
		u = strings.Replace(u, "sig=", "sig=refused", 1)
	}
	return u, nil
}

// sign is the built-in endpoint's SAS signature of an expiry time.
func (s *Sim) sign(expiry time.Time) string {
	m := hmac.New(sha256.New, []byte(s.opts.StoreKey+"/blob"))
	m.Write([]byte(expiry.UTC().Format(time.RFC3339)))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// handleBlob is the built-in Blob endpoint: GET and HEAD of a media blob, whole or ranged.
func (s *Sim) handleBlob(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	expiry, err := time.Parse(time.RFC3339, q.Get("se"))
	switch {
	case err != nil || !hmac.Equal([]byte(q.Get("sig")), []byte(s.sign(expiry))):
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "Server failed to authenticate the request. The signature does not match.")
		return
	case s.now().After(expiry):
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "Signed expiry time has to be after signed start time.")
		return
	case r.PathValue("container") != builtInContainer:
		blobError(w, http.StatusNotFound, "ContainerNotFound", "The specified container does not exist.")
		return
	}
	spec, ok := s.liveBlob(r.PathValue("name"))
	if !ok {
		blobError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
		return
	}
	if xr := r.Header.Get("x-ms-range"); xr != "" {
		r.Header.Set("Range", xr)
	}
	h := w.Header()
	h.Set("Content-Type", spec.contentType)
	h.Set("ETag", `"0x`+strconv.FormatUint(uint64(spec.idx)<<20|uint64(spec.ver), 16)+`"`)
	h.Set("x-ms-blob-type", "BlockBlob")
	h.Set("x-ms-version", "2023-11-03")
	if r.Header.Get("Range") == "" {
		sum := s.cat.blobs.sum(s.seed, spec)
		h.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
	}
	http.ServeContent(w, r, "", time.Unix(0, 0).UTC(), io.NewSectionReader(blobContent{s.seed, spec}, 0, spec.size))
}

// liveBlob finds the current version of the media blob with that name.
func (s *Sim) liveBlob(name string) (mediaSpec, bool) {
	idx, ok := mediaIndex(name)
	if !ok {
		return mediaSpec{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := &s.colls[cMedia]
	if idx >= len(c.rev) || c.dead[idx] {
		return mediaSpec{}, false
	}
	spec := s.cat.mediaSpec(idx, c.ver[idx])
	return spec, spec.name == name
}

// blobError answers as Blob storage does: an XML error with its code in x-ms-error-code.
func blobError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}
