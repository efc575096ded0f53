package backoffice

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/storeedge/storeedge/internal/durable"
	"github.com/storeedge/storeedge/storage"
)

// tmpPrefix starts the name a file is written under before it is renamed into place: a dot
// file, which the ERP is told to ignore.
const tmpPrefix = ".tmp-"

// The durable steps of writing an order file, in order (for the tests' crash hook).
const (
	stepRecorded    = "recorded"     // the batch is in the database
	stepTempWritten = "temp_written" // the temporary file is complete and synced
	stepMarked      = "marked"       // the database says so
	stepRenamed     = "renamed"      // the file has its name, the folder is synced
	stepDone        = "done"         // the database says so, ledgers included

	stepPosted = "posted" // the webhook took an order; the database does not say so yet
)

// fileName is the name of an order file: the target, the numbers of its first and last orders
// (zero-padded, so that names sort in order) and the batch id (unique), e.g.
// orders-files-00000001-00000020-1.csv.
func fileName(target, ext string) storage.BatchName {
	return func(id, first, last int64) string {
		return fmt.Sprintf("orders-%s-%08d-%08d-%d.%s", target, first, last, id, ext)
	}
}

// exportFiles finishes the target's unfinished files, removes stray temporary files, then
// writes the orders that wait, in files of at most BatchSize orders, oldest first.
func (a *Agent) exportFiles(ctx context.Context, t fileTarget) error {
	if err := a.finishBatches(ctx, t); err != nil {
		return err
	}
	if err := removeTemps(t); err != nil {
		return fmt.Errorf("backoffice: %s: %w", t.Name, err)
	}
	format := a.o.Config.Export.Format
	for {
		b, ok, err := a.o.DB.CreateExportBatch(ctx, t.ExportTarget, format, a.o.BatchSize, fileName(t.Name, extension(format)))
		if err != nil {
			return fmt.Errorf("backoffice: %s: %w", t.Name, err)
		}
		if !ok {
			return nil
		}
		if err := a.step(stepRecorded); err != nil {
			return err
		}
		if err := a.writeBatch(ctx, t, b); err != nil {
			return err
		}
	}
}

// folderMarker is the file storeedge keeps in each export folder it writes to: a folder it wrote
// to before that lacks it is another folder under the same path (a share that is not mounted,
// its empty mount point in its place), where files would reach no ERP, and where an unfinished
// file's absence would be read as "taken".
const folderMarker = ".storeedge-folder"

// checkFolder checks that the target's folder is there and is the one storeedge wrote to. A
// folder with the marker is (under whatever path it is reached now); one that lacks it while
// storeedge wrote to this path before is not (the orders wait); one that lacks it at a new path
// is new to storeedge: adopted is then true, and the caller marks it with markFolder once the
// files left unfinished are written there, so that a stop before that finds it new again.
func (a *Agent) checkFolder(ctx context.Context, t fileTarget) (adopted bool, err error) {
	if err := checkDir(t.dir); err != nil {
		return false, err
	}
	key, sum := folderKey(t)
	known, ok, err := a.o.DB.MetaValue(ctx, key)
	if err != nil {
		return false, err
	}
	switch {
	case exists(filepath.Join(t.dir, folderMarker)):
		if !ok || known != sum { // the same folder, reached by another path
			return false, a.o.DB.SetMetaValue(ctx, key, sum)
		}
		return false, nil
	case ok && known == sum:
		return false, fmt.Errorf("folder %s lacks the file %s that storeedge keeps there: it is not the folder storeedge wrote to (a share that is not mounted?); mount it, or, if this is the right folder, create an empty %s in it; the orders wait", t.dir, folderMarker, folderMarker)
	}
	return true, nil
}

// markFolder puts the marker in the target's folder and records its path.
func (a *Agent) markFolder(ctx context.Context, t fileTarget) error {
	if err := os.WriteFile(filepath.Join(t.dir, folderMarker), []byte("storeedge writes order files here; keep this file\n"), 0o644); err != nil {
		return err
	}
	if err := durable.SyncDir(t.dir); err != nil {
		return err
	}
	key, sum := folderKey(t)
	return a.o.DB.SetMetaValue(ctx, key, sum)
}

// folderKey is the meta key of the target's folder and a hash of its path.
func folderKey(t fileTarget) (string, int64) {
	h := fnv.New64a()
	h.Write([]byte(filepath.Clean(t.dir)))
	return "export_folder:" + t.Name, int64(h.Sum64() >> 1)
}

// finishBatches takes each of the target's unfinished batches to done.
func (a *Agent) finishBatches(ctx context.Context, t fileTarget) error {
	adopted, err := a.checkFolder(ctx, t)
	if err != nil {
		return fmt.Errorf("backoffice: %s: %w", t.Name, err)
	}
	batches, err := a.o.DB.UnfinishedExportBatches(ctx, t.Name)
	if err != nil {
		return fmt.Errorf("backoffice: %s: %w", t.Name, err)
	}
	for _, b := range batches {
		tmp, final := filepath.Join(t.dir, tmpPrefix+b.File), filepath.Join(t.dir, b.File)
		if adopted && b.State == storage.BatchWritten && !exists(final) {
			// The folder is new to storeedge (export.dir changed, or the first run that keeps
			// a marker): the file recorded complete was written elsewhere, so its absence here
			// says nothing of the ERP, and a temporary file here is from a re-write a stop cut
			// short. It is written here again, whole, then put in place; an ERP that had it
			// already recognises its orders by id.
			if err := a.writeTemp(ctx, tmp, b); err != nil {
				return fmt.Errorf("backoffice: %s: file %s: %w", t.Name, b.File, err)
			}
		}
		a.log.Info("backoffice: finishing an order file interrupted by a stop", slog.String(logKeyTarget, t.Name),
			slog.String(logKeyFile, b.File), slog.String("state", b.State))
		if err := a.writeBatch(ctx, t, b); err != nil {
			return err
		}
	}
	if adopted {
		if err := a.markFolder(ctx, t); err != nil {
			return fmt.Errorf("backoffice: %s: %w", t.Name, err)
		}
	}
	return nil
}

// writeBatch takes a batch from the state it is in to done:
//
//	open:    the file may be missing or half written under its temporary name. Write the
//	         temporary file whole (again), sync it, record "written", then as below.
//	written: the temporary file is complete. If it is there, rename it to the final name and
//	         sync the folder. If it is gone, the rename was done already (and the ERP may have
//	         taken the file since): do not write it again. (In a folder new to storeedge,
//	         finishBatches writes it again first: see checkFolder.)
//	then:    record done, with the orders' ledgers.
//
// A batch is recorded open before its file is written and done only after the file has its
// name, and a written batch is not written again in the folder it was written to, so that a stop
// at any point leaves each order in the folder exactly once after the next run.
func (a *Agent) writeBatch(ctx context.Context, t fileTarget, b storage.ExportBatch) error {
	final := filepath.Join(t.dir, b.File)
	tmp := filepath.Join(t.dir, tmpPrefix+b.File)
	fail := func(err error) error { return fmt.Errorf("backoffice: %s: file %s: %w", t.Name, b.File, err) }
	if b.State == storage.BatchOpen {
		if exists(final) {
			// The rename happened but the database lost the steps after it (a power cut right
			// after): the file is complete, as only a complete file is ever renamed.
			a.log.Warn("backoffice: an order file was found in place though not recorded as written; it is kept as is",
				slog.String(logKeyTarget, t.Name), slog.String(logKeyFile, b.File))
		} else {
			if err := a.writeTemp(ctx, tmp, b); err != nil {
				return fail(err)
			}
			if err := a.step(stepTempWritten); err != nil {
				return err
			}
			if err := a.o.DB.MarkExportBatchWritten(ctx, b.ID); err != nil {
				return fail(err)
			}
			if err := a.step(stepMarked); err != nil {
				return err
			}
			b.State = storage.BatchWritten
		}
	}
	if b.State == storage.BatchWritten {
		var synced *durable.SyncError
		switch err := durable.Rename(tmp, final); {
		case err == nil:
		case errors.As(err, &synced): // in place, its folder not synced: the next run finds it there
			return fail(err)
		case errors.Is(err, fs.ErrNotExist) && !exists(tmp):
			if !exists(filepath.Join(t.dir, folderMarker)) {
				// The folder went away (a share unmounted) since the file was written: its
				// absence says nothing of the ERP. The orders wait for the folder.
				return fail(fmt.Errorf("folder %s lost the file %s and the order file %s before it was put in place: it is not the folder storeedge wrote to (a share that is not mounted?); the orders wait", t.dir, folderMarker, tmpPrefix+b.File))
			}
			if !exists(final) {
				a.log.Info("backoffice: an order file interrupted after it was put in place is gone already (taken by the ERP); not writing it again",
					slog.String(logKeyTarget, t.Name), slog.String(logKeyFile, b.File))
			} else if err := durable.SyncDir(t.dir); err != nil { // put in place by a run whose sync failed
				return fail(err)
			}
		default:
			return fail(err)
		}
		if err := a.step(stepRenamed); err != nil {
			return err
		}
	}
	if err := a.o.DB.FinishExportBatch(ctx, b.ID); err != nil {
		return fail(err)
	}
	if err := a.step(stepDone); err != nil {
		return err
	}
	a.log.Info("backoffice: orders exported", slog.String(logKeyTarget, t.Name), slog.String(logKeyFile, b.File), slog.Int(logKeyOrders, b.Orders))
	return nil
}

// writeTemp writes the batch's orders to the temporary file, whole, and syncs it.
func (a *Agent) writeTemp(ctx context.Context, tmp string, b storage.ExportBatch) (err error) {
	list, err := a.o.DB.ExportBatchOrders(ctx, b.ID)
	if err != nil {
		return err
	}
	if len(list) != b.Orders {
		return needsHuman{fmt.Errorf("the batch holds %d orders, %d were recorded", len(list), b.Orders)}
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	// 0644 whatever the process's umask (the packaged unit's is 0027): who may read the files is
	// the folder's to say (back-office.md), and the ERP is seldom in storeedge's group.
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := writeOrders(f, b.Format, list); err != nil {
		return err
	}
	return f.Sync()
}

// removeTemps removes the target's temporary files that no unfinished batch needs: what a stop
// left behind while writing. It runs after finishBatches, which renamed every temporary file a
// written batch had.
func removeTemps(t fileTarget) error {
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return err
	}
	prefix := tmpPrefix + "orders-" + t.Name + "-"
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(t.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// checkDir checks that a configured folder is there: storeedge does not create it, as a
// missing folder usually means a share that is not mounted.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("folder %s does not exist: create it, or check that the share is mounted", dir)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder", dir)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
