package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/windows"
)

// renameDurable renames a file over another, written through to the disk: Windows cannot sync
// a folder, and NTFS writes its log of renames lazily, so a power cut could bring the old file
// back. A target another program holds open for a moment (an antivirus scan) is tried again a
// few times.
func renameDurable(from, to string) error {
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
		if attempt == 4 || !errors.Is(err, windows.ERROR_SHARING_VIOLATION) && !errors.Is(err, windows.ERROR_ACCESS_DENIED) {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		time.Sleep(time.Duration(20<<attempt) * time.Millisecond)
	}
}

// longPath gives an absolute path of 248 characters or more the \\?\ prefix, as os.Rename does
// for its own calls.
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
