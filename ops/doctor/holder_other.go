//go:build !linux && !windows

package doctor

// findHolder is not implemented on this system: doctor says the port is held, not by whom.
func findHolder(proto string, port int) (Holder, error) { return Holder{}, errHolderUnknown }
