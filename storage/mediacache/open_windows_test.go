package mediacache

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// A file being served (open) can be removed, as the cache evicts it: on Windows a file opened
// the usual way cannot be, and stayed on disk past the quota. (On Unix an open file can always
// be removed: the test would hold nothing there.)
func TestOpenFileCanBeRemoved(t *testing.T) {
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const md5hex = "900150983cd24fb0d6963f7d28e17f72" // "abc"
	if err := os.MkdirAll(filepath.Dir(c.Path(md5hex)), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Path(md5hex), []byte("abc"), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := c.Open(md5hex)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.Remove(md5hex); err != nil {
		t.Fatalf("remove while served: %v", err)
	}
	if b, err := io.ReadAll(f); err != nil || string(b) != "abc" {
		t.Fatalf("the open file after its removal: %q %v", b, err)
	}
}
