package main

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGHUP, which many send a daemon to have it read its configuration again, neither kills the
// server nor stops it: it says the configuration is read at start only, serves on, and stops
// cleanly at SIGTERM afterwards.
func TestHangupIsIgnoredAndSaid(t *testing.T) {
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: "http://127.0.0.1:1"})
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.log.String(), "SIGHUP ignored") {
		select {
		case <-s.done:
			t.Fatalf("storeedge ended at SIGHUP (exit %d)\n%s", s.cmd.ProcessState.ExitCode(), s.log)
		case <-time.After(20 * time.Millisecond): // the log has no signal of its own
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing said of the SIGHUP within 10 s\n%s", s.log)
		}
	}
	var st struct {
		Mode string `json:"mode"`
	}
	s.get(t, "/api/v1/status", &st)
	s.stop(t)
}
