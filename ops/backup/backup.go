package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/dirlock"
	"github.com/storeedge/storeedge/storage"
)

// backupSettled, when set (by tests), is called with the finished backup once it has its owner,
// before it takes its name.
var backupSettled func(tmp string)

// Take writes a consistent copy of cfg's database to file while the server may be running, and
// returns what the copy holds.
func Take(ctx context.Context, cfg config.Config, file, version string) (storage.BackupInfo, error) {
	db := cfg.DatabasePath()
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		return storage.BackupInfo{}, fmt.Errorf("backup: no database at %s (data_dir): nothing to back up yet", db)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return storage.BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	// Run as root, the file goes to the folder's owner before it takes its name (install.md).
	settle := func(tmp string) {
		matchOwner(filepath.Dir(abs), tmp)
		if backupSettled != nil {
			backupSettled(tmp)
		}
	}
	if err := storage.Backup(ctx, db, abs, storage.Manifest{Version: version, Reason: "storeedge backup"}, settle); err != nil {
		return storage.BackupInfo{}, err
	}
	return storage.InspectBackup(ctx, abs)
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	Config config.Config // the configuration of the server the backup goes into
	File   string        // the backup
	// Force restores a backup that CheckShop says is of another shop.
	Force bool
	// LockDataDir, when set, takes the lock the server holds on its data folder while it runs
	// and returns its release; restore fails if it cannot have it. Without it, SQLite's exclusive
	// lock on the database is what tells a running server (storage.ErrInUse).
	LockDataDir func(dir string) (release func(), err error)
}

// Restored is what Restore did.
type Restored struct {
	Backup storage.BackupInfo
	storage.RestoreResult
	// Unchecked says that the backup's shop could not be compared with this server's.
	Unchecked bool
}

// Restore puts the backup back as the database of the configured server, which must be stopped.
func Restore(ctx context.Context, o RestoreOptions) (Restored, error) {
	var r Restored
	info, err := storage.InspectBackup(ctx, o.File)
	if err != nil {
		return r, err
	}
	r.Backup = info
	here := IdentityOf(o.Config)
	if err := CheckShop(info.Identity, here); err != nil && !o.Force {
		return r, err
	}
	r.Unchecked = (info.Identity.ShopID == "" || here.ShopID == "") && (info.Identity.StoreKey == "" || here.StoreKey == "")
	if o.LockDataDir != nil {
		release, err := o.LockDataDir(o.Config.DataDir)
		if err != nil {
			return r, fmt.Errorf("restore: %w", err)
		}
		defer release()
	}
	db := o.Config.DatabasePath()
	res, err := storage.Restore(ctx, o.File, db)
	r.RestoreResult = res
	// Run as root, restore writes files the service's account must own: the database's, the ids
	// file it marks unclean, the replaced database kept and the data folder's lock.
	matchOwner(o.Config.DataDir, append(storage.Files(db), res.Previous, res.Damaged, filepath.Join(o.Config.DataDir, dirlock.FileName))...)
	if errors.Is(err, storage.ErrInUse) {
		return r, fmt.Errorf("restore: %w; on Linux: systemctl stop storeedge, on Windows: storeedge service stop", err)
	}
	return r, err
}
