package mediacache

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func sumHex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// A download is invisible under its final name until Commit has checked it; an interrupted one
// resumes from what is on disk, and its hash covers the whole file.
func TestDownloadResumeAndCommit(t *testing.T) {
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("the quick brown fox jumps over the lazy dog")
	name := sumHex(data)
	d, err := c.Begin(name, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	d.Write(data[:10])
	d.Close() // a stop mid-download
	if _, ok := c.Has(name); ok {
		t.Fatal("a partial file is visible under its final name")
	}
	d, err = c.Begin(name, int64(len(data)))
	if err != nil || d.Offset() != 10 {
		t.Fatalf("resume: offset %d, %v", d.Offset(), err)
	}
	d.Write(data[10:])
	if err := d.Commit(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if size, ok := c.Has(name); !ok || size != int64(len(data)) || !c.Verify(name, size) {
		t.Fatalf("after commit: %d %v", size, ok)
	}
	if p, _ := c.Partials(); len(p) != 0 {
		t.Errorf("partial files left: %v", p)
	}
	if files, _ := c.Files(); len(files) != 1 || files[name] != int64(len(data)) {
		t.Errorf("files %v", files)
	}
}

// Content that does not match is never renamed into place.
func TestCommitRefusesMismatch(t *testing.T) {
	c, _ := Open(t.TempDir())
	data := []byte("expected content")
	name := sumHex(data)
	for _, got := range [][]byte{[]byte("expected contenT"), []byte("expected"), []byte("expected content!")} {
		d, err := c.Begin(name, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		d.Write(got)
		if err := d.Commit(int64(len(data))); !errors.Is(err, ErrMismatch) {
			t.Errorf("%q: %v, want a mismatch", got, err)
		}
		if _, ok := c.Has(name); ok {
			t.Fatalf("%q was put in place", got)
		}
	}
	if p, _ := c.Partials(); len(p) != 0 {
		t.Errorf("a mismatched partial file was kept: %v", p)
	}
	if _, err := c.Open("../../etc/passwd"); err == nil {
		t.Error("a name that is not an MD5 was opened")
	}
	if err := os.WriteFile(c.partialPath(name), []byte("much longer than the file should be"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := c.Begin(name, int64(len(data)))
	if err != nil || d.Offset() != 0 {
		t.Errorf("a partial file longer than the blob: offset %d, %v; want a fresh start", d.Offset(), err)
	}
	d.Discard()
}

// A file being served (open) can be removed, as the cache evicts it: on Windows a file opened
// the usual way cannot be, and stayed on disk past the quota.
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
