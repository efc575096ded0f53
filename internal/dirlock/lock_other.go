//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package dirlock

import (
	"errors"
	"os"
)

// tryLock has no lock to take on this system.
func tryLock(*os.File) (bool, error) {
	return false, errors.New("locking a data folder is not supported on this system")
}

func unlock(*os.File) error { return nil }
