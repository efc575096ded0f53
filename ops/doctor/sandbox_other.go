//go:build !linux

package doctor

// SystemdSandbox is nil away from Linux: no service manager there confines the service's
// writes by folder.
func SystemdSandbox(unit string) func() ([]string, bool) { return nil }
