// Package backup is what shop IT uses to keep the shop's database safe: a consistent copy while
// the server runs (storeedge backup FILE), putting a copy back with the server stopped
// (storeedge restore FILE), and backups on a schedule into a folder, kept N deep (backup.*
// configuration). The SQL-level work (SQLite's online backup, the exclusive lock, schema
// versions) is storage's; this package decides whose backup may go where, names and prunes the
// scheduled files, and reports what a backup holds.
package backup
