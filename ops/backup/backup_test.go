package backup

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
	"github.com/storeedge/storeedge/tools/testenv"
)

func testConfig(t *testing.T, shopID, storeKey string) config.Config {
	t.Helper()
	c := config.Default()
	c.DataDir = t.TempDir()
	c.ServerID = "box-1"
	c.Shop.ID = shopID
	c.Cloud.StoreKey = config.Secret(storeKey)
	return c
}

// runningShop opens cfg's database as the server would and records its identity.
func runningShop(t *testing.T, cfg config.Config) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), cfg.DatabasePath())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RecordIdentity(context.Background(), IdentityOf(cfg)); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestCheckShop(t *testing.T) {
	lyonA := storage.Identity{ShopID: "lyon", StoreKey: Fingerprint("key-a")}
	for _, tc := range []struct {
		name         string
		backup, here storage.Identity
		other        bool
	}{
		{"same shop id, new store key", lyonA, storage.Identity{ShopID: "lyon", StoreKey: Fingerprint("key-b")}, false},
		{"other shop id", lyonA, storage.Identity{ShopID: "paris", StoreKey: Fingerprint("key-a")}, true},
		{"no shop ids, same key", storage.Identity{StoreKey: Fingerprint("k")}, storage.Identity{StoreKey: Fingerprint("k")}, false},
		{"no shop id here, other key", lyonA, storage.Identity{StoreKey: Fingerprint("key-b")}, true},
		{"backup knows nothing", storage.Identity{}, lyonA, false},
	} {
		err := CheckShop(tc.backup, tc.here)
		var oe *OtherShopError
		if errors.As(err, &oe) != tc.other {
			t.Errorf("%s: CheckShop = %v, want other shop %v", tc.name, err, tc.other)
		}
	}
	if Fingerprint("key-a") == Fingerprint("key-b") || Fingerprint("") != "" || len(Fingerprint("k")) != 32 {
		t.Errorf("fingerprints do not tell keys apart")
	}
}

func TestRestoreRefusesAnotherShopUnlessForced(t *testing.T) {
	ctx := context.Background()
	paris := testConfig(t, "paris", "key-paris")
	db := runningShop(t, paris)
	file := filepath.Join(t.TempDir(), "paris.backup")
	if _, err := Take(ctx, paris, file, "test"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	lyon := testConfig(t, "lyon", "key-lyon")
	_, err := Restore(ctx, RestoreOptions{Config: lyon, File: file})
	var oe *OtherShopError
	if !errors.As(err, &oe) {
		t.Fatalf("another shop's backup: %v, want *OtherShopError", err)
	}
	if _, err := os.Stat(lyon.DatabasePath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore touched the data folder: %v", err)
	}
	r, err := Restore(ctx, RestoreOptions{Config: lyon, File: file, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Backup.Identity.ShopID != "paris" {
		t.Errorf("restored %+v", r.Backup)
	}
}

func TestRestoreWhileRunningSaysStopTheService(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "lyon", "key")
	db := runningShop(t, cfg)
	defer db.Close()
	file := filepath.Join(t.TempDir(), "b")
	if _, err := Take(ctx, cfg, file, "test"); err != nil {
		t.Fatal(err)
	}
	locked := false
	_, err := Restore(ctx, RestoreOptions{Config: cfg, File: file, LockDataDir: func(string) (func(), error) {
		locked = true
		return func() {}, nil
	}})
	if !errors.Is(err, storage.ErrInUse) || !locked {
		t.Fatalf("restore under a running server: %v (data_dir lock taken: %v)", err, locked)
	}
}

func TestScheduledBackupsKeepTheNewest(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "lyon", "key")
	cfg.Backup.Dir = t.TempDir()
	cfg.Backup.Keep = 3
	db := runningShop(t, cfg)
	defer db.Close()
	s, err := NewScheduler(cfg, db, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clock := testenv.NewClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	s.now = clock.Now
	// A backup cut short by a crash, and a file that is not ours.
	leftover := filepath.Join(cfg.Backup.Dir, ".storeedge-box-1-20260228T030000Z.backup"+storage.TempMark+"abc")
	other := filepath.Join(cfg.Backup.Dir, "notes.txt")
	os.WriteFile(leftover, []byte("half"), 0o600)
	os.WriteFile(other, []byte("keep me"), 0o600)
	made := backupEvery(t, s, clock, 5, 24*time.Hour)
	names, err := s.list()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, made[2:]) {
		t.Fatalf("kept %q, want the newest three %q", names, made[2:])
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover of a cut backup is still there")
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not a backup was removed: %v", err)
	}
	if _, err := storage.InspectBackup(ctx, filepath.Join(cfg.Backup.Dir, made[4])); err != nil {
		t.Errorf("newest scheduled backup: %v", err)
	}
}
