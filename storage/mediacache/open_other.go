//go:build !windows

package mediacache

import "os"

// openShared opens path for reading; on Unix an open file may be removed or renamed anyway.
func openShared(path string) (*os.File, error) { return os.Open(path) }
