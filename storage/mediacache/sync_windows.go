package mediacache

// syncDir does nothing on Windows: NTFS journals the rename itself, and a directory cannot be
// opened for syncing.
func syncDir(string) error { return nil }
