package backoffice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

func importAgent(db *storage.DB, dir string) *Agent {
	return agentFor(db, false, config.BackOffice{Import: config.BackOfficeImport{Dir: dir}})
}

func sha(data string) string {
	s := sha256.Sum256([]byte(data))
	return hex.EncodeToString(s[:])
}

func stockEntries(t *testing.T, db *storage.DB) map[string]stockAdjusted {
	t.Helper()
	pending, err := db.PendingOutbox(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]stockAdjusted{}
	imports := map[string]int{} // import time in the key -> its ordinal, in queue order
	for _, e := range pending {
		if e.Type != storage.OutboxStockAdjusted {
			continue
		}
		var d stockAdjusted
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		// The documented key: stock:<sha256>:<import time, Unix ms>:<row>. The map is keyed by
		// the key with the time replaced by the import's ordinal (i1, i2…), which a test can
		// write down.
		parts := strings.Split(e.Key, ":")
		if len(parts) != 4 || parts[0] != "stock" || parts[1] != d.SHA256 || parts[3] != strconv.Itoa(d.Row) {
			t.Fatalf("key %q does not match its data %+v", e.Key, d)
		}
		if _, err := strconv.ParseInt(parts[2], 10, 64); err != nil {
			t.Fatalf("key %q: the import time is not a number", e.Key)
		}
		if imports[parts[2]] == 0 {
			imports[parts[2]] = len(imports) + 1
		}
		out[fmt.Sprintf("stock:%s:i%d:%d", d.SHA256, imports[parts[2]], d.Row)] = d
	}
	return out
}

// stockAdjusted mirrors the outbox data of a stock row (storage keeps its own unexported).
type stockAdjusted struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
	File      string `json:"file"`
	SHA256    string `json:"sha256"`
	Row       int    `json:"row"`
}

func drop(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

// TestImportOnce applies a CSV and a JSON file once each, queues a stock.adjusted outbox entry
// per row with the documented key, and moves the files to done/; the latest file dropped again
// is not applied twice, and an earlier one dropped again is (the levels go back).
func TestImportOnce(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	changed := db.OutboxChanged()
	csvFile := "\uFEFFProduct_ID;Quantity\r\nP1;12\r\n\"P 2\";0\r\nP3;-1\r\n"
	jsonFile := `[{"product_id":"P1","quantity":7,"name":"ignored"},{"product_id":"P9","quantity":3}]`
	drop(t, dir, "stock-1.csv", csvFile)
	drop(t, dir, "stock-2.JSON", jsonFile)
	drop(t, dir, ".stock-3.csv", "partial")        // being written under a dot name
	drop(t, dir, "stock-4.csv.part", "partial")    // being written under another extension
	drop(t, dir, "readme.txt", "not a stock file") // not ours
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("the outbox worker was not woken")
	}
	got := stockEntries(t, db)
	want := map[string]stockAdjusted{
		"stock:" + sha(csvFile) + ":i1:1":  {"P1", 12, "stock-1.csv", sha(csvFile), 1},
		"stock:" + sha(csvFile) + ":i1:2":  {"P 2", 0, "stock-1.csv", sha(csvFile), 2},
		"stock:" + sha(csvFile) + ":i1:3":  {"P3", -1, "stock-1.csv", sha(csvFile), 3},
		"stock:" + sha(jsonFile) + ":i2:1": {"P1", 7, "stock-2.JSON", sha(jsonFile), 1},
		"stock:" + sha(jsonFile) + ":i2:2": {"P9", 3, "stock-2.JSON", sha(jsonFile), 2},
	}
	if len(got) != len(want) {
		t.Fatalf("outbox %+v", got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
	if f := strings.Join(files(t, dir), " "); f != ".stock-3.csv done/stock-1.csv done/stock-2.JSON readme.txt stock-4.csv.part" {
		t.Fatalf("files after the run: %s", f)
	}

	// The ERP sends the latest file again, under the same name: a resend, not applied.
	drop(t, dir, "stock-2.JSON", jsonFile)
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if again := stockEntries(t, db); len(again) != len(want) {
		t.Fatalf("the latest file sent again was applied again: %d entries", len(again))
	}
	if _, err := os.Stat(filepath.Join(dir, "stock-2.JSON")); !os.IsNotExist(err) {
		t.Fatal("the repeated file was left in the import folder")
	}
	if done, _ := os.ReadDir(filepath.Join(dir, DoneDir)); len(done) != 3 {
		t.Fatalf("done/ has %d files, want 3 (the repeat under another name)", len(done))
	}
	st := a.Status().Import
	if st == nil || st.Done != 2 || st.Failed != 0 || st.LastDone == nil || st.LastDone.Name != "stock-2.JSON" || st.LastDone.Rows != 2 {
		t.Fatalf("import status %+v", st)
	}

	// Then the first file again: P1 goes back from 7 to 12. It is applied, under keys of its own
	// (the cloud would take the first file's keys for a duplicate and keep 7).
	drop(t, dir, "stock-1.csv", csvFile)
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got = stockEntries(t, db)
	want["stock:"+sha(csvFile)+":i3:1"] = stockAdjusted{"P1", 12, "stock-1.csv", sha(csvFile), 1}
	want["stock:"+sha(csvFile)+":i3:2"] = stockAdjusted{"P 2", 0, "stock-1.csv", sha(csvFile), 2}
	want["stock:"+sha(csvFile)+":i3:3"] = stockAdjusted{"P3", -1, "stock-1.csv", sha(csvFile), 3}
	if len(got) != len(want) {
		t.Fatalf("after the first file came back, the outbox holds %+v", got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
	if st := a.Status().Import; st == nil || st.Done != 3 || st.LastDone == nil || st.LastDone.Name != "stock-1.csv" {
		t.Fatalf("import status after the first file came back %+v", st)
	}
}

// TestImportRefused moves a malformed file to failed/ with an error file naming the line, and
// applies none of its rows.
func TestImportRefused(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	drop(t, dir, "bad.csv", "product_id,quantity\nP1,5\nP2,five\n")
	drop(t, dir, "bad.json", "[\n {\"product_id\": \"P1\", \"quantity\": 1},\n {\"product_id\": \"P2\"}\n]")
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(stockEntries(t, db)); n != 0 {
		t.Fatalf("%d rows of refused files queued", n)
	}
	for name, want := range map[string]string{"bad.csv": `line 3: quantity "five" is not a whole number`, "bad.json": "line 3: item 2 has no quantity"} {
		if _, err := os.Stat(filepath.Join(dir, FailedDir, name)); err != nil {
			t.Errorf("%s not in failed/: %v", name, err)
		}
		text, err := os.ReadFile(filepath.Join(dir, FailedDir, name+ErrorFileSuffix))
		if err != nil || !strings.Contains(string(text), want) || !strings.Contains(string(text), "Nothing from this file was applied") {
			t.Errorf("%s: error file %q (%v), want it to say %q", name, text, err, want)
		}
	}
	st := a.Status().Import
	if st.Failed != 2 || st.Done != 0 || st.LastFailed == nil || !strings.Contains(st.LastFailed.Error, "line 3") || a.Refusals() != 2 {
		t.Fatalf("status %+v, %d refusals", st, a.Refusals())
	}
	// The same bad file again: refused again, kept beside the first.
	drop(t, dir, "bad.csv", "product_id,quantity\nP1,5\nP2,five\n")
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if failed, _ := os.ReadDir(filepath.Join(dir, FailedDir)); len(failed) != 6 {
		t.Fatalf("failed/ has %d files", len(failed))
	}
	// The refused file taken away from failed/ to be corrected, its .error.txt left: the next
	// refusal under that name keeps it (storeedge never deletes anything in failed/).
	if err := os.Remove(filepath.Join(dir, FailedDir, "bad.json")); err != nil {
		t.Fatal(err)
	}
	kept, _ := os.ReadFile(filepath.Join(dir, FailedDir, "bad.json"+ErrorFileSuffix))
	drop(t, dir, "bad.json", "[]x")
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, FailedDir, "bad.json"+ErrorFileSuffix)); string(now) != string(kept) {
		t.Fatalf("the .error.txt left in failed/ was written over:\n%s", now)
	}
	if failed, _ := os.ReadDir(filepath.Join(dir, FailedDir)); len(failed) != 7 {
		t.Fatalf("failed/ has %d files, want the new refusal's two beside the five", len(failed))
	}
}

// TestImportTooBig refuses a file over the limit without reading it.
func TestImportTooBig(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	drop(t, dir, "huge.csv", "product_id,quantity\n"+strings.Repeat("P1,1\n", MaxStockFileBytes/5+1))
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(filepath.Join(dir, FailedDir, "huge.csv"+ErrorFileSuffix))
	if !strings.Contains(string(text), "the limit is 10485760 (10 MiB)") {
		t.Fatalf("error file %q", text)
	}
}

// keepAppending appends a row to the file at path every 5 ms, as an ERP writing it would, until
// the function it returns is called.
func keepAppending(path string) (stop func()) {
	stopped := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stopped:
				return
			case <-time.After(5 * time.Millisecond):
			}
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			fmt.Fprintf(f, "Q%d,1\n", i)
			f.Close()
		}
	}()
	return func() { close(stopped); <-done }
}

// TestImportWaitsForAFileBeingWritten leaves a file that changed too recently, then takes it.
func TestImportWaitsForAFileBeingWritten(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	// The ERP appends every 5 ms; a settle time a hundred times longer keeps the file "being
	// written" on a loaded machine too.
	a.o.ImportSettle = 500 * time.Millisecond
	drop(t, dir, "s.csv", "product_id,quantity\nP1,1\n")
	path := filepath.Join(dir, "s.csv")
	stop := keepAppending(path)
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := os.Stat(path); err != nil {
		t.Fatal("a file being written was taken")
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, DoneDir, "s.csv")); err != nil {
		t.Fatal("the file was not imported once left alone")
	}
}

// Stock levels are absolute: a file still being written holds back the files named after it, so
// that its older levels never overwrite theirs.
func TestImportKeepsTheNameOrder(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	a.o.ImportSettle = 500 * time.Millisecond // a hundred times the ERP's pace, as above
	drop(t, dir, "stock-0001.csv", "product_id,quantity\nP1,5\n")
	drop(t, dir, "stock-0002.csv", "product_id,quantity\nP1,9\n")
	stop := keepAppending(filepath.Join(dir, "stock-0001.csv")) // the ERP is still writing the first
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); len(got) != 2 || len(stockEntries(t, db)) != 0 {
		t.Fatalf("a file after one being written was imported: %v", got)
	}
	// Still changing ten minutes later: the run fails saying which file holds the others back.
	a.now = func() time.Time { return time.Now().Add(stockStuckAfter + time.Minute) }
	err := a.RunOnce(ctx)
	// The next run says it in the same words, so that the run's failure is logged once.
	again := a.RunOnce(ctx)
	stop()
	if err == nil || !strings.Contains(err.Error(), "stock-0001.csv has been changing, or held open by another program, since ") ||
		!strings.Contains(a.Status().LastError, "stock-0001.csv") {
		t.Fatalf("a file changing for 11 minutes: %v; status %q", err, a.Status().LastError)
	}
	if again == nil || again.Error() != err.Error() {
		t.Fatalf("the next run failed with %v; want the same text as %v", again, err)
	}
	if got := files(t, dir); len(got) != 2 {
		t.Fatalf("a file after one being written was imported: %v", got)
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	pending, err := db.PendingOutbox(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var p1 []string
	for _, e := range pending {
		var d stockAdjusted
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.ProductID == "P1" {
			p1 = append(p1, fmt.Sprintf("%s=%d", d.File, d.Quantity))
		}
	}
	if want := []string{"stock-0001.csv=5", "stock-0002.csv=9"}; fmt.Sprint(p1) != fmt.Sprint(want) {
		t.Fatalf("P1's levels in the order they go to the cloud: %v, want %v", p1, want)
	}
}

// A file applied that cannot be moved to done/ (here a file named done is in the way) holds back
// nothing: its levels are in, and the files after it are applied; the run says what failed.
func TestImportAppliedButNotMovedHoldsNothingBack(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	drop(t, dir, DoneDir, "not a folder")
	drop(t, dir, "stock-0001.csv", "product_id,quantity\nP1,5\n")
	drop(t, dir, "stock-0002.csv", "product_id,quantity\nP2,9\n")
	if err := a.RunOnce(context.Background()); err == nil || !strings.Contains(err.Error(), "stock-0001.csv") {
		t.Fatalf("a run whose moves failed: %v", err)
	}
	if n := len(stockEntries(t, db)); n != 2 {
		t.Fatalf("%d levels applied, want both files'", n)
	}
}

// In test mode the stock files are imported as in production (back-office.md): their levels are
// the shop's and go to the cloud.
func TestImportInTestMode(t *testing.T) {
	db := openDB(t, "")
	dir := t.TempDir()
	a := agentFor(db, true, config.BackOffice{Import: config.BackOfficeImport{Dir: dir}})
	drop(t, dir, "stock.csv", "product_id,quantity\nP1,4\n")
	if err := a.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := stockEntries(t, db); len(got) != 1 {
		t.Fatalf("levels sent in test mode: %+v, want the file's", got)
	}
}

// TestImportMissingFolder reports the folder.
// The import folder is the export folder by another path (a link here; a mount, or another name
// of the same share): the order file there is not read as stock levels, and the run says why.
func TestImportRefusesTheExportFolder(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "drop")
	if err := os.Symlink(dir, link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	createOrders(t, db, 2, false)
	a := agentFor(db, false, config.BackOffice{Export: config.BackOfficeExport{Dir: dir, Format: "csv"}, Import: config.BackOfficeImport{Dir: link}})
	err := a.RunOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), "it is a folder storeedge writes order files to") {
		t.Fatalf("run: %v, want the import refused", err)
	}
	if got, files := readOrderFiles(t, dir); len(got) != 2 || len(files) != 1 {
		t.Fatalf("the export folder holds %d orders in %v, want the 2 in one file, left in place", len(got), files)
	}
	if levels := stockEntries(t, db); len(levels) != 0 {
		t.Fatalf("stock levels set from the order file: %v", levels)
	}
}

func TestImportMissingFolder(t *testing.T) {
	db := openDB(t, "")
	a := importAgent(db, filepath.Join(t.TempDir(), "nope"))
	if err := a.RunOnce(context.Background()); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("run: %v", err)
	}
}

// A file applied and then not moved to done/ (on Windows, a program holding it open refuses the
// move; here done/ cannot be made) is known again at the next run and only moved: not applied a
// second time over the file applied after it, which would set the levels back. Once moved, the
// same file dropped again is applied.
func TestImportAppliedButNotMovedIsNotAppliedAgain(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	first, second := "product_id,quantity\nP1,10\n", "product_id,quantity\nP1,3\n"
	drop(t, dir, "stock-1.csv", first)
	drop(t, dir, "stock-2.csv", second)
	drop(t, dir, DoneDir, "in the way") // a file where done/ should be: every move fails
	if err := a.RunOnce(ctx); err == nil {
		t.Fatal("the run succeeded with done/ impossible to make")
	}
	if got := stockEntries(t, db); len(got) != 2 {
		t.Fatalf("after the first run: %+v, want each file applied once", got)
	}
	if err := os.Remove(filepath.Join(dir, DoneDir)); err != nil {
		t.Fatal(err)
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := stockEntries(t, db)
	want := map[string]stockAdjusted{
		"stock:" + sha(first) + ":i1:1":  {"P1", 10, "stock-1.csv", sha(first), 1},
		"stock:" + sha(second) + ":i2:1": {"P1", 3, "stock-2.csv", sha(second), 1},
	}
	if len(got) != len(want) || got["stock:"+sha(first)+":i1:1"] != want["stock:"+sha(first)+":i1:1"] || got["stock:"+sha(second)+":i2:1"] != want["stock:"+sha(second)+":i2:1"] {
		t.Fatalf("after the second run: %+v, want %+v (stock-1 not applied again over stock-2)", got, want)
	}
	if f := strings.Join(files(t, dir), " "); f != "done/stock-1.csv done/stock-2.csv" {
		t.Fatalf("files after the second run: %s", f)
	}
	// Moved now, the first file copied back from done/ (same name, content and time, as a
	// copy keeps them) is new: applied, the levels go back (back-office.md).
	data, err := os.ReadFile(filepath.Join(dir, DoneDir, "stock-1.csv"))
	if err != nil {
		t.Fatal(err)
	}
	drop(t, dir, "stock-1.csv", string(data))
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stockEntries(t, db); got["stock:"+sha(first)+":i3:1"] != want["stock:"+sha(first)+":i1:1"] {
		t.Fatalf("the first file dropped again after it was moved: %+v, want it applied again", got)
	}
}

// A folder listed empty, not even done/ in it (the empty mount point of a share that is not
// mounted), forgets no file applied and not moved: back with the share, such a file is only moved,
// not applied again over the file applied after it.
func TestImportUnmountedShareForgetsNothing(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	drop(t, dir, "stock-1.csv", "product_id,quantity\nP1,10\n")
	drop(t, dir, "stock-2.csv", "product_id,quantity\nP1,3\n")
	drop(t, dir, DoneDir, "in the way") // every move fails
	if err := a.RunOnce(ctx); err == nil {
		t.Fatal("the run succeeded with done/ impossible to make")
	}
	share := t.TempDir() // where the share's files are while it is not mounted
	moveAll(t, dir, share)
	if err := a.RunOnce(ctx); err != nil {
		t.Fatalf("a run on the empty folder: %v", err)
	}
	moveAll(t, share, dir)
	if err := os.Remove(filepath.Join(dir, DoneDir)); err != nil {
		t.Fatal(err)
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stockEntries(t, db); len(got) != 2 {
		t.Fatalf("levels sent: %+v, want each file's once (stock-1 not applied again over stock-2)", got)
	}
	if f := strings.Join(files(t, dir), " "); f != "done/stock-1.csv done/stock-2.csv" {
		t.Fatalf("files after the share came back: %s", f)
	}
}

// A file applied and not moved, then replaced by the ERP under the same name before the next
// run, leaves no mark that would keep the first content from being applied when it comes again.
func TestImportUnmovedThenReplaced(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	ten, three := "product_id,quantity\nP1,10\n", "product_id,quantity\nP1,3\n"
	drop(t, dir, "stock.csv", ten)
	drop(t, dir, DoneDir, "in the way")
	if err := a.RunOnce(ctx); err == nil {
		t.Fatal("the run succeeded with done/ impossible to make")
	}
	if err := os.Remove(filepath.Join(dir, DoneDir)); err != nil {
		t.Fatal(err)
	}
	drop(t, dir, "stock.csv", three) // the ERP writes its next file under the same name
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	drop(t, dir, "stock.csv", ten) // and the first levels again
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stockEntries(t, db); len(got) != 3 || got["stock:"+sha(ten)+":i3:1"].Quantity != 10 {
		t.Fatalf("after 10, 3 and 10 again: %+v, want each applied", got)
	}
}

// A refused file that cannot be moved to failed/ (here a file named failed is in the way) is
// refused once: the runs after only try the move again, and count nothing more; once the way is
// clear it is moved, with its reason beside it. A file over the size limit likewise.
func TestImportRefusedButNotMovedIsCountedOnce(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	drop(t, dir, FailedDir, "in the way")
	drop(t, dir, "bad.csv", "product_id,quantity\nP1,five\n")
	big := filepath.Join(dir, "big.csv")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxStockFileBytes+1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := a.RunOnce(ctx); err == nil {
			t.Fatal("a run succeeded with failed/ impossible to make")
		}
	}
	if st := a.Status().Import; st.Failed != 2 || a.Refusals() != 2 {
		t.Fatalf("after three runs: %d refused in the status, %d refusals; want each file once", st.Failed, a.Refusals())
	}
	if err := os.Remove(filepath.Join(dir, FailedDir)); err != nil {
		t.Fatal(err)
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if f := strings.Join(files(t, dir), " "); f != "failed/bad.csv failed/bad.csv.error.txt failed/big.csv failed/big.csv.error.txt" {
		t.Fatalf("files once the way is clear: %s", f)
	}
	text, _ := os.ReadFile(filepath.Join(dir, FailedDir, "bad.csv"+ErrorFileSuffix))
	if !strings.Contains(string(text), `line 2: quantity "five" is not a whole number`) {
		t.Fatalf("error file:\n%s", text)
	}
	if st := a.Status().Import; st.Failed != 2 || a.Refusals() != 2 {
		t.Fatalf("after the move: %d refused in the status, %d refusals", st.Failed, a.Refusals())
	}
}

// back-office.md's edge cases of the import folder: a CSV of its header alone, or the JSON [],
// is applied with no row (moved to done/, counted imported); a CSV whose first line is blank is
// read as comma-separated, so a semicolon one is refused as lacking its columns; a symbolic
// link is left alone, and not counted.
func TestImportEdgeCases(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	dir := t.TempDir()
	a := importAgent(db, dir)
	drop(t, dir, "a-empty.csv", "product_id;quantity\n")
	drop(t, dir, "b-empty.json", "[]")
	drop(t, dir, "c-blank.csv", "\nproduct_id;quantity\nP1;5\n")
	target := filepath.Join(t.TempDir(), "elsewhere.csv")
	if err := os.WriteFile(target, []byte("product_id,quantity\nP1,5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "d-link.csv")); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	if err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(files(t, dir), " ")
	for _, want := range []string{DoneDir + "/a-empty.csv", DoneDir + "/b-empty.json", FailedDir + "/c-blank.csv", "d-link.csv"} {
		if !strings.Contains(got, want) {
			t.Errorf("the folder holds %s; want %s", got, want)
		}
	}
	if text, _ := os.ReadFile(filepath.Join(dir, FailedDir, "c-blank.csv"+ErrorFileSuffix)); !strings.Contains(string(text), "product_id") {
		t.Errorf("the blank first line's file refused with %q, want its columns named", text)
	}
	if n := len(stockEntries(t, db)); n != 0 {
		t.Errorf("%d rows queued, want none", n)
	}
	if st := a.Status().Import; st.Done != 2 || st.Failed != 1 {
		t.Errorf("status %+v: want the two empty files imported, the blank-line one refused, the link not counted", st)
	}
}
