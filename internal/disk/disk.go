// Package disk measures the free space of a folder's disk, for doctor and the disk alert.
package disk

import "fmt"

// Free returns the bytes of dir's disk available to this process (a non-root user's share on
// Unix, the caller's quota on Windows).
func Free(dir string) (uint64, error) { return free(dir) }

// Format writes a size as a person reads it: "1.5 GiB", "300.0 MiB", "12 KiB".
func Format(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
