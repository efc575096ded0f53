package backoffice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/backoff"
	"github.com/storeedge/storeedge/internal/durable"
)

// Sub-folders of the import folder that files are moved to once read.
const (
	DoneDir   = "done"
	FailedDir = "failed"
)

// ErrorFileSuffix ends the name of the file written beside a refused stock file in failed/.
const ErrorFileSuffix = ".error.txt"

// stockFormat returns the format of a stock file from its name, or "" for a file to leave
// alone: dot files (temporary names), and names not ending in .csv or .json.
func stockFormat(name string) string {
	if strings.HasPrefix(name, ".") {
		return ""
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return StockCSV
	case ".json":
		return StockJSON
	}
	return ""
}

// errLater says a stock file is still being written: it is left for the next run.
var errLater = errors.New("still being written")

// stockStuckAfter is how long a stock file may stay unsettled, holding back the files after it,
// before the run fails saying so (back-office.md): a copy takes seconds, not minutes.
const stockStuckAfter = 10 * time.Minute

// settledError is the error of a stock file whose levels are settled (applied, or known as
// applied, or refused) but which could not be moved out of the folder: the files after it need
// not wait for it.
type settledError struct{ err error }

func (e *settledError) Error() string { return e.err.Error() }
func (e *settledError) Unwrap() error { return e.err }

// settled marks err (nil: none) as the error of a file whose levels are settled.
func settled(err error) error {
	if err == nil {
		return nil
	}
	return &settledError{err}
}

// importStock reads the stock files waiting in the import folder, in name order, each once. The
// levels are absolute, so a file left for later (still being written, or not readable now)
// holds back the files after it: applied before it, their levels would be set back by its own.
func (a *Agent) importStock(ctx context.Context) error {
	dir := a.o.Config.Import.Dir
	if err := checkDir(dir); err != nil {
		return fmt.Errorf("backoffice: import: %w", err)
	}
	if exists(filepath.Join(dir, folderMarker)) {
		// The configuration tells the folders apart by their paths; a link, a mount or another
		// name of the same share can still make them one, and an order file read as stock
		// levels would set every level it names to an order's quantity.
		return needsHuman{fmt.Errorf("backoffice: import: folder %s holds %s: it is a folder storeedge writes order files to (backoffice.export.dir or backoffice.export.test_dir by another path?); the stock files wait until the import folder is another one", dir, folderMarker)}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("backoffice: import: %w", err)
	}
	var present []string
	for _, e := range entries {
		present = append(present, e.Name())
	}
	// A folder that lists nothing, not even done/, may be the empty mount point of a share that
	// is not mounted: the files applied and not moved are still known when they come back.
	if len(present) > 0 {
		if err := a.o.DB.StockFilesGone(ctx, present); err != nil {
			return fmt.Errorf("backoffice: import: %w", err)
		}
	}
	for name := range a.unsettled {
		if !slices.Contains(present, name) {
			delete(a.unsettled, name)
		}
	}
	var errs []error
	for _, e := range entries {
		format := stockFormat(e.Name())
		if format == "" || !e.Type().IsRegular() {
			continue
		}
		err := a.importFile(ctx, dir, e.Name(), format)
		if !errors.Is(err, errLater) && ctx.Err() == nil { // taken, refused, or failing otherwise
			delete(a.unsettled, e.Name())
		}
		var moving *settledError
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errLater):
			return errors.Join(append(errs, a.heldBack(e.Name()))...)
		case errors.As(err, &moving):
			errs = append(errs, fmt.Errorf("backoffice: import %s: %w", e.Name(), err))
		default:
			return errors.Join(append(errs, fmt.Errorf("backoffice: import %s (the files after it wait for it): %w", e.Name(), err))...)
		}
	}
	return errors.Join(errs...)
}

// importFile applies one stock file and moves it to done/, or to failed/ with the reason
// beside it. A file still being written is left for the next run.
func (a *Agent) importFile(ctx context.Context, dir, name, format string) error {
	path := filepath.Join(dir, name)
	data, size, ok, err := a.readSettled(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // taken away since the folder was listed
	}
	if err != nil {
		return err
	}
	if !ok {
		return errLater
	}
	if size > MaxStockFileBytes { // not read: known again by its name and size
		if prev, refused, err := a.o.DB.StockFileRefused(ctx, name, ""); err != nil {
			return err
		} else if refused && prev.Size == size {
			return a.moveRefused(ctx, dir, name, size, prev.Error, prev.At)
		}
		return a.refuse(ctx, dir, name, "", size, &StockFileError{Msg: fmt.Sprintf("the file is %d bytes; the limit is %d (10 MiB): split it", size, MaxStockFileBytes)})
	}
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	// This file applied already, and not moved then (on Windows, a program holding it open
	// stops the move; or a stop between the two): only move it, even when files were applied
	// since.
	if prev, done, err := a.o.DB.StockFileApplied(ctx, name, sha); err != nil {
		return err
	} else if done {
		moved, err := moveTo(dir, DoneDir, name)
		if err != nil {
			return settled(err)
		}
		a.log.Info("backoffice: stock file applied at an earlier run and not moved then; moved now, not applied again", slog.String(logKeyFile, name),
			slog.Time("imported_at", prev.At), slog.String("moved_to", moved))
		return settled(a.o.DB.StockFileMoved(ctx, name))
	}
	// Refused already, and not moved to failed/ then: only move it, not refused (nor counted)
	// again.
	if prev, refused, err := a.o.DB.StockFileRefused(ctx, name, sha); err != nil {
		return err
	} else if refused {
		return a.moveRefused(ctx, dir, name, prev.Size, prev.Error, prev.At)
	}
	if prev, done, err := a.o.DB.StockImportedLast(ctx, sha); err != nil {
		return err
	} else if done {
		moved, err := moveTo(dir, DoneDir, name)
		if err != nil {
			return settled(err)
		}
		a.log.Info("backoffice: stock file identical to the last one imported; not applied again", slog.String(logKeyFile, name),
			slog.String("imported_as", prev.Name), slog.Time("imported_at", prev.At), slog.String("moved_to", moved))
		return settled(a.o.DB.StockFileMoved(ctx, name))
	}
	levels, perr := ParseStockFile(format, data)
	if perr != nil {
		return a.refuse(ctx, dir, name, sha, size, perr)
	}
	imp, applied, err := a.o.DB.RecordStockImport(ctx, name, sha, size, levels)
	if err != nil {
		return err
	}
	moved, err := moveTo(dir, DoneDir, name)
	if err != nil {
		return settled(err) // applied: the next run knows the file again (StockFileApplied) and only moves it
	}
	if err := a.o.DB.StockFileMoved(ctx, name); err != nil {
		return settled(err)
	}
	if applied {
		a.log.Info("backoffice: stock file imported", slog.String(logKeyFile, name), slog.Int(logKeyRows, len(levels)), slog.String("moved_to", moved))
	} else {
		a.log.Info("backoffice: stock file identical to the last one imported; not applied again", slog.String(logKeyFile, name),
			slog.String("imported_as", imp.Name), slog.String("moved_to", moved))
	}
	return nil
}

// refuse records a stock file that cannot be applied, writes the reason beside it in failed/
// and moves it there.
func (a *Agent) refuse(ctx context.Context, dir, name, sha string, size int64, reason error) error {
	if err := a.o.DB.RecordStockImportFailure(ctx, name, sha, size, reason.Error()); err != nil {
		return err
	}
	a.refused.Add(1)
	return a.moveRefused(ctx, dir, name, size, reason.Error(), a.now())
}

// moveRefused writes the reason a stock file was refused beside it in failed/ and moves it there.
// When it cannot, the next run finds the refusal (StockFileRefused) and tries again.
func (a *Agent) moveRefused(ctx context.Context, dir, name string, size int64, reason string, refusedAt time.Time) error {
	failed := filepath.Join(dir, FailedDir)
	if err := mkdirShared(failed); err != nil {
		return settled(err)
	}
	dest := uniqueName(failed, name, a.now(), ErrorFileSuffix) // an .error.txt left when its file was taken away is kept too
	text := fmt.Sprintf("storeedge could not import the stock file %s (refused %s, %d bytes):\n\n%s\n\n"+
		"Nothing from this file was applied. Correct it and drop it again in %s\n",
		name, refusedAt.UTC().Format(time.RFC3339), size, reason, dir)
	errorFile := filepath.Join(failed, dest+ErrorFileSuffix)
	if err := writeShared(errorFile, []byte(text)); err != nil {
		return settled(err)
	}
	if err := durable.Rename(filepath.Join(dir, name), filepath.Join(failed, dest)); err != nil {
		if !errors.As(err, new(*durable.SyncError)) {
			os.Remove(errorFile) // not moved: written again beside the file at the next try
		}
		return settled(err)
	}
	if err := durable.SyncDir(dir); err != nil { // the file left it too, as in moveTo
		return settled(err)
	}
	if err := a.o.DB.StockFileMoved(ctx, name); err != nil {
		return settled(err)
	}
	a.log.Error("backoffice: stock file refused; nothing from it was applied", slog.String(logKeyFile, name),
		slog.String(logKeyError, reason), slog.String("moved_to", filepath.Join(FailedDir, dest)))
	return nil
}

// readSettled reads a file once it has been left unchanged for ImportSettle and does not change
// while read; ok is false when it is still changing (or, on Windows, while the program writing
// it keeps others from reading it). A file over MaxStockFileBytes is not read.
func (a *Agent) readSettled(ctx context.Context, path string) (data []byte, size int64, ok bool, err error) {
	before, err := os.Stat(path)
	if err != nil {
		return nil, 0, false, err
	}
	if age := time.Since(before.ModTime()); a.o.ImportSettle > 0 && age < a.o.ImportSettle { // the file's time is the system's
		if err := backoff.Sleep(ctx, min(a.o.ImportSettle-age, a.o.ImportSettle)); err != nil {
			return nil, 0, false, err
		}
	}
	settled, err := os.Stat(path)
	if err != nil {
		return nil, 0, false, err
	}
	if !sameFile(before, settled) {
		return nil, 0, false, nil
	}
	if settled.Size() > MaxStockFileBytes {
		return nil, settled.Size(), true, nil
	}
	f, err := os.Open(path)
	if isSharingViolation(err) {
		return nil, 0, false, nil // still held by the program writing it
	}
	if err != nil {
		return nil, 0, false, err
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, MaxStockFileBytes+1))
	if isSharingViolation(err) {
		return nil, 0, false, nil // a range the program writing it still locks (Windows)
	}
	if err != nil {
		return nil, 0, false, err
	}
	after, err := f.Stat()
	if err != nil {
		return nil, 0, false, err
	}
	if !sameFile(settled, after) || int64(len(data)) != after.Size() {
		return nil, 0, false, nil
	}
	return data, after.Size(), true, nil
}

// heldBack notes that the stock file name is left for the next run, holding back the files after
// it, and returns nil; once it has been for stockStuckAfter, the error that says so.
func (a *Agent) heldBack(name string) error {
	if a.unsettled == nil {
		a.unsettled = map[string]time.Time{}
	}
	since, ok := a.unsettled[name]
	if !ok {
		since = a.now()
		a.unsettled[name] = since
	}
	if waited := a.now().Sub(since); waited >= stockStuckAfter {
		// The text names when it began, not how long it has lasted, so that it is the same at
		// each run and logged once while it lasts.
		return fmt.Errorf("backoffice: import: the stock file %s has been changing, or held open by another program, since %s: "+
			"it and the files after it wait (write each file under a temporary name and rename it once complete)", name, since.UTC().Format(time.RFC3339))
	}
	a.log.Debug("backoffice: stock file still changing; it and the files after it are left for the next run", slog.String(logKeyFile, name))
	return nil
}

// mkdirShared creates the folder done/ or failed/ of the import folder, unless it exists, with
// mode 0755 whatever the process's umask (the packaged unit's is 0027): the ERP reads what is
// there (back-office.md), and it is seldom in storeedge's group; who may is the import folder's
// to say. A folder that exists keeps the mode it has.
func mkdirShared(path string) error {
	err := os.Mkdir(path, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}

// writeShared writes a new file with mode 0644 whatever the umask, as mkdirShared does folders.
func writeShared(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func sameFile(a, b fs.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// moveTo moves a file of dir into its sub-folder sub, under a name not taken there, and returns
// the path it went to, relative to dir.
func moveTo(dir, sub, name string) (string, error) {
	dst := filepath.Join(dir, sub)
	if err := mkdirShared(dst); err != nil {
		return "", err
	}
	n := uniqueName(dst, name, time.Now())
	// The move is what says the file was taken: a power cut must not bring it back (the
	// import's record is durable already). Both folders changed.
	if err := durable.Rename(filepath.Join(dir, name), filepath.Join(dst, n)); err != nil {
		return "", err
	}
	if err := durable.SyncDir(dir); err != nil {
		return "", err
	}
	return filepath.Join(sub, n), nil
}

// uniqueName returns name, or when dir has a file by that name already (or by that name with one
// of besides added), the name with the time (and a counter if need be) before its extension.
func uniqueName(dir, name string, now time.Time, besides ...string) string {
	taken := func(n string) bool {
		return exists(filepath.Join(dir, n)) || slices.ContainsFunc(besides, func(s string) bool { return exists(filepath.Join(dir, n+s)) })
	}
	if !taken(name) {
		return name
	}
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext) + "." + now.UTC().Format("20060102T150405Z")
	for i := 1; ; i++ {
		n := stem + ext
		if i > 1 {
			n = fmt.Sprintf("%s-%d%s", stem, i, ext)
		}
		if !taken(n) {
			return n
		}
	}
}
