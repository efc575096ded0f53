//go:build darwin || freebsd

package hotcache

const mapNoReserve = 0

// discard keeps the pages: the cache overwrites them as it fills again.
func (r *region) discard() {}

func (r *region) preferHugePages() {}
