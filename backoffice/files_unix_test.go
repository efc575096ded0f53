//go:build unix

package backoffice

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
)

// Export files are 0644 (back-office.md) under the packaged unit's umask of 0027 too: the
// folder's permissions say who reads them, and the ERP is seldom in storeedge's group.
func TestExportFileModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	db := openDB(t, "")
	dir := t.TempDir()
	a := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: dir, Format: config.ExportCSV}})
	createOrders(t, db, 2, false)
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, files := readOrderFiles(t, dir)
	if len(files) == 0 {
		t.Fatal("no file exported")
	}
	for _, name := range files {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o644 {
			t.Errorf("%s: mode %#o, want 0644", name, mode)
		}
	}
}

// The ERP reads what the stock import leaves it (the reason a file was refused, the files in
// done/ and failed/) under the packaged unit's umask too: the folders are 0755, the reason 0644.
func TestImportFoldersAreReadableByTheERP(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	drop(t, dir, "bad.csv", "product_id,quantity\nP1,five\n")
	drop(t, dir, "good.csv", "product_id,quantity\nP1,5\n")
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		DoneDir: 0o755, FailedDir: 0o755, filepath.Join(FailedDir, "bad.csv"+ErrorFileSuffix): 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != want {
			t.Errorf("%s: mode %#o, want %#o", name, mode, want)
		}
	}
}

// done/ and failed/ that shop IT made, or narrowed, keep their mode (back-office.md).
func TestImportFoldersThatExistKeepTheirMode(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	for _, name := range []string{DoneDir, FailedDir} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), 0o710); err != nil {
			t.Fatal(err)
		}
	}
	a := importAgent(db, dir)
	drop(t, dir, "bad.csv", "product_id,quantity\nP1,five\n")
	drop(t, dir, "good.csv", "product_id,quantity\nP1,5\n")
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{DoneDir, FailedDir} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o710 {
			t.Errorf("%s: mode %#o, want the 0710 it had", name, mode)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, DoneDir, "good.csv")); err != nil {
		t.Errorf("the good file was not moved to done/: %v", err)
	}
}
