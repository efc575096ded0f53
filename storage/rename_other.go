//go:build !windows

package storage

import "os"

// renameDurable renames a file over another; the caller syncs the folder.
func renameDurable(from, to string) error { return os.Rename(from, to) }
