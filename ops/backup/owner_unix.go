//go:build unix

package backup

import (
	"os"
	"syscall"
)

// matchOwner gives files made by root (restore and backup are run with sudo) the owner of ref,
// the folder they are in, so that the service account can still open them. Files that do not
// exist are skipped; errors are ignored: the files stay usable by root, and doctor reports a
// data folder the service cannot write.
func matchOwner(ref string, paths ...string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	for _, p := range paths {
		if p != "" {
			os.Lchown(p, int(st.Uid), int(st.Gid))
		}
	}
}
