package testenv

import (
	"strings"
	"testing"
	"time"
)

func TestBufferWaitFor(t *testing.T) {
	var b Buffer
	b.Write([]byte("starting\nSIGH"))
	found := make(chan bool)
	go func() { found <- b.WaitFor("SIGHUP ignored", time.Minute, nil) }()
	// The text arrives in pieces, its first part written before the wait began.
	for _, piece := range []string{"U", "P ign", "ored\n"} {
		b.Write([]byte(piece))
	}
	if !<-found {
		t.Fatalf("WaitFor missed a text written in pieces: %q", b.String())
	}
	if !b.WaitFor("starting", time.Minute, nil) {
		t.Error("WaitFor missed a text already there")
	}

	stop := make(chan struct{})
	go func() { found <- b.WaitFor("never written", time.Minute, stop) }()
	b.Write([]byte("something else\n"))
	close(stop)
	if <-found {
		t.Error("WaitFor found a text nobody wrote")
	}
	if b.WaitFor("never written", time.Millisecond, nil) {
		t.Error("WaitFor found a text nobody wrote, at its timeout")
	}
}

func TestBufferKeepsTheFirstMiB(t *testing.T) {
	var b Buffer
	line := strings.Repeat("x", 1023) + "\n"
	for range 2 << 10 {
		if n, err := b.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if n := len(b.String()); n != maxOutput {
		t.Errorf("kept %d bytes, want %d", n, maxOutput)
	}
}
