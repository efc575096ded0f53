package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Rename puts the new file in the old one's place, and a source that is gone is fs.ErrNotExist,
// which the back office's export reads as "taken already" (backoffice/files.go).
func TestRename(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, ".new"), filepath.Join(dir, "file")
	os.WriteFile(to, []byte("old"), 0o644)
	os.WriteFile(from, []byte("new"), 0o644)
	if err := Rename(from, to); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(to); string(b) != "new" {
		t.Fatalf("the file holds %q after the rename", b)
	}
	if _, err := os.Stat(from); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the old name is still there: %v", err)
	}
	if err := Rename(from, to); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("renaming a file that is gone: %v, want fs.ErrNotExist", err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("syncing a folder that is not there: %v", err)
	}
}
