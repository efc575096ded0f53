//go:build !unix

package orderload

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }
