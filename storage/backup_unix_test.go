//go:build unix

package storage

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A backup holds customers' names and phone numbers: it is readable by its owner only
// (install.md), also when made from a shell whose umask lets everyone read new files, and from
// the open database as the scheduled backups are.
func TestBackupIsReadableByItsOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := shopDB(t, path)
	dir := t.TempDir()
	byPath, byDB := filepath.Join(dir, "by-path.backup"), filepath.Join(dir, "by-db.backup")
	if err := Backup(ctx, path, byPath, Manifest{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Backup(ctx, byDB, Manifest{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{byPath, byDB} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s: mode %#o, want 0600", filepath.Base(f), mode)
		}
	}
}
