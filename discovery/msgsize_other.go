//go:build !windows

package discovery

// oversizedRead tells a read that failed on a datagram too large: never here, where a datagram
// larger than the buffer is cut to it (the byte more than MaxDatagramSize then shows it).
func oversizedRead(error) bool { return false }
