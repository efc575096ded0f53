package mediacache

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// openShared opens path for reading and lets others read, write, remove and rename it
// meanwhile: os.Open on Windows does not share deletion, so a file being served could not be
// evicted, and would stay on disk past the cache's quota.
func openShared(path string) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(longPath(path))
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil,
		windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}

// longPath gives an absolute path of 248 characters or more the \\?\ prefix, as os.Open does
// for its own calls, so that a data_dir deep in the disk opens as it stats and renames.
func longPath(path string) string {
	if len(path) < 248 || !filepath.IsAbs(path) || strings.HasPrefix(path, `\\?\`) {
		return path
	}
	path = filepath.Clean(path)
	if strings.HasPrefix(path, `\\`) { // \\server\share\…
		return `\\?\UNC\` + path[2:]
	}
	return `\\?\` + path
}
