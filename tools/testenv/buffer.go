package testenv

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// Buffer collects a program's output (or a log) while the test may read it; it keeps the first
// MiB. WaitFor and WaitUntil wait for what a test expects to appear in it, woken by each write.
type Buffer struct {
	mu      sync.Mutex // protects the fields below
	buf     bytes.Buffer
	written chan struct{} // closed by the next write; nil until someone waits
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
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return len(p), nil
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor waits until the output holds s. It reports false when timeout passes first, or when
// stop (nil: never) is closed first, as a test does when the program it reads has ended.
func (b *Buffer) WaitFor(s string, timeout time.Duration, stop <-chan struct{}) bool {
	return b.WaitUntil(func(out string) bool { return strings.Contains(out, s) }, timeout, stop)
}

// WaitUntil waits until cond holds for the output, called after each write; it reports false as
// WaitFor does.
func (b *Buffer) WaitUntil(cond func(out string) bool, timeout time.Duration, stop <-chan struct{}) bool {
	expired := time.NewTimer(timeout)
	defer expired.Stop()
	for {
		b.mu.Lock()
		out := b.buf.String()
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		if cond(out) {
			return true
		}
		select {
		case <-written:
		case <-stop:
			return cond(b.String()) // what it wrote before it ended counts
		case <-expired.C:
			return cond(b.String())
		}
	}
}
