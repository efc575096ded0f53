package doctor

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/windows"
)

// filePermissionProblem says which broad groups (Everyone, Users, Authenticated Users) the
// file's access list lets read or change it, or "". The service runs as LocalSystem: its
// account's name is not used.
func filePermissionProblem(path string, secrets bool, _ string) (string, permFix, error) {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return "", permFix{}, err
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		return "everyone may read and change it (no access list)", permFix{aclFix(path), true}, nil
	}
	var aces []ace
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var a *windows.ACCESS_ALLOWED_ACE
		if windows.GetAce(dacl, i, &a) != nil || a.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE {
			continue
		}
		sid := (*windows.SID)(unsafePointer(&a.SidStart))
		aces = append(aces, ace{sid: sid.String(), mask: uint32(a.Mask)})
	}
	read, write := broadAccess(aces)
	switch {
	case len(write) > 0:
		return fmt.Sprintf("%s may change it", strings.Join(write, ", ")), permFix{aclFix(path), true}, nil
	case len(read) > 0:
		return fmt.Sprintf("%s may read it", strings.Join(read, ", ")), permFix{aclFix(path), false}, nil
	}
	return "", permFix{}, nil
}

func aclFix(path string) string {
	return fmt.Sprintf(`icacls "%s" /inheritance:r /grant:r "*S-1-5-32-544:F" "*S-1-5-18:F"`, path)
}

// checkDataDirPrivate warns when broad groups may read data_dir: a folder made in ProgramData
// keeps its parent's access list, which lets every local user read the database (orders,
// customers' names and phones), its backups and the log buffer.
func checkDataDirPrivate(dir string) (Result, bool) {
	const check = "data_dir closed to other users"
	problem, pf, err := filePermissionProblem(dir, true, "")
	fix := fmt.Sprintf(`icacls "%s" /inheritance:r /grant:r "*S-1-5-32-544:(OI)(CI)F" "*S-1-5-18:(OI)(CI)F"`, dir)
	switch {
	case err != nil:
		return warn("data", check, "its access list cannot be read: "+err.Error(), "check it by hand: "+fix), true
	case problem != "" && pf.fail:
		// On a folder, the right to change it is the right to put files in it: files the
		// service, running as LocalSystem, then reads.
		problem = strings.Replace(problem, "may change it", "may change it or put files in it", 1)
		return fail("data", check, problem+"; it holds the orders, with customers' names and phones", fix), true
	case problem != "":
		return warn("data", check, problem+": it holds the orders, with customers' names and phones", fix), true
	}
	return pass("data", check, "Everyone, Authenticated Users and Users have no access to it"), true
}

// checkServiceCanWrite: the Windows service runs as LocalSystem, which may write anywhere.
func checkServiceCanWrite(key, dir string, fi os.FileInfo, account string) (Result, bool) {
	return Result{}, false
}

// checkServiceOwnsFiles: the Windows service runs as LocalSystem, which may open any file.
func checkServiceOwnsFiles(key string, paths []string, account string) (Result, bool) {
	return Result{}, false
}

// matchOwner does nothing: files take the permissions of the folder they are in.
func matchOwner(ref string, paths ...string) {}

// checkServiceCanRead has nothing to say on Windows: the service runs as LocalSystem, which the
// access list the documents give keeps.
func checkServiceCanRead(path, account string) (Result, bool) { return Result{}, false }
