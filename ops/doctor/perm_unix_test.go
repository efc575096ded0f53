//go:build unix

package doctor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
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

// The members of the file's group may not change it, nor read it unless the group is root's or
// the service account's (install.md: FAIL when anyone may change it, or read it while it holds
// a secret).
func TestConfigFileOpenToItsGroup(t *testing.T) {
	testenv.RequireRoot(t) // chown
	path := filepath.Join(t.TempDir(), "storeedge.yaml")
	os.WriteFile(path, []byte("cloud:\n  store_key: \"sk-123\"\n"), 0o600)
	_, gids, ok := accountIDs("nobody")
	if !ok || len(gids) == 0 {
		t.Fatal("no account nobody, or no group")
	}
	other := 1 // daemon on Debian: a group nobody is not in
	for slices.Contains(gids, other) {
		other++
	}
	for _, c := range []struct {
		gid    int
		mode   os.FileMode
		status Status
		detail string
	}{
		{gids[0], 0o660, Fail, "may change it (mode 0660)"},
		{0, 0o660, Fail, "may change it (mode 0660)"},
		{other, 0o640, Fail, "not the service account nobody's, may read it (mode 0640)"},
		{gids[0], 0o640, Pass, "readable by administrators and the service only"},
		{0, 0o640, Pass, "readable by administrators and the service only"},
	} {
		os.Chown(path, 0, c.gid)
		os.Chmod(path, c.mode)
		res := checkConfigFile(path, config.Default(), "nobody")[0]
		if res.Status != c.status || !strings.Contains(res.Detail, c.detail) {
			t.Errorf("group %d, mode %04o: %s %q; want %s %q", c.gid, c.mode, res.Status, res.Detail, c.status, c.detail)
		}
	}
}

// A database file left to root (a `storeedge run` by hand as root) stops the service at its next
// start though the data folder is the service account's: doctor, run as root, names the file
// and the chown that mends it.
func TestDatabaseFileOfRootFails(t *testing.T) {
	testenv.RequireRoot(t) // the service account check runs as root only
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	_, gids, ok := accountIDs("nobody")
	if !ok || len(gids) == 0 {
		t.Fatal("no account nobody, or no group")
	}
	owner := func(r []Result) Result {
		for _, res := range r {
			if strings.Contains(res.Check, "files usable by nobody") {
				return res
			}
		}
		t.Fatalf("no check of the database's files in %+v", r)
		return Result{}
	}
	os.Chown(cfg.DataDir, 65534, gids[0])
	db, err := storage.Open(ctx, cfg.DatabasePath()) // as root: the files are root's
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	res := owner(checkDataDir(ctx, Options{Config: cfg, ServiceUser: "nobody"}))
	if res.Status != Fail || !strings.Contains(res.Detail, cfg.DatabasePath()) || !strings.Contains(res.Fix, "chown nobody:nobody "+cfg.DatabasePath()) {
		t.Fatalf("database of root checked for nobody: %+v", res)
	}
	for _, p := range storage.Files(cfg.DatabasePath()) {
		os.Chown(p, 65534, gids[0])
	}
	if res := owner(checkDataDir(ctx, Options{Config: cfg, ServiceUser: "nobody"})); res.Status != Pass {
		t.Fatalf("database of nobody: %+v", res)
	}
}
