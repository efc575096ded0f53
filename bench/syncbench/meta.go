package syncbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/storeedge/storeedge/bench/harness"
)

// Meta describes a database directory made by bench sync, so startup and http know what is in it
// without a cloud.
type Meta struct {
	Products int       `json:"products"`
	Seed     int64     `json:"seed"`
	PageSize int       `json:"page_size"`
	Created  time.Time `json:"created"`
}

// MetaFile is the name of the Meta file in a database directory.
const MetaFile = "bench-meta.json"

// ReadMeta reads the Meta of the database directory dir.
func ReadMeta(dir string) (Meta, error) {
	var m Meta
	b, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, MetaFile), err)
	}
	if m.Products < 1 {
		return m, fmt.Errorf("%s: no product count", filepath.Join(dir, MetaFile))
	}
	return m, nil
}

func writeMeta(dir string, m Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, MetaFile), append(b, '\n'), 0o644)
}

// replaceDir moves src to dst. dst may exist only if it is a database directory of ours (it has
// our meta file or a storeedge.db) or empty, so a mistyped -data-dir never deletes anything else.
func replaceDir(src, dst string) error {
	if entries, err := os.ReadDir(dst); err == nil && len(entries) > 0 {
		_, errMeta := os.Stat(filepath.Join(dst, MetaFile))
		_, errDB := os.Stat(filepath.Join(dst, "storeedge.db"))
		if errMeta != nil && errDB != nil {
			return fmt.Errorf("-data-dir %s is not empty and holds no storeedge database: not replacing it", dst)
		}
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("remove old data directory: %w", err)
		}
	} else if err == nil {
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.Rename(src, dst)
}

// EnsureDB returns the meta of the kept database, running the sync benchmark first when there is
// none.
func EnsureDB(ctx context.Context, o *harness.Options, r *harness.Report, w io.Writer) (Meta, error) {
	m, err := ReadMeta(o.DataDir)
	if err == nil {
		if _, err := os.Stat(filepath.Join(o.DataDir, "storeedge.db")); err != nil {
			return m, fmt.Errorf("%s has %s but no storeedge.db: delete the directory and run bench sync", o.DataDir, MetaFile)
		}
		return m, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	if _, err := os.Stat(filepath.Join(o.DataDir, "storeedge.db")); err == nil {
		return m, fmt.Errorf("%s holds a storeedge.db that bench sync did not make (no %s): pass another -data-dir, or delete it", o.DataDir, MetaFile)
	}
	fmt.Fprintf(w, "\nno database in %s yet: running the sync benchmark to build it\n", o.DataDir)
	if err := Run(ctx, o, r, w); err != nil {
		return m, err
	}
	return ReadMeta(o.DataDir)
}
