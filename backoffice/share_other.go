//go:build !windows

package backoffice

// isSharingViolation tells an open refused because another program holds the file; only
// Windows refuses so.
func isSharingViolation(error) bool { return false }
