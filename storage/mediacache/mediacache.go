// Package mediacache keeps the media files on disk: a content-addressed folder in which every
// file is named by the hex MD5 of its content and is complete and verified, because it only ever
// gets there by a rename after its size and MD5 were checked and its data synced to disk.
// Downloads grow in partial files beside them, one per MD5, which a restart resumes; the rename
// that puts a file in place stays within its folder.
//
//	<dir>/ab/ab12…ef        verified files, by the first two hex digits of their MD5
//	<dir>/ab/ab12…ef.part   downloads in progress
//
// The index of which files exist and which media item each serves is storage's (SQLite); this
// package only handles files.
package mediacache

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Cache is the folder of media files. Its methods are safe for concurrent use as long as no two
// callers write the same MD5 at once (the fetcher downloads each MD5 once at a time).
type Cache struct {
	dir string
}

// Open creates the folder if needed.
func Open(dir string) (*Cache, error) {
	c := &Cache{dir: dir}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("mediacache: %w", err)
	}
	return c, nil
}

// Dir is the cache's folder.
func (c *Cache) Dir() string { return c.dir }

// ValidName reports whether s is a lower-case hex MD5, the only names the cache uses.
func ValidName(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Path is where the verified file of md5hex lives.
func (c *Cache) Path(md5hex string) string {
	return filepath.Join(c.dir, md5hex[:2], md5hex)
}

func (c *Cache) partialPath(md5hex string) string {
	return filepath.Join(c.dir, md5hex[:2], md5hex+partialSuffix)
}

const partialSuffix = ".part"

// Open opens the verified file of md5hex for reading. The file may be removed while it is open
// (evicted while a device downloads it): on Windows too, where a file opened the usual way
// cannot be.
func (c *Cache) Open(md5hex string) (*os.File, error) {
	if !ValidName(md5hex) {
		return nil, fmt.Errorf("mediacache: %q is not an MD5", md5hex)
	}
	return openShared(c.Path(md5hex))
}

// Has reports whether the verified file of md5hex is in place, and its size.
func (c *Cache) Has(md5hex string) (int64, bool) {
	fi, err := os.Stat(c.Path(md5hex))
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}

// Download is a partial file being written. Its hash covers every byte in the file, those of an
// earlier, interrupted download included.
type Download struct {
	c      *Cache
	md5hex string
	f      *os.File
	h      hashWriter
	n      int64
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

// Begin opens the partial file of md5hex to continue it: Offset says how many bytes an earlier
// download left (they are read back to hash them), 0 for a new one. want is the size the file
// must reach; a partial file already longer is started again.
func (c *Cache) Begin(md5hex string, want int64) (*Download, error) {
	if !ValidName(md5hex) {
		return nil, fmt.Errorf("mediacache: %q is not an MD5", md5hex)
	}
	f, err := os.OpenFile(c.partialPath(md5hex), os.O_RDWR|os.O_CREATE, 0o640)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(c.partialPath(md5hex)), 0o750); err == nil {
			f, err = os.OpenFile(c.partialPath(md5hex), os.O_RDWR|os.O_CREATE, 0o640)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("mediacache: %w", err)
	}
	d := &Download{c: c, md5hex: md5hex, f: f, h: md5.New()}
	n, err := io.Copy(d.h, f)
	if err == nil && n > want {
		err = d.restart()
		n = 0
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mediacache: resume %s: %w", md5hex, err)
	}
	d.n = n
	return d, nil
}

// PartialSize is the size of md5hex's partial file, 0 when there is none (or it cannot be
// read: Begin says why).
func (c *Cache) PartialSize(md5hex string) int64 {
	if !ValidName(md5hex) {
		return 0
	}
	fi, err := os.Stat(c.partialPath(md5hex))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Offset is the number of bytes in the file so far.
func (d *Download) Offset() int64 { return d.n }

// Write appends to the file.
func (d *Download) Write(p []byte) (int, error) {
	n, err := d.f.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}

// Restart empties the file, for a download that must start from the beginning.
func (d *Download) Restart() error {
	if err := d.restart(); err != nil {
		return fmt.Errorf("mediacache: restart %s: %w", d.md5hex, err)
	}
	return nil
}

func (d *Download) restart() error {
	if err := d.f.Truncate(0); err != nil {
		return err
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	d.h, d.n = md5.New(), 0
	return nil
}

// Sum is the MD5 of the bytes written so far.
func (d *Download) Sum() [16]byte {
	var s [16]byte
	copy(s[:], d.h.Sum(nil))
	return s
}

// Close closes the partial file and keeps it, for a later download to resume.
func (d *Download) Close() error { return d.f.Close() }

// Discard closes and deletes the partial file.
func (d *Download) Discard() error {
	d.f.Close()
	if err := os.Remove(d.c.partialPath(d.md5hex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mediacache: %w", err)
	}
	return nil
}

// ErrMismatch is wrapped by Commit's error when the file is not the one expected.
var ErrMismatch = errors.New("content does not match")

// Commit checks the file against the expected size and MD5 and, when they match, syncs it to
// disk and renames it into place: from then on it is served. On a mismatch the partial file is
// deleted and the error wraps ErrMismatch.
func (d *Download) Commit(size int64) error {
	sum := d.Sum()
	switch {
	case d.n != size:
		d.Discard()
		return fmt.Errorf("mediacache: %w: %d bytes, want %d", ErrMismatch, d.n, size)
	case hex.EncodeToString(sum[:]) != d.md5hex:
		d.Discard()
		return fmt.Errorf("mediacache: %w: MD5 %s, want %s", ErrMismatch, hex.EncodeToString(sum[:]), d.md5hex)
	}
	if err := d.f.Sync(); err != nil {
		d.f.Close()
		return fmt.Errorf("mediacache: sync %s: %w", d.md5hex, err)
	}
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("mediacache: close %s: %w", d.md5hex, err)
	}
	final := d.c.Path(d.md5hex)
	// The folder is not synced after the rename: a rename lost to a power cut loses a verified
	// file, never leaves a partial one, and the fetcher fetches a recorded file that is missing
	// again (as the index's own last commits may be lost too: it syncs at checkpoints).
	if err := os.Rename(d.c.partialPath(d.md5hex), final); err != nil {
		return fmt.Errorf("mediacache: %w", err)
	}
	return nil
}

// Remove deletes the verified file of md5hex; a file already gone is not an error.
func (c *Cache) Remove(md5hex string) error {
	if !ValidName(md5hex) {
		return fmt.Errorf("mediacache: %q is not an MD5", md5hex)
	}
	if err := os.Remove(c.Path(md5hex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mediacache: %w", err)
	}
	return nil
}

// Files lists the verified files on disk by hex MD5, with their sizes. Names that are not the
// cache's are left out.
func (c *Cache) Files() (map[string]int64, error) {
	files, _, err := c.list()
	return files, err
}

// Partials lists the partial files by hex MD5 with their sizes.
func (c *Cache) Partials() (map[string]int64, error) {
	_, partials, err := c.list()
	return partials, err
}

// list walks the cache's folders.
func (c *Cache) list() (files, partials map[string]int64, err error) {
	files, partials = map[string]int64{}, map[string]int64{}
	err = filepath.WalkDir(c.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if path != c.dir && len(e.Name()) != 2 {
				return fs.SkipDir
			}
			return nil
		}
		into := files
		name := e.Name()
		if base, ok := strings.CutSuffix(name, partialSuffix); ok {
			into, name = partials, base
		}
		if !ValidName(name) || !strings.HasPrefix(name, filepath.Base(filepath.Dir(path))) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		into[name] = fi.Size()
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("mediacache: list files: %w", err)
	}
	return files, partials, nil
}

// RemovePartial deletes the partial file of md5hex.
func (c *Cache) RemovePartial(md5hex string) error {
	if err := os.Remove(c.partialPath(md5hex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mediacache: %w", err)
	}
	return nil
}

// Verify hashes the file of md5hex and reports whether it has that size and MD5: for a file
// found on disk that the index does not know (a stop between the rename and the record).
func (c *Cache) Verify(md5hex string, size int64) bool {
	f, err := c.Open(md5hex)
	if err != nil {
		return false
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(h, f)
	return err == nil && n == size && hex.EncodeToString(h.Sum(nil)) == md5hex
}
