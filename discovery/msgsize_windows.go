package discovery

import (
	"errors"
	"syscall"
)

// wsaeMsgSize is WSAEMSGSIZE: Windows fails a read of a datagram larger than the buffer, where
// other systems cut it to the buffer (the byte more than MaxDatagramSize then shows it).
const wsaeMsgSize = syscall.Errno(10040)

// oversizedRead tells a read that failed on a datagram too large: that datagram is dropped, and
// the socket reads on.
func oversizedRead(err error) bool { return errors.Is(err, wsaeMsgSize) }
