//go:build !unix

package backup

// matchOwner does nothing: on Windows, files take the permissions of the folder they are in.
func matchOwner(ref string, paths ...string) {}
