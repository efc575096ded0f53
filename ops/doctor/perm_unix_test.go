//go:build unix

package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/tools/testenv"
)

// A configuration file closed to root alone passes the access check, but the service, which
// runs as its own account, cannot read it and will not start: doctor, run as root, says so.
func TestConfigFileNotReadableByTheService(t *testing.T) {
	testenv.RequireRoot(t) // the service account check runs as root only
	path := filepath.Join(t.TempDir(), "storeedge.yaml")
	os.WriteFile(path, []byte("cloud:\n  store_key: \"sk-123\"\n"), 0o600)
	os.Chmod(path, 0o600) // root's
	res := checkConfigFile(path, config.Default(), "nobody")
	if len(res) != 2 || res[0].Status != Pass || res[1].Status != Fail || !strings.Contains(res[1].Detail, "cannot read it") ||
		!strings.Contains(res[1].Fix, "chown root:nobody "+path) {
		t.Fatalf("root's 0600 file checked for nobody: %+v", res)
	}
	_, gids, ok := accountIDs("nobody")
	if !ok || len(gids) == 0 {
		t.Fatal("no account nobody, or no group")
	}
	os.Chown(path, 0, gids[0])
	os.Chmod(path, 0o640)
	if res := checkConfigFile(path, config.Default(), "nobody"); len(res) != 2 || res[0].Status != Pass || res[1].Status != Pass {
		t.Fatalf("0640 in nobody's group: %+v", res)
	}
	if res := checkConfigFile(path, config.Default(), ""); len(res) != 1 {
		t.Fatalf("no service account: %+v", res)
	}
}
