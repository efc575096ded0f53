package durable

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/windows"
)

// rename renames a file over another, written through to the disk: Windows cannot sync a
// folder, and NTFS writes its log of renames lazily, so a power cut could bring the old file
// back. A target another program holds open for a moment (an antivirus scan, an indexer) is
// tried again twice, 30 ms in all.
func rename(from, to string) error {
	f, err := windows.UTF16PtrFromString(longPath(from))
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	t, err := windows.UTF16PtrFromString(longPath(to))
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	for attempt := 0; ; attempt++ {
		err = windows.MoveFileEx(f, t, windows.MOVEFILE_REPLACE_EXISTING|windows.MOVEFILE_WRITE_THROUGH)
		if err == nil {
			return nil
		}
		// A scan holding the file a moment gives a sharing violation, or access denied (a file
		// open without delete sharing, or deleted and not yet closed); a read-only file or a
		// folder's rights give access denied too, and are refused after the two tries.
		if attempt == 2 || !errors.Is(err, windows.ERROR_SHARING_VIOLATION) && !errors.Is(err, windows.ERROR_ACCESS_DENIED) {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		time.Sleep(time.Duration(10<<attempt) * time.Millisecond)
	}
}

// longPath gives a path whose absolute form is 248 characters or more the \\?\ prefix, as
// os.Rename does for its own calls.
func longPath(path string) string {
	if strings.HasPrefix(path, `\\?\`) {
		return path
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // a relative data_dir under a deep working folder
	}
	if len(path) < 248 {
		return path
	}
	path = filepath.Clean(path)
	if strings.HasPrefix(path, `\\`) { // \\server\share\…
		return `\\?\UNC\` + path[2:]
	}
	return `\\?\` + path
}
