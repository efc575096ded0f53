package main

import (
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
	s.waitLog(t, "SIGHUP ignored", 10*time.Second)
	var st struct {
		Mode string `json:"mode"`
	}
	s.get(t, "/api/v1/status", &st)
	s.stop(t)
}
