package doctor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// checkFolders checks the folders outside data_dir the service writes to: the scheduled
// backups' and the back office's. Each is there and a folder, writable by the service account
// (when doctor runs as root), and inside what the service's sandbox lets it write: a folder
// the unit does not open is read-only to the service, and the first backup or export fails.
func checkFolders(o Options) []Result {
	c := o.Config
	var out []Result
	var writable []string
	confined := false
	if o.Sandbox != nil {
		writable, confined = o.Sandbox()
	}
	for _, f := range []struct{ key, dir string }{
		{"backup.dir", c.Backup.Dir},
		{"backoffice.export.dir", c.BackOffice.Export.Dir},
		{"backoffice.export.test_dir", c.BackOffice.Export.TestDir},
		{"backoffice.import.dir", c.BackOffice.Import.Dir},
	} {
		if f.dir == "" {
			continue
		}
		check := f.key + " " + f.dir
		fi, err := statWithin(f.dir, folderTimeout)
		switch {
		case errors.Is(err, os.ErrNotExist):
			out = append(out, warn("data", check, "does not exist", "create it, or mount the share it is on; until then what goes there fails"))
			continue // the unit cannot open a folder that is not there: it would not start
		case err != nil:
			out = append(out, fail("data", check, err.Error(), "check the path in "+f.key))
			continue // a share that does not answer would hold the next look too
		case !fi.IsDir():
			out = append(out, fail("data", check, "is not a folder", "set "+f.key+" to a folder"))
		default:
			if r, ok := checkServiceCanWrite(f.key, f.dir, fi, o.ServiceUser); ok {
				out = append(out, r)
			}
		}
		if confined {
			out = append(out, checkSandboxed(f.key, f.dir, writable))
		}
	}
	return out
}

// folderTimeout bounds a look at a folder: a network share that hangs would hold doctor (and the
// support channel's diagnostics, which run it) for ever.
const folderTimeout = 5 * time.Second

// statWithin is os.Stat, given up after d.
func statWithin(path string, d time.Duration) (os.FileInfo, error) {
	type result struct {
		fi  os.FileInfo
		err error
	}
	done := make(chan result, 1)
	go func() {
		fi, err := os.Stat(path)
		done <- result{fi, err}
	}()
	select {
	case r := <-done:
		return r.fi, r.err
	case <-time.After(d):
		return nil, fmt.Errorf("no answer within %s (a network share that hangs?)", d)
	}
}

// realPath is path with its symbolic links resolved, or path itself when they cannot be.
func realPath(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		return p
	}
	return filepath.Clean(path)
}

// checkSandboxed says whether dir is inside one of the folders the service may write to, links
// resolved on both sides (systemd opens the folders a link leads to).
func checkSandboxed(key, dir string, writable []string) Result {
	check := key + " open to the service"
	real := realPath(dir)
	for _, w := range writable {
		if rel, err := filepath.Rel(realPath(w), real); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return pass("data", check, "inside "+w+", which the service's unit lets it write to")
		}
	}
	return fail("data", check, "the service's unit lets it write only under "+strings.Join(writable, ", ")+": "+dir+" is read-only to it",
		"add it to the unit (systemctl edit storeedge: [Service] ReadWritePaths="+dir+"; install.md, Linux step 5), then systemctl restart storeedge")
}
