//go:build unix

package doctor

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// filePermissionProblem says what is wrong with who may read or write the file, or "": anyone
// may read or change it, or the members of its group may change it, or read it when the group
// is neither root's nor one of the service account's (account; not judged when there is no such
// account).
func filePermissionProblem(path string, secrets bool, account string) (string, permFix, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", permFix{}, err
	}
	mode := fi.Mode().Perm()
	fix := fmt.Sprintf("chown root:storeedge %s && chmod 0640 %s", path, path)
	gid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		gid = int(st.Gid)
	}
	switch {
	case mode&0o002 != 0:
		return fmt.Sprintf("anyone on this machine may change it (mode %04o)", mode), permFix{fix, true}, nil
	case mode&0o004 != 0:
		return fmt.Sprintf("anyone on this machine may read it (mode %04o)", mode), permFix{fix, false}, nil
	case mode&0o020 != 0:
		return fmt.Sprintf("the members of its group %s may change it (mode %04o)", groupName(gid), mode), permFix{fix, true}, nil
	case mode&0o040 != 0 && gid > 0 && account != "":
		if _, gids, ok := accountIDs(account); ok && !slices.Contains(gids, gid) {
			return fmt.Sprintf("the members of its group %s, not the service account %s's, may read it (mode %04o)", groupName(gid), account, mode),
				permFix{fix, false}, nil
		}
	}
	return "", permFix{}, nil
}

// groupName is the name of group gid, or its number.
func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// checkServiceCanRead checks, when doctor runs as root, that the service account can read the
// configuration file: a file closed to root alone passes every other check, and the service
// then cannot start. ok is false when there is nothing to say.
func checkServiceCanRead(path, account string) (Result, bool) {
	if os.Geteuid() != 0 || account == "" {
		return Result{}, false
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Result{}, false // checkConfigFile says so
	}
	uid, gids, ok := accountIDs(account)
	if !ok {
		return Result{}, false
	}
	check := "configuration file readable by " + account
	if permittedTo(fi, uid, gids, 0o4) {
		return pass("config", check, "the service account "+account+" can read it"), true
	}
	return fail("config", check, "the service account "+account+" cannot read it: the service will not start",
		fmt.Sprintf("chown root:%s %s && chmod 0640 %s", account, path, path)), true
}

// accountIDs is the account's uid and groups; ok is false when there is no such account (the
// service then runs as another, or as root).
func accountIDs(account string) (uid int, gids []int, ok bool) {
	u, err := user.Lookup(account)
	if err != nil {
		return 0, nil, false
	}
	uid, _ = strconv.Atoi(u.Uid)
	if gid, err := strconv.Atoi(u.Gid); err == nil { // the primary group, also when the list cannot be read
		gids = append(gids, gid)
	}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				gids = append(gids, n)
			}
		}
	}
	return uid, gids, true
}

// checkServiceCanWrite checks, when doctor runs as root, that the service account can write in
// dir; root itself always can, which proves nothing. ok is false when there is nothing to say.
// checkDataDirPrivate has nothing to say on Unix: the packages' systemd unit makes data_dir
// 0750 (StateDirectoryMode) and the service writes under UMask 0027.
func checkDataDirPrivate(dir string) (Result, bool) { return Result{}, false }

func checkServiceCanWrite(key, dir string, fi os.FileInfo, account string) (Result, bool) {
	if os.Geteuid() != 0 || account == "" {
		return Result{}, false
	}
	uid, gids, ok := accountIDs(account)
	if !ok {
		return Result{}, false // no such account: the service runs as another (or as root)
	}
	check := key + " writable by " + account
	if permittedTo(fi, uid, gids, 0o3) {
		return pass("data", check, "the service account "+account+" can write there"), true
	}
	return fail("data", check, "the service account "+account+" cannot write there", "chown -R "+account+":"+account+" "+dir), true
}

// checkServiceOwnsFiles checks, when doctor runs as root, that the service account can read and
// write each file of paths that exists (the database's): one made by root, by a `storeedge run`
// by hand, say, stops the service at its next start though the folder is the account's. ok is
// false when there is nothing to say.
func checkServiceOwnsFiles(key string, paths []string, account string) (Result, bool) {
	if os.Geteuid() != 0 || account == "" {
		return Result{}, false
	}
	uid, gids, ok := accountIDs(account)
	if !ok {
		return Result{}, false
	}
	var theirs []string
	for _, p := range paths {
		if fi, err := os.Lstat(p); err == nil && !permittedTo(fi, uid, gids, 0o6) {
			theirs = append(theirs, p)
		}
	}
	check := key + " files usable by " + account
	if len(theirs) == 0 {
		return pass("data", check, "the service account "+account+" can read and write the database's files"), true
	}
	return fail("data", check, "the service account "+account+" cannot read and write "+strings.Join(theirs, ", ")+": the service will not start",
		"chown "+account+":"+account+" "+strings.Join(theirs, " ")), true
}

// permittedTo tells from the owner, group and mode bits whether uid (in gids) has every
// permission of bits (as for others: 4 read, 2 write, 1 search) on fi; 3 on a folder is what
// creating files in it takes.
func permittedTo(fi os.FileInfo, uid int, gids []int, bits os.FileMode) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := fi.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return mode&(bits<<6) == bits<<6
	case slices.Contains(gids, int(st.Gid)):
		return mode&(bits<<3) == bits<<3
	}
	return mode&bits == bits
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
