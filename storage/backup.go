package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"

	"github.com/storeedge/storeedge/internal/durable"
)

// A backup is a SQLite file: a page-by-page copy of the database taken by SQLite's online backup
// in one read transaction (so it is consistent while the server writes), switched to a rollback
// journal so that it is one self-contained file, checked, and given a backup_manifest table. It
// is written under a temporary name and renamed into place once complete and synced: a backup
// cut short (killed, disk full) never leaves a file under the name asked for.

// Manifest describes a backup file.
type Manifest struct {
	CreatedAt time.Time
	Version   string // storeedge version that made it
	Reason    string // why it was made, e.g. "storeedge backup", "scheduled"
}

// Identity says which shop and server a database belongs to (table identity).
type Identity struct {
	ServerID string
	ShopID   string
	ShopName string
	// StoreKey is a fingerprint of the store key (never the key), see migrations/0007_identity.sql.
	StoreKey string
}

// BackupInfo is what a backup file holds, as InspectBackup reads it.
type BackupInfo struct {
	Manifest Manifest
	Identity Identity
	Schema   int   // schema version of the database in it
	Devices  int64 // paired devices, not revoked
	Orders   int64
	Pending  int64 // order events the cloud has not acknowledged yet (outbox)
	Size     int64 // bytes
}

// Errors of backup and restore.
var (
	// ErrInUse: the database is open in another process (the service runs): restore needs it stopped.
	ErrInUse = errors.New("storage: the database is in use by a running storeedge: stop the service first")
	// ErrNotBackup: the file is not a storeedge database.
	ErrNotBackup = errors.New("storage: not a storeedge backup or database")
)

// RecordIdentity stores the fields of id that are set; fields left empty keep what was stored.
func (db *DB) RecordIdentity(ctx context.Context, id Identity) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		for k, v := range id.fields() {
			if v == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO identity(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: record identity: %w", err)
	}
	return nil
}

func (id Identity) fields() map[string]string {
	return map[string]string{"server_id": id.ServerID, "shop_id": id.ShopID, "shop_name": id.ShopName, "store_key_sha256": id.StoreKey}
}

// Backup writes a consistent copy of the database to dst while the server goes on (see above).
func (db *DB) Backup(ctx context.Context, dst string, m Manifest) error {
	conn, err := db.r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	defer conn.Close()
	if err := backupConn(ctx, conn, dst, m, nil); err != nil {
		return fmt.Errorf("storage: backup to %s: %w", dst, err)
	}
	return nil
}

// Backup copies the database at src, which another process (the service) may be using, to dst.
// It only reads src: it neither migrates it nor waits for writers. settle, when set, is called
// with the finished copy's temporary file just before it takes dst's name (to give it its owner,
// say), so that dst never appears otherwise.
func Backup(ctx context.Context, src, dst string, m Manifest, settle func(tmp string)) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	if samePath(src, dst) {
		return fmt.Errorf("storage: backup: %s is the database itself; choose another file", dst)
	}
	r, err := sql.Open("sqlite", dsn(src, true))
	if err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	defer r.Close()
	conn, err := r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	defer conn.Close()
	if v, err := schemaVersionOf(ctx, conn); err != nil || v == 0 {
		return fmt.Errorf("storage: backup: %s: %w", src, errors.Join(ErrNotBackup, err))
	}
	if err := backupConn(ctx, conn, dst, m, settle); err != nil {
		return fmt.Errorf("storage: backup to %s: %w", dst, err)
	}
	return nil
}

// backupStarted, when set (by tests), is called with the temporary file before the copy into it.
var backupStarted func(tmp string)

// backupConn copies the database of conn to dst through a temporary file.
func backupConn(ctx context.Context, conn *sql.Conn, dst string, m Manifest, settle func(tmp string)) (err error) {
	if fi, err := os.Stat(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("the folder: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder", filepath.Dir(dst))
	}
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a folder: name the backup file, such as %s", dst, filepath.Join(dst, "storeedge.backup"))
	}
	tmp, err := tempName(dst)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			removeDB(tmp)
		}
	}()
	// A backup holds the shop's orders, with customers' names and phone numbers: readable by its
	// owner only, whatever the umask of whoever makes it (install.md), from its first byte.
	// SQLite keeps the mode of the file it finds, and gives its journal the same.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := errors.Join(f.Chmod(0o600), f.Close()); err != nil {
		return err
	}
	if backupStarted != nil {
		backupStarted(tmp)
	}
	err = conn.Raw(func(dc any) error {
		b, ok := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		})
		if !ok {
			return errors.New("the SQLite driver has no online backup")
		}
		bk, err := b.NewBackup(fileURI(tmp))
		if err != nil {
			return err
		}
		return copyAll(bk)
	})
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if err := finishBackup(ctx, tmp, m); err != nil {
		return err
	}
	if settle != nil {
		settle(tmp)
	}
	return durable.Rename(tmp, dst)
}

// finishBackup makes the copy at path one self-contained file, writes its manifest, checks it
// and syncs it to disk.
func finishBackup(ctx context.Context, path string, m Manifest) error {
	c, err := sql.Open("sqlite", fileURI(path))
	if err != nil {
		return err
	}
	c.SetMaxOpenConns(1)
	defer c.Close()
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now()
	}
	stmts := []string{
		`PRAGMA journal_mode = DELETE`,
		`CREATE TABLE IF NOT EXISTS backup_manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`,
		`DELETE FROM backup_manifest`,
	}
	for _, s := range stmts {
		if _, err := c.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
	}
	for k, v := range map[string]string{"format": "1", "created_at": m.CreatedAt.UTC().Format(time.RFC3339), "storeedge_version": m.Version, "reason": m.Reason} {
		if _, err := c.ExecContext(ctx, `INSERT INTO backup_manifest(key, value) VALUES (?, ?)`, k, v); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
	}
	if err := quickCheck(ctx, c); err != nil {
		return err
	}
	if err := c.Close(); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// InspectBackup checks the backup file at path in full (PRAGMA integrity_check) and says what
// it holds. A copy of a storeedge database without a manifest is accepted; anything else is
// ErrNotBackup; an empty file is said to be so.
func InspectBackup(ctx context.Context, path string) (BackupInfo, error) {
	var info BackupInfo
	fi, err := os.Stat(path)
	if err != nil {
		return info, fmt.Errorf("storage: backup: %w", err)
	}
	if fi.IsDir() {
		return info, fmt.Errorf("storage: backup: %s is a folder, want a backup file", path)
	}
	info.Size = fi.Size()
	if info.Size == 0 {
		return info, fmt.Errorf("storage: backup %s is empty (0 bytes): a copy that was cut short before anything was written, or not a backup", path)
	}
	// SQLite says "unable to open database file" whatever the cause: the system's reason is
	// clearer (a file the account may not read, say).
	f, err := os.Open(path)
	if err != nil {
		return info, fmt.Errorf("storage: backup: %w", err)
	}
	f.Close()
	c, err := sql.Open("sqlite", fileURI(path)+"?mode=ro")
	if err != nil {
		return info, fmt.Errorf("storage: backup %s: %w", path, err)
	}
	defer c.Close()
	// What is read below is read from tables: a view of the same name (one that never ends, a
	// recursive one, say) would hold the restore for ever.
	var view string
	switch err := c.QueryRowContext(ctx, `SELECT name FROM sqlite_master WHERE type != 'table' AND lower(name) IN
		('schema_migrations', 'backup_manifest', 'identity', 'devices', 'orders', 'outbox') LIMIT 1`).Scan(&view); {
	case err == nil:
		return info, fmt.Errorf("storage: backup %s: %w (%s is not a table)", path, ErrNotBackup, strings.ToLower(view))
	case sqliteCode(err) == 11:
		return info, fmt.Errorf("storage: backup %s (%d bytes) is damaged or cut short: %w", path, info.Size, err)
	case !errors.Is(err, sql.ErrNoRows):
		return info, fmt.Errorf("storage: backup %s: %w", path, errors.Join(ErrNotBackup, err))
	}
	if info.Schema, err = schemaVersionOf(ctx, c); sqliteCode(err) == 11 {
		return info, fmt.Errorf("storage: backup %s (%d bytes) is damaged or cut short: %w", path, info.Size, err)
	} else if err != nil || info.Schema <= 0 {
		return info, fmt.Errorf("storage: backup %s: %w", path, errors.Join(ErrNotBackup, err))
	}
	if err := integrityCheck(ctx, c, "integrity_check"); err != nil {
		return info, fmt.Errorf("storage: backup %s is damaged: %w", path, err)
	}
	kv, err := keyValues(ctx, c, "backup_manifest", "storeedge_version", "reason", "created_at")
	if err != nil {
		return info, fmt.Errorf("storage: backup %s: %w", path, err)
	}
	info.Manifest = Manifest{Version: kv["storeedge_version"], Reason: kv["reason"]}
	info.Manifest.CreatedAt, _ = time.Parse(time.RFC3339, kv["created_at"])
	if kv, err = keyValues(ctx, c, "identity", "server_id", "shop_id", "shop_name", "store_key_sha256"); err != nil {
		return info, fmt.Errorf("storage: backup %s: %w", path, err)
	}
	info.Identity = Identity{ServerID: kv["server_id"], ShopID: kv["shop_id"], ShopName: kv["shop_name"], StoreKey: kv["store_key_sha256"]}
	counts := []struct {
		n *int64
		q string
	}{
		{&info.Devices, `SELECT count(*) FROM devices WHERE revoked_at = 0`},
		{&info.Orders, `SELECT count(*) FROM orders`},
		{&info.Pending, `SELECT count(*) FROM outbox WHERE state = 'pending'`},
	}
	for _, q := range counts {
		if err := c.QueryRowContext(ctx, q.q).Scan(q.n); err != nil && !noSuchTable(err) {
			return info, fmt.Errorf("storage: backup %s: %w", path, err)
		}
	}
	return info, nil
}

// maxBackupValue bounds what is read of a value of a backup's key-value tables, in characters: a
// backup is a file from outside, and these values are a version, a time, names and a hash.
const maxBackupValue = 1024

// keyValues reads the given keys of a key-value table, each value cut to maxBackupValue; a
// table that does not exist reads as empty.
func keyValues(ctx context.Context, c *sql.DB, table string, keys ...string) (map[string]string, error) {
	out := map[string]string{}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := c.QueryContext(ctx, `SELECT key, coalesce(substr(value, 1, `+strconv.Itoa(maxBackupValue)+`), '') FROM `+table+
		` WHERE key IN (`+strings.TrimSuffix(strings.Repeat("?,", len(keys)), ",")+`)`, args...)
	if noSuchTable(err) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// RestoreResult says what Restore did besides restoring.
type RestoreResult struct {
	// Previous is where the database that was replaced was kept, a backup that restore accepts
	// ("" when there was none).
	Previous string
	// Damaged is where a database SQLite could not read was moved aside ("" when none was).
	Damaged string
	// Revoked lists the devices revoked in the replaced database that the backup had as
	// paired: they stay revoked (a restore never gives a stolen device its credential back).
	Revoked []string
	// RevocationsUnknown: the backup pairs devices, and the replaced database could not tell
	// which were revoked after it was made, having none (a new machine, started or not) or
	// being unread.
	RevocationsUnknown bool
}

// Restore replaces the database at dbPath with the backup at backupPath. It takes SQLite's
// exclusive lock on the database first, so it fails with ErrInUse while a server has it open,
// and no server can open it until the restore is over. The replaced database is kept as a backup
// at dbPath + ".before-restore-<UTC time>". The copy into place is one SQLite transaction: cut short, the
// database stays as it was. The backup's schema may be older than this program's: the server
// migrates it at its next start.
func Restore(ctx context.Context, backupPath, dbPath string) (res RestoreResult, err error) {
	info, err := InspectBackup(ctx, backupPath)
	if err != nil {
		return res, err
	}
	if latest := SchemaVersion(); info.Schema > latest {
		return res, &SchemaError{Path: backupPath, Database: info.Schema, Program: latest, Backup: true}
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o750); err != nil {
		return res, fmt.Errorf("storage: restore: %w", err)
	}
	if same, err := sameFile(backupPath, dbPath); err != nil {
		return res, fmt.Errorf("storage: restore: %w", err)
	} else if same {
		return res, fmt.Errorf("storage: restore: %s is the database itself, not a backup of it: name a backup file", backupPath)
	}
	var c *sql.DB
	var conn *sql.Conn
	closeDB := func() {
		if conn != nil {
			conn.Close()
			c.Close()
			c, conn = nil, nil
		}
	}
	defer closeDB()
	copied := false // the backup is in place of the database
	defer func() {  // before closeDB
		switch {
		case err == nil:
		case copied && res.Previous != "":
			err = fmt.Errorf("%w (the database it replaced is kept as %s)", err, res.Previous)
		case copied && res.Damaged != "":
			err = fmt.Errorf("%w (the damaged database it replaced was moved aside to %s)", err, res.Damaged)
		case res.Damaged != "":
			// Failed before the backup was in place: the damaged database goes back where it
			// was, instead of the empty one opened in its place.
			closeDB()
			removeDB(dbPath)
			if perr := renameDB(res.Damaged, dbPath); perr != nil {
				err = fmt.Errorf("%w (the damaged database was moved aside to %s and could not be put back: %v)", err, res.Damaged, perr)
			} else {
				res.Damaged = ""
			}
		}
	}()
	c, conn, err = lockExclusive(ctx, dbPath)
	if isDamaged(err) {
		if res.Damaged, err = moveAside(dbPath); err != nil {
			return res, fmt.Errorf("storage: restore: move the damaged database aside: %w", err)
		}
		c, conn, err = lockExclusive(ctx, dbPath)
	}
	if err != nil {
		return res, err
	}
	var replaced replacedDB
	if v, err := schemaVersionOf(ctx, conn); err == nil && v > 0 {
		res.Previous = dbPath + ".before-restore-" + time.Now().UTC().Format("20060102T150405.000Z")
		replaced, err = readReplaced(ctx, conn, res.Previous)
		if err != nil {
			removeDB(res.Previous)
			res.Previous = ""
		}
		if unreadable(err) {
			// Damaged further in than its first pages (a page SQLite cannot read, an index that
			// does not match its table): it cannot be copied or read, and is moved aside as one
			// SQLite cannot open, what it knew of revocations unknown.
			closeDB()
			replaced = replacedDB{}
			if res.Damaged, err = moveAside(dbPath); err != nil {
				return res, fmt.Errorf("storage: restore: move the damaged database aside: %w", err)
			}
			if c, conn, err = lockExclusive(ctx, dbPath); err != nil {
				return res, err
			}
		} else if err != nil {
			return res, err
		}
	}
	if err := copyInto(conn, backupPath); err != nil {
		// The database is as it was: the copy kept of it would only take the disk's space.
		if res.Previous != "" {
			removeDB(res.Previous)
			res.Previous = ""
		}
		return res, fmt.Errorf("storage: restore %s: %w", backupPath, err)
	}
	copied = true // from here on an error names what was kept of the database replaced
	if err := settleRestored(ctx, conn); err != nil {
		return res, fmt.Errorf("storage: restore %s: %w", backupPath, err)
	}
	lastEvent, revoked, knewDevices := replaced.lastEvent, replaced.revoked, replaced.knewDevices
	if res.Revoked, err = keepRevoked(ctx, conn, revoked); err != nil {
		return res, fmt.Errorf("storage: restore %s: %w", backupPath, err)
	}
	if !knewDevices { // nothing to say of a backup that pairs no device (or only revoked ones) either
		if res.RevocationsUnknown, err = holdsDevices(ctx, conn, true); err != nil {
			return res, fmt.Errorf("storage: restore %s: %w", backupPath, err)
		}
	}
	if err := raiseEventIDs(ctx, conn, lastEvent); err != nil {
		return res, fmt.Errorf("storage: restore %s: %w", backupPath, err)
	}
	// The support requests taken after the backup are not among those it remembers: a request
	// issued before now is refused from here on (RememberSupportRequest), as it may be one.
	if _, err := conn.ExecContext(ctx, `INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)`, metaRestoredAt, time.Now().UnixMilli()); err != nil {
		return res, fmt.Errorf("storage: restore %s: %w", backupPath, err)
	}
	// The order numbers and export batch ids the replaced database gave out after the backup
	// are not given again either: the next Open raises the counters to their marks, and makes
	// them jump when the backup was made beside other marks (on another machine; ids.go).
	if err := MarkIDsUnclean(dbPath); err != nil {
		return res, fmt.Errorf("storage: restore %s: %w", backupPath, err)
	}
	return res, nil
}

// replacedDB is what a restore keeps of the database it replaces.
type replacedDB struct {
	lastEvent   int64            // the highest event id it gave out
	revoked     map[string]int64 // its revoked devices, by id: when each was revoked
	knewDevices bool             // it paired devices: it knows their revocations
}

// readReplaced copies the database of conn to previous, as a backup, and reads what a restore
// keeps of it.
func readReplaced(ctx context.Context, conn *sql.Conn, previous string) (replacedDB, error) {
	var r replacedDB
	var err error
	if err = backupConn(ctx, conn, previous, Manifest{Reason: "kept before a restore"}, nil); err != nil {
		return r, fmt.Errorf("storage: restore: keep the current database: %w", err)
	}
	if r.lastEvent, err = eventIDsGiven(ctx, conn); err != nil {
		return r, fmt.Errorf("storage: restore: read the replaced database's events: %w", err)
	}
	if r.revoked, err = revokedDevices(ctx, conn); err != nil {
		return r, fmt.Errorf("storage: restore: read the replaced database's devices: %w", err)
	}
	if r.knewDevices, err = holdsDevices(ctx, conn, false); err != nil {
		return r, fmt.Errorf("storage: restore: read the replaced database's devices: %w", err)
	}
	return r, nil
}

// sameFile tells whether a and b name the same file; false when b does not exist.
func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if os.IsNotExist(err) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// revokedDevices lists the database's revoked devices with when each was revoked; none before
// the devices came (schema 4).
func revokedDevices(ctx context.Context, conn *sql.Conn) (map[string]int64, error) {
	if has, err := hasTable(ctx, conn, "devices"); err != nil || !has {
		return nil, err
	}
	return keyedInts(conn.QueryContext(ctx, `SELECT id, revoked_at FROM devices WHERE revoked_at != 0`))
}

// holdsDevices tells whether the database ever paired a device, or with paired, whether one
// is paired still (not revoked).
func holdsDevices(ctx context.Context, conn *sql.Conn, paired bool) (bool, error) {
	if has, err := hasTable(ctx, conn, "devices"); err != nil || !has {
		return false, err
	}
	q := `SELECT EXISTS (SELECT 1 FROM devices)`
	if paired {
		q = `SELECT EXISTS (SELECT 1 FROM devices WHERE revoked_at = 0)`
	}
	var any bool
	err := conn.QueryRowContext(ctx, q).Scan(&any)
	return any, err
}

// keepRevoked revokes again in the restored database the devices revoked in the one it
// replaced, failing their open commands as RevokeDevice does; it returns those it revoked (the
// backup had them paired), sorted.
func keepRevoked(ctx context.Context, conn *sql.Conn, revoked map[string]int64) ([]string, error) {
	if len(revoked) == 0 {
		return nil, nil
	}
	if has, err := hasTable(ctx, conn, "devices"); err != nil || !has {
		return nil, err // a backup from before the devices: none of them is paired in it
	}
	var again []string
	for id, at := range revoked {
		res, err := conn.ExecContext(ctx, `UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, at, id)
		if err != nil {
			return nil, fmt.Errorf("keep device %s revoked: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue
		}
		again = append(again, id)
		if _, err := conn.ExecContext(ctx, `UPDATE device_commands SET state = 'failed', done_at = ?, reason = ? WHERE device_id = ? AND state IN ('queued', 'sent')`,
			at, reasonRevoked, id); err != nil {
			return nil, fmt.Errorf("keep device %s revoked: %w", id, err)
		}
	}
	slices.Sort(again)
	return again, nil
}

// hasTable tells whether the database has the table name.
func hasTable(ctx context.Context, conn *sql.Conn, name string) (bool, error) {
	var has bool
	err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND lower(name) = lower(?))`, name).Scan(&has)
	return has, err
}

// eventIDsGiven is the highest event id the database has given out, 0 when none: devices may
// hold any id up to it as the position of their event stream.
func eventIDsGiven(ctx context.Context, conn *sql.Conn) (int64, error) {
	var n sql.NullInt64
	err := conn.QueryRowContext(ctx, `SELECT max(
		(SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events'),
		(SELECT coalesce(max(id), 0) FROM events))`).Scan(&n)
	return n.Int64, err
}

// raiseEventIDs makes the restored database give its new events ids above last, the highest the
// replaced one gave out: a device that resumes its stream from an id of the replaced log then
// gets every event made after the restore, those made before it reconnects included, where ids
// given again would fall at or below its position and be skipped (openapi.yaml, events).
func raiseEventIDs(ctx context.Context, conn *sql.Conn, last int64) error {
	if last == 0 {
		return nil
	}
	// A backup older than the event log (schema 1) has no sqlite_sequence: its log starts with
	// the migration that makes it, and there is nothing to carry the ids into.
	if has, err := hasTable(ctx, conn, "sqlite_sequence"); err != nil || !has {
		return err
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO sqlite_sequence(name, seq) SELECT 'events', 0
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')`); err != nil {
		return fmt.Errorf("carry the event ids over: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'events'`, last); err != nil {
		return fmt.Errorf("carry the event ids over: %w", err)
	}
	return nil
}

// lockExclusive opens the database at path in exclusive locking mode and takes the write lock,
// which it then holds until the connection closes.
func lockExclusive(ctx context.Context, path string) (*sql.DB, *sql.Conn, error) {
	c, err := sql.Open("sqlite", fileURI(path)+"?_pragma=busy_timeout(0)&_pragma=locking_mode(EXCLUSIVE)")
	if err != nil {
		return nil, nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	c.SetMaxOpenConns(1)
	conn, err := c.Conn(ctx)
	if err == nil {
		_, err = conn.ExecContext(ctx, `BEGIN IMMEDIATE`)
		if err == nil {
			_, err = conn.ExecContext(ctx, `COMMIT`)
		}
		if err == nil {
			// The write lock is held once the schema is read: read it now.
			_, err = schemaVersionOf(ctx, conn)
		}
	}
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		c.Close()
		if sqliteCode(err) == 5 || sqliteCode(err) == 6 { // SQLITE_BUSY, SQLITE_LOCKED
			return nil, nil, fmt.Errorf("%w (%s)", ErrInUse, path)
		}
		return nil, nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	return c, conn, nil
}

// copyAll runs the SQLite online backup bk to its end and finishes it. Finish repeats the error
// of a step that failed: it is said once.
func copyAll(bk *sqlite.Backup) error {
	if _, err := bk.Step(-1); err != nil {
		bk.Finish()
		return err
	}
	return bk.Finish()
}

// copyInto copies the backup at src over the database of conn, in one transaction: when it
// fails, the database is as it was.
func copyInto(conn *sql.Conn, src string) error {
	return conn.Raw(func(dc any) error {
		r, ok := dc.(interface {
			NewRestore(string) (*sqlite.Backup, error)
		})
		if !ok {
			return errors.New("the SQLite driver has no online backup")
		}
		bk, err := r.NewRestore(fileURI(src) + "?mode=ro")
		if err != nil {
			return err
		}
		return copyAll(bk)
	})
}

// settleRestored drops the manifest of the backup copied over the database of conn, puts the
// database in WAL mode and checks it.
func settleRestored(ctx context.Context, conn *sql.Conn) error {
	for _, s := range []string{`DROP TABLE IF EXISTS backup_manifest`, `PRAGMA journal_mode = WAL`} {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	if err := markStockImportsRestored(ctx, conn); err != nil {
		return err
	}
	return integrityCheck(ctx, conn, "quick_check")
}

// QuickCheck runs PRAGMA quick_check on the database at path without migrating it or writing
// to it, and returns its schema version. The server may be running.
func QuickCheck(ctx context.Context, path string) (schema int, err error) {
	c, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if schema, err = schemaVersionOf(ctx, c); err != nil {
		return 0, fmt.Errorf("storage: %s: %w", path, err)
	}
	return schema, quickCheck(ctx, c)
}

func quickCheck(ctx context.Context, q queryer) error {
	return integrityCheck(ctx, q, "quick_check")
}

type queryer interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

// integrityCheck runs PRAGMA integrity_check or quick_check and returns nil when it says ok.
func integrityCheck(ctx context.Context, q queryer, pragma string) error {
	rows, err := q.QueryContext(ctx, `PRAGMA `+pragma)
	if err != nil {
		return fmt.Errorf("%s: %w", pragma, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("%s: %w", pragma, err)
		}
		if s != "ok" && len(problems) < 10 {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", pragma, err)
	}
	if len(problems) > 0 {
		return &checkError{pragma: pragma, problems: problems}
	}
	return nil
}

// checkError is what PRAGMA integrity_check or quick_check found wrong in a database.
type checkError struct {
	pragma   string
	problems []string // the first 10
}

func (e *checkError) Error() string { return e.pragma + ": " + strings.Join(e.problems, "; ") }

// sqliteCode is the primary SQLite result code of err, or 0.
func sqliteCode(err error) int { return sqliteExtendedCode(err) & 0xff }

// sqliteExtendedCode is the extended SQLite result code of err (the driver turns them on), or 0.
func sqliteExtendedCode(err error) int {
	var e interface{ Code() int }
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// isDamaged tells an error of a file SQLite cannot read as a database (SQLITE_CORRUPT,
// SQLITE_NOTADB).
func isDamaged(err error) bool {
	c := sqliteCode(err)
	return c == 11 || c == 26
}

// unreadable tells an error of a database that is damaged, as SQLite says when reading it or
// as its check finds.
func unreadable(err error) bool {
	var ce *checkError
	return isDamaged(err) || errors.As(err, &ce)
}

func noSuchTable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such table")
}

// moveAside renames a damaged database and its WAL files to path.damaged-<time>.
func moveAside(path string) (string, error) {
	aside := path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
	if err := renameDB(path, aside); err != nil {
		return "", err
	}
	return aside, nil
}

// renameDB renames a database file and its WAL files from from to to, all or none: a rename that
// fails puts back those done before it, so that no WAL is left beside another database.
func renameDB(from, to string) error {
	var done []string
	for _, suffix := range []string{"", "-wal", "-shm"} {
		err := os.Rename(from+suffix, to+suffix)
		if err == nil {
			done = append(done, suffix)
		} else if !os.IsNotExist(err) {
			for _, s := range done {
				os.Rename(to+s, from+s)
			}
			return err
		}
	}
	return nil
}

// removeDB removes a database file and its journals.
func removeDB(path string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

// tempName is a name beside dst for writing it, recognisable as a leftover (IsTemp).
func tempName(dst string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+TempMark+hex.EncodeToString(b[:])), nil
}

// TempMark is in the name of a backup being written; a file with it whose writer is gone is a
// leftover of a backup cut short and may be removed.
const TempMark = ".tmp-"

// fileURI is path as an SQLite URI, with the characters that would end the path escaped. A
// relative path is made absolute first: "file://" takes what follows for a host.
func fileURI(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	p := filepath.ToSlash(path)
	if runtime.GOOS == "windows" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return "file://" + (&url.URL{Path: p}).EscapedPath()
}

func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	if runtime.GOOS == "windows" {
		return strings.EqualFold(aa, bb)
	}
	return aa == bb
}
