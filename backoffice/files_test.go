package backoffice

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/orders"
	"github.com/storeedge/storeedge/storage"
)

// TestExportFormats exports orders in each format and reads the files back the way an ERP
// would: each order once, exactly as stored; a second run writes nothing; new orders go to a
// new file.
func TestExportFormats(t *testing.T) {
	for _, format := range []string{config.ExportJSON, config.ExportCSV, config.ExportXML} {
		t.Run(format, func(t *testing.T) {
			ctx := context.Background()
			db := openDB(t, "")
			dir := t.TempDir()
			a := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: dir, Format: format}})
			a.o.BatchSize = 4
			list := createOrders(t, db, 10, false)
			if err := a.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			got, files := readOrderFiles(t, dir)
			if len(files) != 3 {
				t.Errorf("10 orders in files of 4 made %d files: %v", len(files), files)
			}
			for _, f := range files {
				if !strings.HasPrefix(f, "orders-files-") || !strings.HasSuffix(f, "."+format) {
					t.Errorf("file name %q", f)
				}
			}
			want := wantOrders(t, db, list)
			if format == config.ExportCSV {
				for i := range want {
					want[i] = csvView(want[i])
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("read back:\n%+v\nwant\n%+v", got, want)
			}
			for _, o := range list {
				if n := countStage(t, db, o.ID, orders.StageExported); n != 1 {
					t.Errorf("order %d: %d exported ledger entries", o.Number, n)
				}
			}

			if err := a.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if _, again := readOrderFiles(t, dir); len(again) != len(files) {
				t.Fatalf("a second run wrote files: %v", again)
			}

			more := createOrders(t, db, 2, false)
			if err := a.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			got, after := readOrderFiles(t, dir)
			if len(after) != len(files)+1 {
				t.Fatalf("new orders: files %v", after)
			}
			idsOnce(t, got)
			if len(got) != 12 || got[10].ID != more[0].ID || got[11].ID != more[1].ID {
				t.Fatalf("new orders not in a file of their own at the end: %d orders", len(got))
			}
			st := a.Status()
			if len(st.Targets) != 1 || st.Targets[0].Exported != 12 || st.Targets[0].Pending != 0 || st.LastError != "" || st.LastRun.IsZero() {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

var errCrash = errors.New("crash")

// crashAt returns a hook that stops the run at the nth time (1-based) a step is reached.
func crashAt(step string, nth int) func(string) error {
	seen := 0
	return func(s string) error {
		if s == step {
			seen++
			if seen == nth {
				return errCrash
			}
		}
		return nil
	}
}

// TestCrashAtEveryStep stops a run after each durable step of writing a file (as kill -9 would:
// what is on disk and in the database stays, nothing else runs), for the first, a middle and
// the last file of the run, then runs again in a new agent: each order is in the folder exactly
// once, no temporary file is left, each ledger says exported once.
func TestCrashAtEveryStep(t *testing.T) {
	for _, step := range []string{stepRecorded, stepTempWritten, stepMarked, stepRenamed, stepDone} {
		for _, nth := range []int{1, 2, 3} {
			t.Run(step+"/"+string(rune('0'+nth)), func(t *testing.T) {
				ctx := context.Background()
				dbPath := filepath.Join(t.TempDir(), "shop.db")
				db := openDB(t, dbPath)
				dir := t.TempDir()
				bo := config.BackOffice{Export: config.BackOfficeExport{Dir: dir, Format: config.ExportCSV}}
				list := createOrders(t, db, 7, false)
				a := agentFor(db, false, bo)
				a.o.BatchSize = 3
				a.hook = crashAt(step, nth)
				if err := a.RunOnce(ctx); !errors.Is(err, errCrash) {
					t.Fatalf("run with a crash: %v", err)
				}
				// Orders keep coming while the server is down and up again.
				list = append(list, createOrders(t, db, 2, false)...)
				db.Close()
				db = openDB(t, dbPath)
				b := agentFor(db, false, bo)
				b.o.BatchSize = 3
				if err := b.RunOnce(ctx); err != nil {
					t.Fatal(err)
				}
				got, _ := readOrderFiles(t, dir)
				seen := idsOnce(t, got)
				for _, o := range list {
					if !seen[o.ID] {
						t.Errorf("order %d missing", o.Number)
					}
					if n := countStage(t, db, o.ID, orders.StageExported); n != 1 {
						t.Errorf("order %d: %d exported ledger entries", o.Number, n)
					}
				}
				if len(got) != len(list) {
					t.Errorf("%d orders in the folder, want %d", len(got), len(list))
				}
			})
		}
	}
}

// TestRecoveryCases drives the steps by hand into the states a crash leaves, including the ones
// a hook cannot reach.
func TestRecoveryCases(t *testing.T) {
	ctx := context.Background()
	target := storage.ExportTarget{Name: storage.ExportFiles}
	setup := func(t *testing.T) (*storage.DB, *Agent, fileTarget, storage.ExportBatch, []orders.Order) {
		db := openDB(t, "")
		dir := t.TempDir()
		a := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: dir, Format: config.ExportJSON}})
		// The run that made the batch found the folder, and marked it as its own.
		if err := a.markFolder(ctx, a.fileTargets()[0]); err != nil {
			t.Fatal(err)
		}
		list := createOrders(t, db, 3, false)
		b, ok, err := db.CreateExportBatch(ctx, target, config.ExportJSON, 10, fileName(storage.ExportFiles, "json"))
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		return db, a, a.fileTargets()[0], b, list
	}
	check := func(t *testing.T, a *Agent, list []orders.Order, wantFiles int) {
		t.Helper()
		if err := a.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		got, files := readOrderFiles(t, a.o.Config.Export.Dir)
		seen := idsOnce(t, got)
		if len(files) != wantFiles {
			t.Errorf("files %v, want %d", files, wantFiles)
		}
		for _, o := range list {
			if wantFiles > 0 && !seen[o.ID] {
				t.Errorf("order %d missing", o.Number)
			}
			if n := countStage(t, a.o.DB, o.ID, orders.StageExported); n != 1 {
				t.Errorf("order %d: %d exported ledger entries", o.Number, n)
			}
		}
	}

	t.Run("recorded, no file", func(t *testing.T) {
		_, a, _, _, list := setup(t)
		check(t, a, list, 1)
	})
	t.Run("half-written temporary file", func(t *testing.T) {
		_, a, ft, b, list := setup(t)
		os.WriteFile(filepath.Join(ft.dir, tmpPrefix+b.File), []byte(`[{"id":`), 0o600)
		check(t, a, list, 1)
	})
	t.Run("temporary file complete, not renamed", func(t *testing.T) {
		db, a, ft, b, list := setup(t)
		if err := a.writeTemp(ctx, filepath.Join(ft.dir, tmpPrefix+b.File), b); err != nil {
			t.Fatal(err)
		}
		if err := db.MarkExportBatchWritten(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		check(t, a, list, 1)
	})
	t.Run("renamed, not marked done", func(t *testing.T) {
		db, a, ft, b, list := setup(t)
		tmp := filepath.Join(ft.dir, tmpPrefix+b.File)
		a.writeTemp(ctx, tmp, b)
		db.MarkExportBatchWritten(ctx, b.ID)
		if err := os.Rename(tmp, filepath.Join(ft.dir, b.File)); err != nil {
			t.Fatal(err)
		}
		check(t, a, list, 1)
	})
	t.Run("renamed, then taken by the ERP before the restart", func(t *testing.T) {
		db, a, ft, b, list := setup(t)
		tmp := filepath.Join(ft.dir, tmpPrefix+b.File)
		a.writeTemp(ctx, tmp, b)
		db.MarkExportBatchWritten(ctx, b.ID)
		os.Rename(tmp, filepath.Join(ft.dir, b.File))
		os.Remove(filepath.Join(ft.dir, b.File)) // the ERP imported it and took it away
		check(t, a, list, 0)                     // not written a second time
	})
	t.Run("renamed, database lost the written mark", func(t *testing.T) {
		_, a, ft, b, list := setup(t)
		tmp := filepath.Join(ft.dir, tmpPrefix+b.File)
		a.writeTemp(ctx, tmp, b)
		os.Rename(tmp, filepath.Join(ft.dir, b.File))
		before, _ := os.ReadFile(filepath.Join(ft.dir, b.File))
		check(t, a, list, 1)
		after, _ := os.ReadFile(filepath.Join(ft.dir, b.File))
		if string(before) != string(after) {
			t.Error("the file in place was rewritten")
		}
	})
	t.Run("stray temporary files", func(t *testing.T) {
		_, a, ft, _, list := setup(t)
		stray := filepath.Join(ft.dir, tmpPrefix+"orders-files-00000009-00000009-99.json")
		os.WriteFile(stray, []byte("[{"), 0o600)
		other := filepath.Join(ft.dir, ".erp-lock")
		os.WriteFile(other, nil, 0o600)
		if err := a.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if exists(stray) {
			t.Error("a stray temporary file was left")
		}
		if !exists(other) {
			t.Error("a dot file that is not ours was removed")
		}
		os.Remove(other)
		check(t, a, list, 1)
	})
}

// stoppedAfterMarked makes three orders and a run that exports them to dir and stops once their
// file is recorded complete, before it is renamed; it returns the database, opened again as at
// the next start, and the orders.
func stoppedAfterMarked(t *testing.T, dir string) (*storage.DB, []orders.Order) {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "shop.db")
	db := openDB(t, dbPath)
	list := createOrders(t, db, 3, false)
	a := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: dir, Format: config.ExportCSV}})
	a.hook = crashAt(stepMarked, 1)
	if err := a.RunOnce(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("run with a stop: %v", err)
	}
	db.Close()
	return openDB(t, dbPath), list
}

// moveAll moves every file of folder from into folder to: a share unmounted (its files away, the
// mount point empty), or mounted again.
func moveAll(t *testing.T, from, to string) {
	t.Helper()
	entries, _ := os.ReadDir(from)
	for _, e := range entries {
		if err := os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// wantNotExported fails the test when one of list was recorded exported.
func wantNotExported(t *testing.T, db *storage.DB, list []orders.Order) {
	t.Helper()
	for _, o := range list {
		if n := countStage(t, db, o.ID, orders.StageExported); n != 0 {
			t.Fatalf("order %d recorded exported while its file is away", o.Number)
		}
	}
}

// wantExportedOnce fails the test unless each of list is in dir's order files and recorded
// exported once.
func wantExportedOnce(t *testing.T, db *storage.DB, dir string, list []orders.Order) {
	t.Helper()
	got, _ := readOrderFiles(t, dir)
	seen := idsOnce(t, got)
	for _, o := range list {
		if !seen[o.ID] || countStage(t, db, o.ID, orders.StageExported) != 1 {
			t.Errorf("order %d: in the folder %v, exported entries %d", o.Number, seen[o.ID], countStage(t, db, o.ID, orders.StageExported))
		}
	}
}

// A folder storeedge wrote to that comes back without its marker is another folder under the same
// path: a share not mounted at the restart after a stop between recording a file complete and
// renaming it, its empty mount point in its place. The file is neither assumed taken by the ERP
// nor written where no ERP looks: the orders wait, the error says why, and once the share is
// back every order reaches it, once.
func TestUnmountedShareAfterAStop(t *testing.T) {
	ctx := context.Background()
	share := t.TempDir()
	bo := config.BackOffice{Export: config.BackOfficeExport{Dir: share, Format: config.ExportCSV}}
	db, list := stoppedAfterMarked(t, share)
	// At the restart the share is not mounted: its files are away, the mount point is empty.
	away := t.TempDir()
	moveAll(t, share, away)
	b := agentFor(db, false, bo)
	if err := b.RunOnce(ctx); err == nil || !strings.Contains(err.Error(), "not mounted") {
		t.Fatalf("a run with the share away: %v, want the orders waiting for it", err)
	}
	if entries, _ := os.ReadDir(share); len(entries) != 0 {
		t.Fatalf("files written into the empty mount point: %v", entries)
	}
	wantNotExported(t, db, list)
	moveAll(t, away, share) // the share is back
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	wantExportedOnce(t, db, share, list)
}

// A share that goes away during a run, between writing an order file under its temporary name
// and renaming it (the mount point left empty), does not pass for the ERP having taken the file:
// the orders wait, and come once the share is back.
func TestShareGoneBeforeTheRename(t *testing.T) {
	ctx := context.Background()
	share, away := t.TempDir(), t.TempDir()
	db := openDB(t, filepath.Join(t.TempDir(), "shop.db"))
	bo := config.BackOffice{Export: config.BackOfficeExport{Dir: share, Format: config.ExportCSV}}
	// A first run marks the folder as storeedge's; the orders come after it.
	if err := agentFor(db, false, bo).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	list := createOrders(t, db, 3, false)
	a := agentFor(db, false, bo)
	a.hook = func(step string) error {
		if step == stepMarked {
			moveAll(t, share, away) // unmounted
		}
		return nil
	}
	if err := a.RunOnce(ctx); err == nil {
		t.Fatal("a run whose share went away before the rename succeeded")
	}
	wantNotExported(t, db, list)
	moveAll(t, away, share) // the share is back
	if err := agentFor(db, false, bo).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	wantExportedOnce(t, db, share, list)
}

// export.dir changed while an order file was recorded complete but not yet renamed: the new folder
// is new to storeedge, so the file's absence there says nothing of the ERP; the file is written
// there again, and every order reaches the new folder once.
func TestExportDirChangedAfterAStop(t *testing.T) {
	ctx := context.Background()
	db, list := stoppedAfterMarked(t, t.TempDir())
	moved := t.TempDir()
	b := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: moved, Format: config.ExportCSV}})
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := readOrderFiles(t, moved)
	seen := idsOnce(t, got)
	for _, o := range list {
		if !seen[o.ID] {
			t.Errorf("order %d is not in the new folder, though recorded exported %d times", o.Number, countStage(t, db, o.ID, orders.StageExported))
		}
	}
}

// A stop while a file is written again in a folder new to storeedge leaves the folder new: the
// next run writes the file again, whole, rather than taking a missing or half file for one the
// ERP has. And a folder reached by another path (a link to it) that has the marker is the same
// folder: a file put in place there is not written again.
func TestNewFolderAcrossStopsAndPaths(t *testing.T) {
	ctx := context.Background()
	db, list := stoppedAfterMarked(t, t.TempDir())
	moved := t.TempDir()
	bo := config.BackOffice{Export: config.BackOfficeExport{Dir: moved, Format: config.ExportCSV}}
	// The re-write in the new folder is cut short: a half temporary file, no marker yet.
	b := agentFor(db, false, bo)
	ft := b.fileTargets()[0]
	batches, err := db.UnfinishedExportBatches(ctx, ft.Name)
	if err != nil || len(batches) != 1 {
		t.Fatalf("unfinished batches %v, %v", batches, err)
	}
	os.WriteFile(filepath.Join(moved, tmpPrefix+batches[0].File), []byte("order_id,num"), 0o644)
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got, files := readOrderFiles(t, moved)
	seen := idsOnce(t, got)
	for _, o := range list {
		if !seen[o.ID] {
			t.Errorf("order %d is not in the new folder (files %v)", o.Number, files)
		}
	}

	// A stop right after a file was put in place, the ERP takes it, and the restart reaches the
	// same folder through a link: the marker says it is the same folder, so the file is not
	// written again.
	more := createOrders(t, db, 2, false)
	d := agentFor(db, false, bo)
	d.hook = crashAt(stepRenamed, 1)
	if err := d.RunOnce(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("run with a stop after the rename: %v", err)
	}
	for _, e := range func() []os.DirEntry { es, _ := os.ReadDir(moved); return es }() {
		if e.Name() != folderMarker {
			os.Remove(filepath.Join(moved, e.Name())) // the ERP took every file
		}
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(moved, link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	c := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: link, Format: config.ExportCSV}})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if again, files := readOrderFiles(t, moved); len(again) != 0 {
		t.Errorf("through a link to the same folder, files taken by the ERP came again: %v", files)
	}
	for _, o := range more {
		if n := countStage(t, db, o.ID, orders.StageExported); n != 1 {
			t.Errorf("order %d: %d exported entries, want 1", o.Number, n)
		}
	}
}

// TestMissingFolder leaves the orders waiting, with a clear error, until the folder is there.
func TestMissingFolder(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := filepath.Join(t.TempDir(), "share")
	a := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: dir}})
	createOrders(t, db, 2, false)
	err := a.RunOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing folder: %v", err)
	}
	if st := a.Status(); st.LastError == "" || st.Targets[0].Pending != 2 {
		t.Fatalf("status %+v", st)
	}
	os.Mkdir(dir, 0o755)
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := readOrderFiles(t, dir); len(got) != 2 {
		t.Fatalf("%d orders", len(got))
	}
	if st := a.Status(); st.LastError != "" || st.Targets[0].Pending != 0 || st.Targets[0].Exported != 2 {
		t.Fatalf("status %+v", st)
	}
}
