package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migration is one embedded .sql file of migrations/, named NNNN_what.sql.
type migration struct {
	version int
	name    string
	body    string
}

// embeddedMigrations returns the migrations built into this program, in version order.
func embeddedMigrations() ([]migration, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("storage: migrations: %w", err)
	}
	sort.Strings(names)
	out := make([]migration, 0, len(names))
	for _, name := range names {
		base := filepath.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("storage: migration %s: name must start with its version number", base)
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("storage: migration %s: %w", base, err)
		}
		out = append(out, migration{version: v, name: base, body: string(body)})
	}
	return out, nil
}

// SchemaVersion is the database schema this program writes: the version of its newest migration.
func SchemaVersion() int {
	ms, err := embeddedMigrations()
	if err != nil || len(ms) == 0 {
		return 0 // the embedded files are part of the binary: cannot happen
	}
	return ms[len(ms)-1].version
}

// SchemaError is a database whose schema is newer than this program knows: a newer storeedge
// ran on it. Its message says what to do.
type SchemaError struct {
	Path     string // the database
	Database int    // its schema version
	Program  int    // the newest this program knows
	// Copy is the copy of the database kept before the newer storeedge migrated it
	// (UpgradeCopyPath), when it exists: restoring it with this program goes back in time.
	Copy string
	// Backup is set when Path is a backup offered to restore, not a server's database.
	Backup bool
}

func (e *SchemaError) Error() string {
	if e.Backup {
		return fmt.Sprintf("storage: the backup %s has schema version %d, newer than this storeedge knows (%d): a newer storeedge made it. Restore it with that version (or a later one)",
			e.Path, e.Database, e.Program)
	}
	msg := fmt.Sprintf("storage: the database %s has schema version %d, newer than this storeedge knows (%d): a newer storeedge has upgraded it. Run that version (or a later one)",
		e.Path, e.Database, e.Program)
	if e.Copy != "" {
		msg += fmt.Sprintf(", or go back to the copy kept before the upgrade with \"storeedge restore %s\" (what changed since is lost)", e.Copy)
	}
	return msg
}

// UpgradeCopyPath is where Open keeps a copy of the database at path, as it was at schema
// version from, before migrating it forward. The copy is a backup that restore accepts.
func UpgradeCopyPath(path string, from int) string {
	return fmt.Sprintf("%s.schema-%d.bak", path, from)
}

// migrate applies the migrations that the database has not seen yet, each in its own
// transaction together with its version number. An existing database is copied first.
func (db *DB) migrate(ctx context.Context, ms []migration) error {
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("storage: migrate: %w", err)
	}
	var current int
	if err := db.w.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("storage: migrate: %w", err)
	}
	latest := 0
	if len(ms) > 0 {
		latest = ms[len(ms)-1].version
	}
	if current > latest {
		e := &SchemaError{Path: db.path, Database: current, Program: latest}
		if c := UpgradeCopyPath(db.path, latest); fileExists(c) {
			e.Copy = c
		}
		return e
	}
	if current > 0 && current < latest {
		if err := db.keepUpgradeCopy(ctx, current, latest); err != nil {
			return err
		}
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		if err := db.applyMigration(ctx, m); err != nil {
			return fmt.Errorf("storage: migration %s: %w", m.name, err)
		}
	}
	return nil
}

func (db *DB) applyMigration(ctx context.Context, m migration) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.body); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)`, m.version, time.Now().Unix()); err != nil {
		return err
	}
	return tx.Commit()
}

// keepUpgradeCopy copies the database before a migration from schema version from to to, so
// that going back to the older storeedge stays possible.
func (db *DB) keepUpgradeCopy(ctx context.Context, from, to int) error {
	dst := UpgradeCopyPath(db.path, from)
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("storage: copy before upgrading schema %d to %d: %w", from, to, err)
	}
	defer conn.Close()
	if err := backupConn(ctx, conn, dst, Manifest{Reason: fmt.Sprintf("kept before upgrading the schema from %d to %d", from, to)}, nil); err != nil {
		return fmt.Errorf("storage: copy before upgrading schema %d to %d: %w", from, to, err)
	}
	db.upgraded = fmt.Sprintf("schema %d to %d; the database as it was is kept as %s (storeedge restore it with the older storeedge to go back)", from, to, dst)
	return nil
}

// Upgraded says what Open upgraded the database from and where the copy before it is ("" when
// it did not).
func (db *DB) Upgraded() string { return db.upgraded }

// schemaVersionOf reads the schema version of an open database; 0 for one without migrations.
func schemaVersionOf(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v int
	err := q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil && strings.Contains(err.Error(), "no such table") {
		return 0, nil
	}
	return v, err
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
