//go:build unix

package testenv

import (
	"os"
	"sync"
	"syscall"
	"testing"
)

// FailWALFlushes makes every flush of the write-ahead log of the SQLite database at dbPath that
// opens the log by its name fail, as a disk that fails its writes would: the name is taken by a
// FIFO (whose fsync fails with EINVAL) while SQLite goes on writing to the file it holds open.
// The returned function puts the log back under its name; call it before the database is
// closed (t.Cleanup calls it too, once).
func FailWALFlushes(t testing.TB, dbPath string) (restore func()) {
	t.Helper()
	wal := dbPath + "-wal"
	if err := os.Rename(wal, wal+".held"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(wal, 0o600); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			os.Remove(wal)
			if err := os.Rename(wal+".held", wal); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}
