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
// SyncDir(filepath.Dir(to)) where a power cut must not bring the old name back. A failure after
// the rename itself is a *SyncError: the file is at to already.
func Rename(from, to string) error {
	if err := rename(from, to); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(to)); err != nil {
		return &SyncError{Dir: filepath.Dir(to), Err: err}
	}
	return nil
}

// SyncError is a rename done whose folder could not be synced.
type SyncError struct {
	Dir string
	Err error
}

func (e *SyncError) Error() string { return "sync " + e.Dir + " after a rename: " + e.Err.Error() }
func (e *SyncError) Unwrap() error { return e.Err }

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
