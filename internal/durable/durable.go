// Package durable makes a rename survive a power cut: on Unix the folder is synced after it, on
// Windows, where a folder cannot be synced, the rename is written through to the disk.
package durable

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// Rename renames from over to, and makes the rename durable: call it instead of os.Rename and
// SyncDir(filepath.Dir(to)) where a power cut must not bring the old name back.
func Rename(from, to string) error {
	if err := rename(from, to); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(to))
}

// SyncDir makes the renames and creations in dir durable. Windows cannot open a folder for
// syncing: there Rename writes each rename through instead.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err // EINVAL, ENOTSUP: a file system (an SMB mount) that does not sync folders
	}
	return nil
}
