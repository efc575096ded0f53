package harness

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"

	"github.com/storeedge/storeedge/devices"
	"github.com/storeedge/storeedge/storage"
)

// AdminToken is the admin credential of the bench's daemons. It is not a secret.
const AdminToken = "bench-admin-token-0123456789"

// benchCreds is the device credential the bench's requests carry: storeedge answers catalog
// requests from paired devices only.
var benchCreds struct {
	mu     sync.Mutex // protects the field below
	device string
}

// PairDevice pairs a device straight into the bench database (before any daemon opens it), so
// that every daemon started on it knows the device, and makes it the one the bench's requests
// and wrk runs authenticate as.
func PairDevice(ctx context.Context, dataDir string) error {
	db, err := storage.Open(ctx, filepath.Join(dataDir, "storeedge.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	const secret = "bench-enrollment-secret-0123"
	dm, err := devices.New(ctx, devices.Options{DB: db, EnrollmentSecret: secret})
	if err != nil {
		return err
	}
	creds, err := dm.Pair(ctx, devices.PairRequest{EnrollmentSecret: secret, Kind: "other", Name: "bench"}, "127.0.0.1")
	if err != nil {
		return err
	}
	benchCreds.mu.Lock()
	benchCreds.device = creds.Token
	benchCreds.mu.Unlock()
	return nil
}

// AuthHeader is the Authorization value for a path: the admin token on admin routes, else the
// bench device's token ("" before PairDevice).
func AuthHeader(path string) string {
	if path == "/api/v1/status" || strings.HasPrefix(path, "/api/v1/admin/") {
		return "Bearer " + AdminToken
	}
	benchCreds.mu.Lock()
	defer benchCreds.mu.Unlock()
	if benchCreds.device == "" {
		return ""
	}
	return "Bearer " + benchCreds.device
}

// authTransport adds the credential to every request.
type authTransport struct{ next http.RoundTripper }

func (t authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if v := AuthHeader(r.URL.Path); v != "" && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", v)
	}
	return t.next.RoundTrip(r)
}
