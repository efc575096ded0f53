//go:build unix

package backup

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/storeedge/storeedge/tools/testenv"
)

// A restore run as root (install.md says sudo) leaves every file of the data folder to the
// folder's owner, the service account: a root-only ids file would make the service's next start
// take its marks for lost and jump the numbers it gives out.
func TestRestoreAsRootLeavesTheFilesToTheServiceAccount(t *testing.T) {
	testenv.RequireRoot(t) // restore gives files back to the service account only when run as root
	const service = 65534  // nobody, standing for the service account
	ctx := context.Background()
	cfg := testConfig(t, "lyon", "key")
	db := runningShop(t, cfg)
	file := filepath.Join(t.TempDir(), "b")
	if _, err := Take(ctx, cfg, file, "test"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Chown(cfg.DataDir, service, service); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, RestoreOptions{Config: cfg, File: file}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		seen[e.Name()] = true
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != service || st.Gid != service {
			t.Errorf("%s is owned by %d:%d after the restore, want the service account's %d:%d", e.Name(), st.Uid, st.Gid, service, service)
		}
	}
	if !seen["storeedge.ids"] {
		t.Fatalf("no storeedge.ids after the restore (files: %v): the test does not see what it checks", seen)
	}
}

// A backup taken as root into the service's folder is the folder owner's from the moment it has
// its name (install.md): a copy job watching the folder never meets it owned by root.
func TestBackupAsRootIsTheFolderOwnersWhenItAppears(t *testing.T) {
	testenv.RequireRoot(t)
	const service = 65534
	ctx := context.Background()
	cfg := testConfig(t, "lyon", "key")
	runningShop(t, cfg)
	dir := t.TempDir()
	if err := os.Chown(dir, service, service); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "b")
	owned := func(what, path string) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != service || st.Gid != service || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is owned by %d:%d, mode %v; want %d:%d, 0600", what, st.Uid, st.Gid, fi.Mode().Perm(), service, service)
		}
	}
	// Just before it takes its name, the finished copy is the folder owner's already.
	settled := false
	backupSettled = func(tmp string) {
		settled = true
		if _, err := os.Stat(file); err == nil {
			t.Error("the backup had its name before it had its owner")
		}
		owned("the finished copy before its rename", tmp)
	}
	defer func() { backupSettled = nil }()
	if _, err := Take(ctx, cfg, file, "test"); err != nil {
		t.Fatal(err)
	}
	if !settled {
		t.Fatal("the backup took its name without being settled first")
	}
	owned("the backup", file)
}
