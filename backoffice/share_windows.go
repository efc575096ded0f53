package backoffice

import (
	"errors"

	"golang.org/x/sys/windows"
)

// isSharingViolation tells an open refused because another program holds the file without
// letting others read it: a file still being written.
func isSharingViolation(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_LOCK_VIOLATION)
}
