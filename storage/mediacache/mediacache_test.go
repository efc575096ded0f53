package mediacache

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"os"
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
