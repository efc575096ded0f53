package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

// shopDB is a database with what a restore must keep: a paired device, orders not uploaded
// yet, a synced catalog and the shop's identity.
func shopDB(t *testing.T, path string) *DB {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(time.Now().UnixMilli())
	if err := db.PairDevice(ctx, Device{ID: "dv_pos", Kind: "pos", Name: "till 1", PushPort: 8081, SecretHash: []byte("h"), PushKey: []byte("k"), PairedAt: now, PairedBy: PairedByEnrollment}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("dv_pos"), IdempotencyKey: fmt.Sprint("k", i), RequestHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	apply(t, db, cloudapi.Products, "c1", product("P1", 1, "Tea", "Drinks"), product("P2", 2, "Coffee", "Drinks"))
	if err := db.RecordIdentity(ctx, Identity{ServerID: "box-1", ShopID: "shop-lyon", ShopName: "Lyon", StoreKey: "abcd"}); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestBackupHoldsEverythingAndRestoresIt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "storeedge.db")
	db := shopDB(t, path)
	backup := filepath.Join(t.TempDir(), "shop.backup")
	// settle sees the finished copy beside the file, before the file has its name.
	settled := false
	settle := func(tmp string) {
		settled = true
		if _, err := os.Stat(backup); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("settle called once the backup has its name (%v)", err)
		}
		if filepath.Dir(tmp) != filepath.Dir(backup) {
			t.Errorf("settle given %s, not beside %s", tmp, backup)
		}
		if _, err := InspectBackup(ctx, tmp); err != nil {
			t.Errorf("settle given an unfinished copy: %v", err)
		}
	}
	if err := Backup(ctx, path, backup, Manifest{Version: "1.2.3", Reason: "test"}, settle); err != nil {
		t.Fatal(err)
	}
	if !settled {
		t.Error("settle was not called")
	}
	info, err := InspectBackup(ctx, backup)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{ServerID: "box-1", ShopID: "shop-lyon", ShopName: "Lyon", StoreKey: "abcd"}
	if info.Identity != want || info.Devices != 1 || info.Orders != 3 || info.Pending != 3 || info.Schema != SchemaVersion() || info.Manifest.Version != "1.2.3" {
		t.Fatalf("backup info %+v", info)
	}
	if _, err := os.Stat(backup + "-wal"); err == nil {
		t.Errorf("the backup left a -wal file beside it: it must be one self-contained file")
	}

	// The shop goes on, then the database is lost.
	apply(t, db, cloudapi.Products, "c2", product("P3", 3, "Cocoa", "Drinks"))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("this is not a database any more, the disk failed"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")

	res, err := Restore(ctx, backup, path)
	if err != nil {
		t.Fatal(err)
	}
	if res.Damaged == "" {
		t.Errorf("the unreadable database was not moved aside: %+v", res)
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if d, err := db.GetDevice(ctx, "dv_pos"); err != nil || d.Name != "till 1" {
		t.Errorf("paired device after restore: %+v %v", d, err)
	}
	if p, err := db.PendingOutbox(ctx, 100); err != nil || len(p) != 3 {
		t.Errorf("orders waiting for the cloud after restore: %d %v", len(p), err)
	}
	if _, err := db.Get(ctx, cloudapi.Products, "P3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a product synced after the backup is there: %v", err)
	}
	if err := db.IntegrityCheck(ctx); err != nil {
		t.Error(err)
	}
}

func TestRestoreRefusedWhileTheDatabaseIsOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := shopDB(t, path)
	defer db.Close()
	backup := backupOf(t, db)
	if _, err := Restore(ctx, backup, path); !errors.Is(err, ErrInUse) {
		t.Fatalf("restore over an open database: %v, want ErrInUse", err)
	}
	// The database is untouched and still writable.
	apply(t, db, cloudapi.Products, "c2", product("P3", 3, "Cocoa", "Drinks"))
}

// backedUpShop makes a shop's database (shopDB) and a backup of it; it returns the database's
// path, the open database and the backup's path.
func backedUpShop(t *testing.T) (path string, db *DB, backup string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "storeedge.db")
	db = shopDB(t, path)
	backup = backupOf(t, db)
	return path, db, backup
}

// backupOf backs db up to a new file, and returns its path.
func backupOf(t *testing.T, db *DB) string {
	t.Helper()
	backup := filepath.Join(t.TempDir(), "b")
	if err := db.Backup(context.Background(), backup, Manifest{}); err != nil {
		t.Fatal(err)
	}
	return backup
}

// backedUpNewShop opens a new database and backs it up, before anything is in it.
func backedUpNewShop(t *testing.T) (db *DB, backup string) {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "storeedge.db"))
	if err != nil {
		t.Fatal(err)
	}
	backup = backupOf(t, db)
	return db, backup
}

// ordersAfterBackup takes n orders on db, after its backup, and returns the last one's number and
// the last event id given out.
func ordersAfterBackup(t *testing.T, db *DB, n int) (number, event int64) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		o, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("dv_pos"), IdempotencyKey: fmt.Sprint("later", i), RequestHash: "h"})
		if err != nil {
			t.Fatal(err)
		}
		number = o.Number
	}
	event, err := db.LastEventID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return number, event
}

// openAndOrder opens the database at path and takes an order there.
func openAndOrder(t *testing.T, path, key string) (*DB, orders.Order) {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	o, _, err := db.CreateOrder(context.Background(), NewOrder{Order: lanOrder("dv_pos"), IdempotencyKey: key, RequestHash: "h"})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db, o
}

// newMachine returns the database path of a new machine, started once when started is true: an
// empty database there, and its marks in storeedge.ids.
func newMachine(t *testing.T, started bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	if started {
		fresh, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		fresh.Close()
	}
	return path
}

// wantJump fails the test unless the order o was numbered past last by the jump of a backup
// restored from another machine.
func wantJump(t *testing.T, o orders.Order, last int64) {
	t.Helper()
	if o.Number <= last+restoreJump*orderNumberBlock-orderNumberBlock {
		t.Fatalf("next order %d; the old machine gave %d, and the numbers did not jump past it", o.Number, last)
	}
}

func TestRestoreKeepsTheReplacedDatabase(t *testing.T) {
	ctx := context.Background()
	path, db, backup := backedUpShop(t)
	apply(t, db, cloudapi.Products, "c2", product("P3", 3, "Cocoa", "Drinks"))
	db.Close()
	res, err := Restore(ctx, backup, path)
	if err != nil {
		t.Fatal(err)
	}
	if res.Previous == "" {
		t.Fatal("no copy of the replaced database")
	}
	// The replaced database can be restored in turn: it has the product synced after the backup.
	if _, err := Restore(ctx, res.Previous, path); err != nil {
		t.Fatal(err)
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Get(ctx, cloudapi.Products, "P3"); err != nil {
		t.Errorf("undoing the restore: %v", err)
	}
}

// A backup taken while the server writes is one consistent moment: pages of ten products are
// applied whole, so a consistent copy holds a multiple of ten.
func TestBackupWhileWritingIsConsistent(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	writing := make(chan struct{})
	applied := make(chan struct{}, 1) // a page was applied since the last receive
	go func() {
		defer wg.Done()
		defer close(writing)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			var changes []cloudapi.Change
			for i := range 10 {
				id := fmt.Sprintf("P%d-%d", n, i)
				changes = append(changes, product(id, int64(n*10+i+1), "Name "+id, "Cat"))
			}
			if _, err := db.ApplyPage(ctx, Page{Collection: cloudapi.Products, Changes: changes, End: cloudapi.PageEnd{Cursor: fmt.Sprint(n), Count: 10}}); err != nil {
				t.Error(err)
				return
			}
			select {
			case applied <- struct{}{}:
			default:
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	last := int64(0)
	for i := range 5 {
		backup := filepath.Join(t.TempDir(), fmt.Sprint("b", i))
		if err := Backup(ctx, db.Path(), backup, Manifest{}, nil); err != nil {
			t.Fatal(err)
		}
		copyDB, err := Open(ctx, backup)
		if err != nil {
			t.Fatal(err)
		}
		n, err := copyDB.Count(ctx, cloudapi.Products)
		copyDB.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n%10 != 0 {
			t.Fatalf("backup %d holds %d products: a page was cut in two", i, n)
		}
		last = n
		// The next backup is taken once the writer has applied a page after this one, so every
		// backup but the first copies a database being written to.
		if i < 4 {
			select {
			case <-applied: // a page applied before the drain, perhaps before the backup
			default:
			}
			select {
			case <-applied:
			case <-writing:
				t.Fatal("the writer stopped")
			}
		}
	}
	if last == 0 {
		t.Fatal("the last backup holds no product: the writer never ran alongside")
	}
}

func TestUpgradeMigratesAnOlderDatabaseAndKeepsACopy(t *testing.T) {
	ctx := context.Background()
	all, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	older := all[:len(all)-1]
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db, err := openOlder(ctx, path, older)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CreateOrder(ctx, NewOrder{Order: lanOrder("pos-1"), IdempotencyKey: "k", RequestHash: "h"}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("a newer storeedge cannot open an older database: %v", err)
	}
	defer db.Close()
	if p, err := db.PendingOutbox(ctx, 10); err != nil || len(p) != 1 {
		t.Fatalf("the order did not survive the upgrade: %d %v", len(p), err)
	}
	if err := db.RecordIdentity(ctx, Identity{ServerID: "x"}); err != nil {
		t.Fatalf("the new schema is not in place: %v", err)
	}
	copyPath := UpgradeCopyPath(path, older[len(older)-1].version)
	info, err := InspectBackup(ctx, copyPath)
	if err != nil {
		t.Fatalf("no usable copy of the database before the upgrade: %v", err)
	}
	if info.Schema != older[len(older)-1].version || info.Orders != 1 {
		t.Fatalf("copy before the upgrade: %+v", info)
	}
	// The log says so, with where the copy is (shop IT learns it before an older storeedge refuses).
	if got := db.Upgraded(); !strings.Contains(got, copyPath) {
		t.Fatalf("Upgraded() = %q, want the copy's path", got)
	}
	db.Close()
	if db, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Upgraded(); got != "" {
		t.Fatalf("opened again at its schema: Upgraded() = %q", got)
	}
}

func TestOlderProgramRefusesANewerDatabase(t *testing.T) {
	ctx := context.Background()
	all, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "storeedge.db")
	older := all[:len(all)-1]
	db, err := openOlder(ctx, path, older)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(ctx, path); err != nil { // the newer program upgrades it
		t.Fatal(err)
	}
	db.Close()

	_, err = openOlder(ctx, path, older) // the older program again
	var se *SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("older program on a newer database: %v, want *SchemaError", err)
	}
	msg := err.Error()
	for _, want := range []string{"newer than this storeedge knows", "storeedge restore " + UpgradeCopyPath(path, older[len(older)-1].version)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	// Nothing was changed: the newer program still opens it.
	if db, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func TestRestoreRefusesABackupOfANewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := shopDB(t, path)
	if _, err := db.w.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (?, 0)`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	backup := backupOf(t, db)
	db.Close()
	target := filepath.Join(t.TempDir(), "storeedge.db")
	var se *SchemaError
	if _, err := Restore(ctx, backup, target); !errors.As(err, &se) || !strings.Contains(err.Error(), "the backup "+backup+" has schema version") {
		t.Fatalf("restore of a newer backup: %v, want *SchemaError naming the backup", err)
	}
}

// A backup is a file from outside: what is read of its manifest and identity is bounded, whatever
// a hand-made file holds (here a reason of 100,000 characters).
func TestInspectBackupReadsBoundedValues(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	shopDB(t, path).Close()
	backup := filepath.Join(t.TempDir(), "shop.backup")
	if err := Backup(ctx, path, backup, Manifest{Version: "1.2.3", Reason: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", backup)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", 100_000)
	_, err = raw.Exec(`UPDATE backup_manifest SET value = ? WHERE key = 'reason'`, long)
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	info, err := InspectBackup(ctx, backup)
	if err != nil {
		t.Fatal(err)
	}
	if info.Manifest.Reason != strings.Repeat("é", maxBackupValue) || info.Manifest.Version != "1.2.3" {
		t.Fatalf("manifest read as version %q, a reason of %d bytes", info.Manifest.Version, len(info.Manifest.Reason))
	}
}

func TestInspectBackupRefusesOtherFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte(strings.Repeat("not sqlite ", 100)), 0o600)
	if _, err := InspectBackup(ctx, junk); !errors.Is(err, ErrNotBackup) {
		t.Errorf("junk file: %v", err)
	}
	if _, err := InspectBackup(ctx, dir); err == nil {
		t.Errorf("a folder was taken for a backup")
	}
	// A view where a table is read (one that never ends) is no backup, and is not read.
	endless := `AS WITH RECURSIVE n(version) AS (SELECT 1 UNION ALL SELECT version + 1 FROM n) SELECT version FROM n`
	for i, schema := range []string{
		`CREATE VIEW schema_migrations ` + endless,
		`CREATE TABLE schema_migrations (version INTEGER); INSERT INTO schema_migrations VALUES (1); CREATE VIEW devices ` + endless,
		// Names are read in any case by SQLite.
		`CREATE TABLE schema_migrations (version INTEGER); INSERT INTO schema_migrations VALUES (1); CREATE VIEW DEVICES ` + endless,
	} {
		other := filepath.Join(dir, fmt.Sprint("view", i))
		raw, err := sql.Open("sqlite", other)
		if err != nil {
			t.Fatal(err)
		}
		_, err = raw.Exec(schema)
		raw.Close()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = InspectBackup(ctx, other)
		cancel()
		if !errors.Is(err, ErrNotBackup) || !strings.Contains(err.Error(), "is not a table") {
			t.Errorf("%s: %v", schema, err)
		}
	}
	for i, version := range []string{"-1", "'three'"} {
		other := filepath.Join(dir, fmt.Sprint("other", i))
		raw, err := sql.Open("sqlite", other)
		if err != nil {
			t.Fatal(err)
		}
		_, err = raw.Exec(`CREATE TABLE schema_migrations (version INTEGER); INSERT INTO schema_migrations VALUES (` + version + `)`)
		raw.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := InspectBackup(ctx, other); !errors.Is(err, ErrNotBackup) {
			t.Errorf("schema version %s: %v", version, err)
		}
	}
	if _, err := InspectBackup(ctx, filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// A backup into a folder that does not exist says so, rather than SQLite's "unable to open
// database file".
func TestBackupIntoAMissingFolder(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	shopDB(t, path).Close()
	err := Backup(ctx, path, filepath.Join(t.TempDir(), "gone", "shop.backup"), Manifest{}, nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "the folder") {
		t.Errorf("backup into a missing folder: %v", err)
	}
}

// A backup named after a folder says so before copying anything; a backup cut short says it is
// damaged or cut short, with its size, rather than that it is not a backup.
func TestBackupToAFolderAndACutBackup(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	shopDB(t, path).Close()
	parent := t.TempDir()
	dir := filepath.Join(parent, "backups")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Backup(ctx, path, dir, Manifest{}, nil); err == nil || !strings.Contains(err.Error(), "is a folder: name the backup file") {
		t.Errorf("backup to a folder: %v", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 1 {
		t.Errorf("backup to a folder left files beside it: %v", left)
	}
	full := filepath.Join(dir, "full.backup")
	if err := Backup(ctx, path, full, Manifest{}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.backup")
	if err := os.WriteFile(cut, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = InspectBackup(ctx, cut)
	if err == nil || errors.Is(err, ErrNotBackup) || !strings.Contains(err.Error(), "is damaged or cut short") {
		t.Errorf("a backup cut in half: %v", err)
	}
	empty := filepath.Join(dir, "empty.backup") // a copy that never started (the share filled up)
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = InspectBackup(ctx, empty)
	if err == nil || !strings.Contains(err.Error(), "is empty (0 bytes)") {
		t.Errorf("an empty backup file: %v", err)
	}
}

func TestQuickCheckReadsWithoutMigrating(t *testing.T) {
	ctx := context.Background()
	all, _ := embeddedMigrations()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db, err := openOlder(ctx, path, all[:len(all)-1])
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	v, err := QuickCheck(ctx, path)
	if err != nil || v != all[len(all)-2].version {
		t.Fatalf("QuickCheck = %d, %v", v, err)
	}
	if v, _ := QuickCheck(ctx, path); v != all[len(all)-2].version {
		t.Fatalf("QuickCheck migrated the database to %d", v)
	}
}

// openOlder leaves the database at path as an older storeedge, which knew only the migrations
// ms, would: migrated that far and open for writing. The rest of today's Open, which reads what
// the newer migrations made, is not run on it.
func openOlder(ctx context.Context, path string, ms []migration) (*DB, error) {
	w, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	db := &DB{path: path, w: w}
	if err := db.migrate(ctx, ms); err != nil {
		w.Close()
		return nil, err
	}
	return db, nil
}

// A backup of a shop that never paired a device says nothing of revocations, even where
// nothing knows of them.
func TestRestoreOfABackupWithoutDevicesWarnsOfNoRevocation(t *testing.T) {
	ctx := context.Background()
	db, backup := backedUpNewShop(t)
	db.Close()
	res, err := Restore(ctx, backup, filepath.Join(t.TempDir(), "storeedge.db"))
	if err != nil || res.RevocationsUnknown {
		t.Fatalf("restore of a backup without devices: %+v %v, want no word of revocations", res, err)
	}
}

// A backup whose devices were all revoked before it pairs none: restored where nothing knows
// of revocations, it warns of none (none can have been made since that matters).
func TestRestoreOfABackupWithOnlyRevokedDevicesWarnsOfNoRevocation(t *testing.T) {
	ctx := context.Background()
	db := shopDB(t, filepath.Join(t.TempDir(), "storeedge.db"))
	if ok, err := db.RevokeDevice(ctx, "dv_pos", time.Now(), reasonRevoked); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	backup := backupOf(t, db)
	db.Close()
	res, err := Restore(ctx, backup, newMachine(t, false))
	if err != nil || res.RevocationsUnknown {
		t.Fatalf("restore of a backup whose only device is revoked: %+v %v, want no word of revocations", res, err)
	}
}

// A device revoked after the backup stays revoked once it is restored, its commands queued in
// the backup failed: a restore never gives a stolen device its credential back.
func TestRestoreKeepsRevocations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := shopDB(t, path)
	now := time.Now()
	if err := db.EnqueueCommands(ctx, []Command{{ID: "cmd_1", DeviceID: "dv_pos", Type: "print", Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}, nil); err != nil {
		t.Fatal(err)
	}
	backup := backupOf(t, db)
	if ok, err := db.RevokeDevice(ctx, "dv_pos", now, reasonRevoked); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	db.Close()
	res, err := Restore(ctx, backup, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Revoked) != 1 || res.Revoked[0] != "dv_pos" || res.RevocationsUnknown {
		t.Errorf("restore says %v revoked again (unknown: %v), want dv_pos", res.Revoked, res.RevocationsUnknown)
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	devs, err := db.Devices(ctx)
	if err != nil || len(devs) != 1 || devs[0].RevokedAt.IsZero() {
		t.Fatalf("devices after the restore: %+v %v; want dv_pos revoked", devs, err)
	}
	if c, err := db.GetCommand(ctx, "cmd_1"); err != nil || c.State != CommandFailed || c.Reason != reasonRevoked {
		t.Fatalf("its command queued in the backup: %+v %v; want failed, device revoked", c, err)
	}
}

// A restore carries the event ids over: the restored log gives its new events ids above every id
// the replaced one gave out, so a device resuming its stream from one of those gets the events
// made after the restore, even those made before it reconnected (openapi.yaml, events).
func TestRestoreCarriesEventIDsOver(t *testing.T) {
	ctx := context.Background()
	path, db, backup := backedUpShop(t)
	_, held := ordersAfterBackup(t, db, 5) // the device follows these; held is its position
	db.Close()
	if _, err := Restore(ctx, backup, path); err != nil {
		t.Fatal(err)
	}
	db, o := openAndOrder(t, path, "after-restore")
	defer db.Close()
	events, err := db.EventsAfter(ctx, held, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 || events[0].OrderID != o.ID {
		t.Fatalf("events after the device's position %d: %+v; want the order made after the restore", held, events)
	}
	if o.Number >= restoreJump*orderNumberBlock || strings.Contains(db.IDsRaised(), "another machine") {
		t.Fatalf("restored on its own machine, the next order is %d (raised: %q): a jump as on another machine", o.Number, db.IDsRaised())
	}
}

// Restored on another machine (the old one's disk lost: no storeedge.ids, no database), a backup
// gives none of the numbers the old machine gave out after it again: order numbers, event ids
// and export batch ids jump well past the backup's, and the second start does not jump again.
func TestRestoreOnAnotherMachineGivesNoNumberTwice(t *testing.T) {
	// The new machine's service started once before the restore (install.md), or never did.
	for _, startedFirst := range []bool{false, true} {
		t.Run(fmt.Sprint("started first ", startedFirst), func(t *testing.T) {
			restoreOnAnotherMachine(t, startedFirst)
		})
	}
}

func restoreOnAnotherMachine(t *testing.T, startedFirst bool) {
	ctx := context.Background()
	_, db, backup := backedUpShop(t)
	lastOrder, lastEvent := ordersAfterBackup(t, db, 5) // taken on the old machine
	db.Close()

	path := newMachine(t, startedFirst)
	res, err := Restore(ctx, backup, path)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing there knows of the devices revoked after the backup: restore says so.
	if !res.RevocationsUnknown {
		t.Errorf("restored on a new machine (started first: %v): %+v, want the revocations said unknown", startedFirst, res)
	}
	db, o := openAndOrder(t, path, "after-restore")
	event, err := db.LastEventID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if o.Number <= lastOrder+restoreJump*orderNumberBlock-orderNumberBlock || event <= lastEvent || !strings.Contains(db.IDsRaised(), "another machine") {
		t.Fatalf("after the restore the order number is %d and the event id %d (the old machine gave %d and %d); raised: %q",
			o.Number, event, lastOrder, lastEvent, db.IDsRaised())
	}
	db.Close()
	db, next := openAndOrder(t, path, "second-start")
	defer db.Close()
	if next.Number != o.Number+1 || db.IDsRaised() != "" {
		t.Fatalf("after a clean restart the next order is %d, want %d; raised: %q", next.Number, o.Number+1, db.IDsRaised())
	}
}

// A backup made before the shop took any order (the first scheduled one, a minute after the
// first start) and restored on another machine also jumps: the old machine may have given out
// numbers after it, and its marks are lost with it.
func TestRestoreOfABackupBeforeAnyOrderJumps(t *testing.T) {
	ctx := context.Background()
	db, backup := backedUpNewShop(t)
	lastOrder, lastEvent := ordersAfterBackup(t, db, 5)
	db.Close()
	path := newMachine(t, false)
	if _, err := Restore(ctx, backup, path); err != nil {
		t.Fatal(err)
	}
	db, o := openAndOrder(t, path, "after-restore")
	defer db.Close()
	event, err := db.LastEventID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantJump(t, o, lastOrder)
	if event <= lastEvent {
		t.Fatalf("event id %d after the restore; the old machine gave %d", event, lastEvent)
	}
	// A new machine's first start is no restore: its numbers start at 1.
	fresh, first := openAndOrder(t, newMachine(t, false), "first")
	defer fresh.Close()
	if first.Number != 1 || fresh.IDsRaised() != "" {
		t.Fatalf("first order of a new shop: %d (raised %q)", first.Number, fresh.IDsRaised())
	}
}

// Restored on its own machine over a database the disk damaged (moved aside), a backup gives no
// number twice from the marks beside the database, and makes no jump as on another machine.
func TestRestoreOverADamagedDatabaseKeepsItsMarks(t *testing.T) {
	ctx := context.Background()
	path, db, backup := backedUpShop(t)
	last, _ := ordersAfterBackup(t, db, 5)
	db.Close()
	if err := os.WriteFile(path, []byte("this is not a database any more, the disk failed"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
	if res, err := Restore(ctx, backup, path); err != nil || res.Damaged == "" {
		t.Fatalf("restore over a damaged database: %+v, %v", res, err)
	}
	db, o := openAndOrder(t, path, "after-restore")
	defer db.Close()
	if o.Number <= last || o.Number >= restoreJump*orderNumberBlock || strings.Contains(db.IDsRaised(), "another machine") {
		t.Fatalf("after the restore the next order is %d (the damaged database gave %d); raised: %q", o.Number, last, db.IDsRaised())
	}
}

// Restores done twice, or over what another restore left, give no number twice, and jump by
// 100,000 only when the backup was made on another machine.
func TestRestoreTwiceAndInTurns(t *testing.T) {
	ctx := context.Background()
	restore := func(t *testing.T, backup, path string) {
		t.Helper()
		if _, err := Restore(ctx, backup, path); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("the same backup twice on a new machine started once", func(t *testing.T) {
		_, db, backup := backedUpShop(t)
		last, _ := ordersAfterBackup(t, db, 5)
		db.Close()
		path := newMachine(t, true)
		restore(t, backup, path)
		restore(t, backup, path)
		db, o := openAndOrder(t, path, "after")
		defer db.Close()
		wantJump(t, o, last)
	})
	t.Run("an older then a newer backup on its own machine", func(t *testing.T) {
		path, db, older := backedUpShop(t)
		ordersAfterBackup(t, db, 3)
		newer := filepath.Join(t.TempDir(), "newer")
		if err := db.Backup(ctx, newer, Manifest{}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		db, o := openAndOrder(t, path, "before") // one more after the newer backup
		db.Close()
		restore(t, older, path)
		restore(t, newer, path)
		db, next := openAndOrder(t, path, "after")
		defer db.Close()
		if next.Number <= o.Number || next.Number >= restoreJump*orderNumberBlock {
			t.Fatalf("next order %d; the machine gave %d, and the jump is for another machine's backups", next.Number, o.Number)
		}
	})
	// A backup made by the version before the marks had ids jumps wherever it is restored
	// (configuration.md): it cannot say which machine it was made on.
	for _, own := range []bool{false, true} {
		where := "a new machine never started"
		if own {
			where = "its own machine"
		}
		t.Run("a backup of the version before, on "+where, func(t *testing.T) {
			ownPath, db, backup := backedUpShop(t)
			last, _ := ordersAfterBackup(t, db, 5)
			db.Close()
			old, err := sql.Open("sqlite", backup)
			if err != nil {
				t.Fatal(err)
			}
			_, err = old.Exec(`DELETE FROM meta WHERE key = ?`, metaMarksID)
			old.Close()
			if err != nil {
				t.Fatal(err)
			}
			path := ownPath
			if !own {
				path = newMachine(t, false)
			}
			restore(t, backup, path)
			db, o := openAndOrder(t, path, "after")
			defer db.Close()
			wantJump(t, o, last)
		})
	}
	t.Run("a damaged storeedge.ids on its own machine", func(t *testing.T) {
		path, db, backup := backedUpShop(t)
		last, _ := ordersAfterBackup(t, db, 5)
		db.Close()
		if err := os.WriteFile(idsFile(path), []byte("{not the marks"), 0o600); err != nil {
			t.Fatal(err)
		}
		restore(t, backup, path)
		db, o := openAndOrder(t, path, "after")
		defer db.Close()
		if o.Number <= last {
			t.Fatalf("next order %d; the machine gave %d", o.Number, last)
		}
	})
	t.Run("no database, the marks of a new machine's first start", func(t *testing.T) {
		_, db, backup := backedUpShop(t)
		last, _ := ordersAfterBackup(t, db, 5)
		db.Close()
		path := newMachine(t, true)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
		restore(t, backup, path)
		db, o := openAndOrder(t, path, "after")
		defer db.Close()
		wantJump(t, o, last)
	})
}

// A database and a storeedge.ids of the version before the marks had ids (an upgrade) go on as
// they were: no jump.
func TestUpgradeKeepsTheNumbersGoing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "storeedge.db")
	db := shopDB(t, path)
	last, _ := ordersAfterBackup(t, db, 2)
	if _, err := db.w.ExecContext(ctx, `DELETE FROM meta WHERE key = ?`, metaMarksID); err != nil {
		t.Fatal(err)
	}
	db.Close()
	m, err := readIDsFile(idsFile(path))
	if err != nil {
		t.Fatal(err)
	}
	m.ID = 0
	if err := writeIDsFile(idsFile(path), m); err != nil {
		t.Fatal(err)
	}
	db, o := openAndOrder(t, path, "after-upgrade")
	defer db.Close()
	if o.Number != last+1 || db.IDsRaised() != "" {
		t.Fatalf("after the upgrade the next order is %d, want %d; raised: %q", o.Number, last+1, db.IDsRaised())
	}
}

// A backup older than the event log (schema 1) restores over a database that has events: there is
// nothing to carry the event ids into, and the restore does not fail on it.
func TestRestoreOfABackupOlderThanTheEventLog(t *testing.T) {
	ctx := context.Background()
	all, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "old.db")
	db, err := openOlder(ctx, old, all[:1])
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	backup := filepath.Join(t.TempDir(), "b")
	if err := Backup(ctx, old, backup, Manifest{}, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "storeedge.db")
	shopDB(t, path).Close() // three orders, and their events
	if _, err := Restore(ctx, backup, path); err != nil {
		t.Fatalf("restoring a schema-1 backup over a database with events: %v", err)
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("opening the restored database: %v", err)
	}
	db.Close()
}

// Backup, InspectBackup and Restore take paths relative to the working folder, as
// "storeedge restore shop.backup" gives them.
func TestBackupAndRestoreTakeRelativePaths(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Chdir(dir)
	db := shopDB(t, filepath.Join("data", "storeedge.db"))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Backup(ctx, filepath.Join("data", "storeedge.db"), "shop.backup", Manifest{Version: "1.2.3", Reason: "test"}, nil); err != nil {
		t.Fatalf("backup to a relative path: %v", err)
	}
	if info, err := InspectBackup(ctx, "shop.backup"); err != nil || info.Orders != 3 {
		t.Fatalf("inspect a relative path: %+v, %v", info, err)
	}
	if _, err := Restore(ctx, "shop.backup", filepath.Join("data", "storeedge.db")); err != nil {
		t.Fatalf("restore from a relative path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shop.backup")); err != nil {
		t.Errorf("the backup is not where it was asked for: %v", err)
	}
}

// damageDeepIn overwrites the last pages of the closed database at path: SQLite still opens it,
// and its check (or a read of those pages) finds it damaged.
func damageDeepIn(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if fi.Size() < 8*page {
		t.Fatalf("the database is %d bytes: too small to damage past its first pages", fi.Size())
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := []byte(strings.Repeat("\xaa", 3*page))
	if _, err := f.WriteAt(junk, fi.Size()-int64(len(junk))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c, conn, err := lockExclusive(context.Background(), path)
	if err != nil {
		t.Fatalf("the damaged database does not open: %v", err)
	}
	defer c.Close()
	defer conn.Close()
	if err := quickCheck(context.Background(), conn); err == nil {
		t.Fatal("the damaged database passes its check")
	}
}

// A database damaged further in than its first pages (a disk fault) is replaced by the backup,
// as one SQLite cannot open at all is (install.md: restore over a damaged database): moved
// aside, not copied, and the revocations it knew said to be unknown.
func TestRestoreOverADatabaseDamagedDeepIn(t *testing.T) {
	ctx := context.Background()
	path, backup := deepDamagedShop(t)
	res, err := Restore(ctx, backup, path)
	if err != nil {
		t.Fatalf("restore over a database damaged deep in: %v", err)
	}
	if res.Damaged == "" || res.Previous != "" || !res.RevocationsUnknown {
		t.Errorf("restore over a damaged database: %+v; want it moved aside, no copy, revocations unknown", res)
	}
	if _, err := os.Stat(res.Damaged); err != nil {
		t.Errorf("the damaged database is not kept: %v", err)
	}
	kept, _ := filepath.Glob(path + ".before-restore-*")
	if len(kept) != 0 {
		t.Errorf("a copy of the damaged database was left: %v", kept)
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if d, err := db.GetDevice(ctx, "dv_pos"); err != nil || d.Name != "till 1" {
		t.Errorf("paired device after restore: %+v %v", d, err)
	}
}

// deepDamagedShop is a backed-up shop whose database, changed since, was then damaged deep in.
func deepDamagedShop(t *testing.T) (path, backup string) {
	t.Helper()
	path, db, backup := backedUpShop(t)
	var ps []cloudapi.Change
	for i := range 300 {
		ps = append(ps, product(fmt.Sprint("F", i), int64(10+i), strings.Repeat("filler ", 40), "Drinks"))
	}
	apply(t, db, cloudapi.Products, "c2", ps...)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	damageDeepIn(t, path)
	return path, backup
}

// A restore over a damaged database that fails before the backup is in place puts the damaged
// database back, as it was: no empty database in its place, nothing left beside it.
func TestFailedRestoreOverADamagedDatabasePutsItBack(t *testing.T) {
	path, backup := deepDamagedShop(t)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	backupStarted = func(string) { os.Remove(backup) } // gone once checked: the copy into place fails
	defer func() { backupStarted = nil }()
	if _, err := Restore(context.Background(), backup, path); err == nil {
		t.Fatal("a restore of a backup removed meanwhile went through")
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(after, before) {
		t.Errorf("after the failed restore the database is %d bytes (%v), want the damaged one's %d as it was", len(after), err, len(before))
	}
	left, _ := filepath.Glob(path + ".*")
	if len(left) != 0 {
		t.Errorf("the failed restore left %v", left)
	}
}

// A restore whose copy fails leaves the database as it was and nothing beside it: the copy of
// the database kept before the restore would only take the disk's space (a restore failing on a
// full disk would leave it fuller).
func TestFailedRestoreLeavesNoCopy(t *testing.T) {
	ctx := context.Background()
	path, db, backup := backedUpShop(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// SQLite refuses to copy pages of another size into a database in WAL mode.
	raw, err := sql.Open("sqlite", fileURI(backup))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`PRAGMA page_size = 8192`, `VACUUM`} {
		if _, err := raw.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	if _, err := Restore(ctx, backup, path); err == nil {
		t.Fatal("a restore of pages of another size into a WAL database went through")
	}
	kept, _ := filepath.Glob(path + ".before-restore-*")
	if len(kept) != 0 {
		t.Errorf("the failed restore left %v", kept)
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if d, err := db.GetDevice(ctx, "dv_pos"); err != nil || d.Name != "till 1" {
		t.Errorf("the database after a failed restore: %+v %v", d, err)
	}
}

// The database itself named as the backup is refused as such, not as "in use" by its own lock.
func TestRestoreOfTheDatabaseOntoItself(t *testing.T) {
	path, db, _ := backedUpShop(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Restore(context.Background(), path, path)
	if err == nil || !strings.Contains(err.Error(), "is the database itself") {
		t.Fatalf("restore of the database onto itself: %v", err)
	}
	if kept, _ := filepath.Glob(path + ".before-restore-*"); len(kept) != 0 {
		t.Errorf("the refused restore left %v", kept)
	}
}
