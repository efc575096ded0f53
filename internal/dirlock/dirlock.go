// Package dirlock keeps a second process off a data folder. The holder keeps an operating-system
// lock on a file in the folder (flock on Unix, LockFileEx on Windows); the system releases it
// when the process ends, however it ends, so a lock never outlives its holder and nothing is
// left to clean up after a crash or a kill. The file also says who holds the lock, so the
// process that is refused can name it.
//
// The file is never deleted: a process that opened it just before would lock a file that is no
// longer the folder's, beside a second holder.
package dirlock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// FileName is the lock file in the folder.
const FileName = "storeedge.lock"

// maxOwnerBytes bounds what is read of the file to name its holder.
const maxOwnerBytes = 4096

// Owner describes the process that holds a folder.
type Owner struct {
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	Host      string    `json:"host,omitempty"`
	Version   string    `json:"version,omitempty"`
	// PIDNamespace is the process's PID namespace (Linux: "pid:[4026531836]"; "" elsewhere):
	// PID means something to another process only in the same namespace (a container shares
	// the host's name with --network host, not its process ids).
	PIDNamespace string `json:"pid_ns,omitempty"`
}

// PIDNamespace is this process's PID namespace as Owner.PIDNamespace gives it.
func PIDNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

// HeldError is returned by Acquire when another process holds the folder.
type HeldError struct {
	Dir   string
	Owner Owner
	// OwnerErr says why the holder could not be named (it is writing the file at that instant,
	// or an older program holds the folder); Owner is then empty.
	OwnerErr error
}

func (e *HeldError) Error() string {
	who := "another storeedge"
	if e.OwnerErr == nil {
		who += fmt.Sprintf(" (pid %d", e.Owner.PID)
		if e.Owner.Host != "" {
			who += " on " + e.Owner.Host
		}
		if ns := e.Owner.PIDNamespace; ns != "" && ns != PIDNamespace() {
			who += " in another PID namespace than this process (one of the two is in a container): not a pid of this one's"
		}
		who += ", started " + e.Owner.StartedAt.UTC().Format(time.RFC3339)
		if e.Owner.Version != "" {
			who += ", version " + e.Owner.Version
		}
		who += ")"
	} else {
		who += " (which one is unknown: " + e.OwnerErr.Error() + ")"
	}
	return fmt.Sprintf("data_dir %s is in use by %s", e.Dir, who)
}

// Lock is a held folder.
type Lock struct {
	f *os.File
}

// Acquire locks dir (creating it if needed) for this process, described by me, and returns at
// once: a *HeldError when another process holds it.
func Acquire(dir string, me Owner) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("lock data_dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock data_dir: %w", err)
	}
	ok, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data_dir: %s: %w", path, err)
	}
	if !ok {
		held := &HeldError{Dir: dir}
		held.Owner, held.OwnerErr = readOwner(f)
		f.Close()
		return nil, held
	}
	if err := writeOwner(f, me); err != nil {
		f.Close() // releases the lock
		return nil, fmt.Errorf("lock data_dir: %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// LastOwner reads, without locking anything, who last held dir: the running holder when there is
// one (the file keeps the last holder's description after it ends).
func LastOwner(dir string) (Owner, error) {
	f, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		return Owner{}, err
	}
	defer f.Close()
	return readOwner(f)
}

// Release gives the folder up. The file stays (see the package documentation).
func (l *Lock) Release() error {
	return errors.Join(unlock(l.f), l.f.Close())
}

// writeOwner replaces the file's content with me. The new content is written over the old
// before the file is cut to its length, so a reader never finds it empty.
func writeOwner(f *os.File, me Owner) error {
	b, err := json.Marshal(me)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(b)))
}

// readOwner reads who holds the file. Only the first JSON value counts: what follows may be the
// end of a longer, older content not cut yet.
func readOwner(f *os.File) (Owner, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, maxOwnerBytes))
	if err != nil {
		return Owner{}, err
	}
	o, ok := parseOwner(b)
	if !ok {
		return Owner{}, errors.New("its lock file does not name it")
	}
	return o, nil
}

// parseOwner reads the owner at the start of a lock file's content.
func parseOwner(b []byte) (Owner, bool) {
	var o Owner
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&o); err != nil || o.PID <= 0 {
		return Owner{}, false
	}
	return o, true
}
