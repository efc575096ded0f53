//go:build unix

package doctor

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
)

// filePermissionProblem says what is wrong with who may read or write the file, or "".
func filePermissionProblem(path string, secrets bool) (string, permFix, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", permFix{}, err
	}
	mode := fi.Mode().Perm()
	fix := fmt.Sprintf("chown root:storeedge %s && chmod 0640 %s", path, path)
	switch {
	case mode&0o002 != 0:
		return fmt.Sprintf("anyone on this machine may change it (mode %04o)", mode), permFix{fix, true}, nil
	case mode&0o004 != 0:
		return fmt.Sprintf("anyone on this machine may read it (mode %04o)", mode), permFix{fix, false}, nil
	}
	return "", permFix{}, nil
}

// checkServiceCanWrite checks, when doctor runs as root, that the service account can write in
// dir; root itself always can, which proves nothing. ok is false when there is nothing to say.
func checkServiceCanWrite(dir string, fi os.FileInfo, account string) (Result, bool) {
	if os.Geteuid() != 0 || account == "" {
		return Result{}, false
	}
	u, err := user.Lookup(account)
	if err != nil {
		return Result{}, false // no such account: the service runs as another (or as root)
	}
	uid, _ := strconv.Atoi(u.Uid)
	var gids []int
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				gids = append(gids, n)
			}
		}
	}
	check := "data_dir writable by " + account
	if writableBy(fi, uid, gids) {
		return pass("data", check, "the service account "+account+" can write there"), true
	}
	return fail("data", check, "the service account "+account+" cannot write there", "chown -R "+account+":"+account+" "+dir), true
}

// writableBy tells from the owner, group and mode bits whether uid (in gids) may create files
// in the folder fi.
func writableBy(fi os.FileInfo, uid int, gids []int) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := fi.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return mode&0o300 == 0o300
	case slices.Contains(gids, int(st.Gid)):
		return mode&0o030 == 0o030
	}
	return mode&0o003 == 0o003
}

// matchOwner gives files that doctor's read of the database made as root (the WAL index) the
// owner of the folder, so that the service can still open them.
func matchOwner(ref string, paths ...string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		for _, p := range paths {
			os.Lchown(p, int(st.Uid), int(st.Gid))
		}
	}
}
