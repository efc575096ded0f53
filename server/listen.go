package server

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ListenError is a LAN port that could not be opened, with what shop IT can do about it.
type ListenError struct {
	Key  string // configuration key of the port, e.g. lan.front_door
	Addr string // address asked for, e.g. ":80"
	Err  error  // what the system said
	Fix  string // what to do; empty when there is no specific advice
}

func (e *ListenError) Error() string {
	msg := fmt.Sprintf("%s: cannot listen on %s: %v", e.Key, e.Addr, e.Err)
	if e.Fix != "" {
		msg += ": " + e.Fix
	}
	return msg
}

func (e *ListenError) Unwrap() error { return e.Err }

// Windows socket errors, which the syscall package does not map onto EADDRINUSE and EACCES.
const (
	wsaeacces     syscall.Errno = 10013
	wsaeaddrinuse syscall.Errno = 10048
)

// listenError turns the failure to listen on addr (for configuration key key, port num) into a
// message that names the key and the fix.
func listenError(key, addr string, num int, err error) *ListenError {
	e := &ListenError{Key: key, Addr: addr, Err: err}
	var errno syscall.Errno
	errors.As(err, &errno)
	switch {
	case errno == syscall.EADDRINUSE || errno == wsaeaddrinuse:
		e.Err = errAddrInUse{err}
		e.Fix = fmt.Sprintf("another program already listens on port %d (find it with `ss -ltnp 'sport = :%d'` on Linux or `netstat -ano | findstr :%d` on Windows); stop it or change %s",
			num, num, num, key)
	case (errno == syscall.EACCES || errors.Is(err, os.ErrPermission)) && num > 0 && num < 1024:
		e.Err = errPermission{err}
		e.Fix = fmt.Sprintf("ports below 1024 need a privilege: run storeedge as root, give the binary CAP_NET_BIND_SERVICE (sudo setcap cap_net_bind_service=+ep %s; the systemd unit does this with AmbientCapabilities), or set %s to a port above 1023", executable(), key)
	case errno == syscall.EACCES || errno == wsaeacces || errors.Is(err, os.ErrPermission):
		e.Err = errPermission{err}
		e.Fix = fmt.Sprintf("the system refused the port (on Windows it may be reserved: see `netsh interface ipv4 show excludedportrange protocol=tcp`); choose another port for %s", key)
	}
	return e
}

// executable is the path of the running binary, for a command to copy; the packages' path when
// it cannot be told.
func executable() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "/usr/bin/storeedge"
}

// errAddrInUse and errPermission print a short cause instead of the system's long message, which
// repeats the address, while keeping it for errors.Is.
type (
	errAddrInUse  struct{ error }
	errPermission struct{ error }
)

func (errAddrInUse) Error() string   { return "address already in use" }
func (e errAddrInUse) Unwrap() error { return e.error }

func (errPermission) Error() string   { return "permission denied" }
func (e errPermission) Unwrap() error { return e.error }

// ExplainListenError is the ListenError the server gives when it cannot listen on addr (for
// configuration key key and port num): doctor says the same.
func ExplainListenError(key, addr string, num int, err error) *ListenError {
	return listenError(key, addr, num, err)
}
