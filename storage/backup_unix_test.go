//go:build unix

package storage

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A backup is readable by its owner only from its first byte (install.md), under a umask that
// lets everyone read what is created: nobody can open the file while it is written and keep it.
func TestBackupIsNeverReadableByOthers(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	shopDB(t, path).Close()
	var during os.FileMode
	backupStarted = func(tmp string) {
		if fi, err := os.Stat(tmp); err == nil {
			during = fi.Mode().Perm()
		}
	}
	defer func() { backupStarted = nil }()
	dst := filepath.Join(t.TempDir(), "shop.backup")
	if err := Backup(ctx, path, dst, Manifest{}, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if during != 0o600 || fi.Mode().Perm() != 0o600 {
		t.Errorf("the backup's mode: %#o while written, %#o once done; want 0600 both", during, fi.Mode().Perm())
	}
}
