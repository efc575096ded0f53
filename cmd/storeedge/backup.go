package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/storeedge/storeedge/ops/backup"
	"github.com/storeedge/storeedge/storage"
)

const backupUsage = `Usage: storeedge backup [--config PATH] [--set KEY=VALUE ...] FILE

Writes a consistent copy of the database of data_dir to FILE (one SQLite file), while the
service runs: devices, pairings, orders and what the cloud has not acknowledged yet, the catalog.
FILE appears only once the copy is complete and checked. Keep the configuration file with it:
a backup holds no configuration.
`

// cmdBackup is "storeedge backup FILE".
func cmdBackup(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	// The copy talks to no cloud: the store key may be missing (kept in the service's environment).
	cfg, files, err := loadConfigArgs("backup", backupUsage, args, env, stderr, nil, 1, "cloud.store_key")
	if err != nil {
		return err
	}
	start := time.Now()
	info, err := backup.Take(ctx, cfg, files[0], buildVersion())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup written to %s in %s\n", files[0], time.Since(start).Round(time.Millisecond))
	printBackupInfo(stdout, info)
	return nil
}

const restoreUsage = `Usage: storeedge restore [--config PATH] [--set KEY=VALUE ...] [--force] FILE

Puts the backup FILE back as the database of data_dir. Stop the service first (Linux: systemctl
stop storeedge; Windows: storeedge service stop): a running server is detected and the restore
refused. The database it replaces is kept beside it (storeedge.db.before-restore-<time>), a
backup that this command accepts. A backup of another shop (another shop.id, or made with another
store key) is refused unless --force. Paired devices keep working; orders the cloud had not
acknowledged when the backup was made are sent again (the cloud recognises those it has).
What happened after the backup was made is lost.
`

// cmdRestore is "storeedge restore FILE".
func cmdRestore(ctx context.Context, args, env []string, stdout, stderr io.Writer) error {
	var force bool
	cfg, files, err := loadConfigArgs("restore", restoreUsage, args, env, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "restore a backup of another shop")
	}, 1)
	if err != nil {
		return err
	}
	r, err := backup.Restore(ctx, backup.RestoreOptions{Config: cfg, File: files[0], Force: force, LockDataDir: lockForRestore})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s\n", files[0], cfg.DatabasePath())
	printBackupInfo(stdout, r.Backup)
	if r.Unchecked {
		fmt.Fprintln(stdout, "note: the backup or this configuration does not say which shop it is (shop.id, store key): it could not be checked")
	}
	if len(r.Revoked) > 0 {
		fmt.Fprintf(stdout, "devices revoked since the backup stay revoked: %s\n", strings.Join(r.Revoked, ", "))
	}
	if r.Previous != "" {
		fmt.Fprintf(stdout, "the database it replaced is kept as %s\n", r.Previous)
	}
	if r.RevocationsUnknown {
		fmt.Fprintln(stdout, "warning: the database replaced held no devices (a new machine) or none could be read, so the devices revoked after the backup was made are not known: they are paired again; revoke them again (GET /api/v1/admin/devices lists the devices)")
	}
	if r.Damaged != "" {
		fmt.Fprintf(stdout, "the database it replaced could not be read; it was moved aside to %s\n", r.Damaged)
	}
	if id := r.Backup.Identity.ServerID; id != "" && id != cfg.ServerID {
		fmt.Fprintf(stdout, "warning: the backup is of server_id %q, this configuration gives %q: devices find the server by its id; set server_id: %q to keep them finding it\n", id, cfg.ServerID, id)
	}
	if v := storage.SchemaVersion(); r.Backup.Schema < v {
		fmt.Fprintf(stdout, "the backup's database (schema %d) is brought up to this version's (schema %d) when the service starts\n", r.Backup.Schema, v)
	}
	fmt.Fprintln(stdout, "start the service again: systemctl start storeedge (Linux) or storeedge service start (Windows)")
	return nil
}

func printBackupInfo(w io.Writer, b storage.BackupInfo) {
	id := b.Identity
	shop := id.ShopName
	if id.ShopID != "" {
		shop = fmt.Sprintf("%s (shop.id %s)", shop, id.ShopID)
	}
	made := "unknown"
	if !b.Manifest.CreatedAt.IsZero() {
		made = b.Manifest.CreatedAt.Local().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "  shop:      %s\n  server_id: %s\n  made:      %s by storeedge %s (schema %d), %d bytes\n  holds:     %d paired devices, %d orders, %d order events not yet acknowledged by the cloud\n",
		dash(shop), dash(id.ServerID), made, dash(b.Manifest.Version), b.Schema, b.Size, b.Devices, b.Orders, b.Pending)
}

// lockForRestore keeps a server off data_dir while a restore writes its database, and names the
// one running, if any.
func lockForRestore(dir string) (func(), error) {
	l, err := lockDataDir(dir, "stop the service first (Linux: systemctl stop storeedge; Windows: storeedge service stop)")
	if err != nil {
		return nil, err
	}
	return func() { l.Release() }, nil
}
