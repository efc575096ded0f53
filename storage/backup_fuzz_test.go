package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzInspectBackup reads files given for a restore, which come from outside: whatever their
// bytes (a backup damaged, cut short, another SQLite file, not SQLite at all), InspectBackup
// never panics nor holds on (10 s for a file of the fuzzer's size), and what it accepts has a
// schema version above 0 (Restore refuses one newer than this program's). The seeds are a real backup,
// the same cut in half, a bare SQLite header and nothing.
func FuzzInspectBackup(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "storeedge.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		f.Fatal(err)
	}
	db.Close()
	backup := filepath.Join(dir, "shop.backup")
	if err := Backup(context.Background(), path, backup, Manifest{Version: "1.2.3", Reason: "fuzz"}, nil); err != nil {
		f.Fatal(err)
	}
	whole, err := os.ReadFile(backup)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(whole)
	f.Add(whole[:len(whole)/2])
	f.Add([]byte("SQLite format 3\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "given.backup")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		info, err := InspectBackup(ctx, file)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("reading the file took more than 10 s")
		}
		if err == nil && info.Schema <= 0 {
			t.Fatalf("accepted a backup of schema %d", info.Schema)
		}
	})
}
