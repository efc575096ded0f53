package testenv

import (
	"bytes"
	"sync"
)

// Buffer collects a program's output (or a log) while the test may read it; it keeps the first
// MiB.
type Buffer struct {
	mu  sync.Mutex // protects the fields below
	buf bytes.Buffer
}

// maxOutput caps what is kept of a chatty program's output.
const maxOutput = 1 << 20

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxOutput - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
