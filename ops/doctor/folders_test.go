package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
)

// The backup and back-office folders are checked as the service will use them: there, a folder,
// and open to the service when its unit confines it; a folder the unit leaves read-only fails
// with the drop-in that opens it.
func TestFoldersOutsideDataDir(t *testing.T) {
	root := t.TempDir()
	backup, export, imports := filepath.Join(root, "backup"), filepath.Join(root, "erp", "orders"), filepath.Join(root, "stock.csv")
	if err := os.MkdirAll(backup, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(imports, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.Backup.Dir, c.BackOffice.Export.Dir, c.BackOffice.Import.Dir = backup, export, imports
	res := checkFolders(Options{Config: c, Sandbox: func() ([]string, bool) { return []string{"/var/lib/storeedge", backup}, true }})
	want := map[string]Status{
		"backup.dir open to the service":            Pass,
		"backoffice.export.dir " + export:           Warn, // missing: no sandbox check (the unit would not start)
		"backoffice.import.dir " + imports:          Fail, // a file
		"backoffice.import.dir open to the service": Fail,
	}
	got := map[string]Result{}
	for _, r := range res {
		got[r.Check] = r
	}
	for check, status := range want {
		if r, ok := got[check]; !ok || r.Status != status {
			t.Errorf("%s: %+v, want %s; all: %+v", check, r, status, res)
		}
	}
	if r, ok := got["backoffice.export.dir open to the service"]; ok {
		t.Errorf("a missing folder's sandbox check: %+v", r)
	}
	if fix := got["backoffice.import.dir open to the service"].Fix; !strings.Contains(fix, "ReadWritePaths="+imports) {
		t.Errorf("fix %q does not give the drop-in", fix)
	}
	// A link into an open folder leads out of it: the folder it leads to counts.
	outside := filepath.Join(root, "outside")
	link := filepath.Join(backup, "link")
	if err := os.Mkdir(outside, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if r := checkSandboxed("backup.dir", link, []string{backup}); r.Status != Fail {
		t.Errorf("a link out of the open folder: %+v", r)
	}
	if r := checkSandboxed("backup.dir", outside, []string{link}); r.Status != Pass {
		t.Errorf("the folder an open link leads to: %+v", r)
	}
	// Not confined (no unit, or another service manager): nothing said of the sandbox.
	for _, r := range checkFolders(Options{Config: c, Sandbox: func() ([]string, bool) { return nil, false }}) {
		if strings.HasSuffix(r.Check, "open to the service") {
			t.Errorf("unconfined: %+v", r)
		}
	}
}

// A data_dir outside what the unit opens (moved off /var/lib/storeedge without its
// ReadWritePaths= line) fails with the drop-in that opens it, as the other folders do: the
// service could not open its database there.
func TestDataDirOpenToTheService(t *testing.T) {
	root := t.TempDir()
	c := config.Default()
	sandbox := func(writable ...string) func() ([]string, bool) {
		return func() ([]string, bool) { return writable, true }
	}
	find := func(res []Result) *Result {
		for i, r := range res {
			if r.Check == "data_dir open to the service" {
				return &res[i]
			}
		}
		return nil
	}
	for _, dir := range []string{filepath.Join(root, "data"), filepath.Join(root, "not-yet")} {
		if dir == filepath.Join(root, "data") {
			if err := os.Mkdir(dir, 0o750); err != nil {
				t.Fatal(err)
			}
		}
		c.DataDir = dir
		res := checkDataDir(t.Context(), Options{Config: c, Sandbox: sandbox("/var/lib/storeedge")})
		r := find(res)
		if r == nil || r.Status != Fail || !strings.Contains(r.Fix, "ReadWritePaths="+dir) {
			t.Errorf("%s outside the unit's folders: %+v", dir, r)
		}
		if missing := res[0]; strings.HasSuffix(dir, "not-yet") && (missing.Status != Warn || !strings.Contains(missing.Fix, "226/NAMESPACE")) {
			t.Errorf("a missing data_dir under a confining unit: %+v", missing)
		}
		if r := find(checkDataDir(t.Context(), Options{Config: c, Sandbox: sandbox("/var/lib/storeedge", root)})); r == nil || r.Status != Pass {
			t.Errorf("%s inside a ReadWritePaths folder: %+v", dir, r)
		}
		if r := find(checkDataDir(t.Context(), Options{Config: c, Sandbox: func() ([]string, bool) { return nil, false }})); r != nil {
			t.Errorf("%s unconfined: %+v", dir, *r)
		}
	}
}
