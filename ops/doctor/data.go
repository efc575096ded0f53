package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/storeedge/storeedge/internal/disk"
	"github.com/storeedge/storeedge/storage"
)

// Free space limits for data_dir: below minFree the database stops taking changes soon; below
// lowFree, or less than the database's own size, a backup or a schema upgrade (which copies the
// database first) does not fit.
const (
	minFree = 512 << 20
	lowFree = 2 << 30
)

// checkDataDir checks the data folder: there (or creatable), writable, by the service too,
// with room, and the database in it sound and of a schema this storeedge knows.
func checkDataDir(ctx context.Context, o Options) []Result {
	dir := o.Config.DataDir
	check := "data_dir " + dir
	// Outside what the service's unit lets it write (data_dir moved off /var/lib/storeedge
	// without its ReadWritePaths= line), the service cannot open its database at all.
	var sandboxed []Result
	if o.Sandbox != nil {
		if writable, confined := o.Sandbox(); confined {
			sandboxed = append(sandboxed, checkSandboxed("data_dir", dir, writable))
		}
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fix := "the service creates it at its first start; create it now (owned by the service account) to check the rest"
		if len(sandboxed) > 0 {
			fix = "create it now (owned by the service account, mode 0750): the service creates it only where its unit lets it write, and a ReadWritePaths= folder that does not exist stops the unit from starting (status=226/NAMESPACE)"
		}
		return append([]Result{warn("data", check, "does not exist yet", fix)}, sandboxed...)
	case err != nil:
		return []Result{fail("data", check, err.Error(), "check the path in data_dir")}
	case !fi.IsDir():
		return []Result{fail("data", check, "is not a folder", "set data_dir to a folder")}
	}
	out := append([]Result{checkWritable(dir)}, sandboxed...)
	if r, ok := checkServiceCanWrite("data_dir", dir, fi, o.ServiceUser); ok {
		out = append(out, r)
	}
	if r, ok := checkServiceOwnsFiles("data_dir", storage.Files(o.Config.DatabasePath()), o.ServiceUser); ok {
		out = append(out, r)
	}
	if r, ok := checkDataDirPrivate(dir); ok {
		out = append(out, r)
	}
	var dbSize int64
	if fi, err := os.Stat(o.Config.DatabasePath()); err == nil {
		dbSize = fi.Size()
	}
	out = append(out, checkFreeSpace(dir, dbSize))
	return append(out, checkDatabase(ctx, o.Config.DatabasePath()))
}

func checkWritable(dir string) Result {
	const check = "data_dir writable"
	f, err := os.CreateTemp(dir, ".doctor-*")
	if errors.Is(err, syscall.EROFS) {
		return fail("data", check, "cannot write in it: "+err.Error(), "the disk of data_dir is mounted read-only (after a disk error, or by its mount options): mount it read-write, or set data_dir to a folder on a writable disk")
	}
	if err != nil {
		return fail("data", check, "cannot write in it: "+err.Error(), "give the service account write access to data_dir (Linux: chown -R storeedge:storeedge "+dir+")")
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return pass("data", check, "a file can be written there")
}

func checkFreeSpace(dir string, dbSize int64) Result {
	const check = "data_dir free space"
	free, err := disk.Free(dir)
	if err != nil {
		return warn("data", check, "cannot be measured: "+err.Error(), "check the free space of the disk of data_dir by hand")
	}
	detail := fmt.Sprintf("%s free, database %s", disk.Format(free), disk.Format(uint64(dbSize)))
	const fix = "free space on that disk, or move data_dir to a larger one"
	switch {
	case free < minFree:
		return fail("data", check, detail+": the database will soon stop taking changes", fix)
	case free < lowFree || free < uint64(dbSize):
		return warn("data", check, detail+": a backup or an upgrade (which copies the database) may not fit", fix)
	}
	return pass("data", check, detail)
}

// checkDatabase runs PRAGMA quick_check and compares the schema with this storeedge's.
func checkDatabase(ctx context.Context, path string) Result {
	check := "database " + filepath.Base(path)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return pass("data", check, "none yet: the service creates it at its first start")
	}
	schema, err := storage.QuickCheck(ctx, path)
	// The WAL and its index doctor's read made as root go back to the folder's owner, whatever
	// the read found: left root's, the service could not open the database.
	matchOwner(filepath.Dir(path), path+"-wal", path+"-shm")
	if err != nil {
		return fail("data", check, "damaged: "+err.Error(), "stop the service and restore the latest backup (storeedge restore FILE), or call support")
	}
	switch latest := storage.SchemaVersion(); {
	case schema > latest:
		return fail("data", check, fmt.Sprintf("schema %d is newer than this storeedge knows (%d): a newer storeedge ran on it", schema, latest), "run the newer storeedge again, or restore the copy it kept ("+storage.UpgradeCopyPath(path, latest)+")")
	case schema < latest:
		return pass("data", check, fmt.Sprintf("quick check ok; schema %d, brought up to %d at the service's next start (a copy is kept first)", schema, latest))
	}
	return pass("data", check, fmt.Sprintf("quick check ok; schema %d", schema))
}
