//go:build !windows

package service

import (
	"context"
	"errors"
	"time"
)

// errNotWindows: the Windows service commands run on Windows only.
var errNotWindows = errors.New("service: the service commands are for Windows; on Linux the packages install the systemd unit: systemctl enable --now storeedge")

// WindowsSCM is not available here.
func WindowsSCM() (SCM, func(), error) { return nil, nil, errNotWindows }

// OpenEventLog is not available here.
func OpenEventLog() (EventWriter, func(), error) { return nil, nil, errNotWindows }

// IsService is false: only Windows starts storeedge as a service this way.
func IsService() bool { return false }

// RunService is not available here.
func RunService(stopWait time.Duration, run func(ctx context.Context) error) error {
	return errNotWindows
}

func programPath() string { return "" }
