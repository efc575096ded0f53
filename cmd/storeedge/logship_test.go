package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/internal/wan"
	"github.com/storeedge/storeedge/tools/testenv"
)

// A log shipping buffer the service cannot open stops the start with a message that says how
// to start it again, not only the system's error.
func TestUnusableLogBufferSaysWhatToDo(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Logs.Ship.Enabled, cfg.Logs.Ship.URL, cfg.Logs.Ship.APIKey = true, "https://logs.example.com/v1/logs", config.Secret("logs-key-0123456789")
	dir := filepath.Join(cfg.DataDir, "logship")
	if err := os.WriteFile(dir, []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	dialer, err := wan.New(wan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newLogShipper(cfg, dialer, slog.New(slog.NewTextHandler(&testenv.Buffer{}, nil)))
	if err == nil {
		s.Close()
		t.Fatal("a log shipping buffer that is a file was opened")
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "logs.ship.enabled: false") {
		t.Errorf("error %q: want the buffer's path and how to start without it", msg)
	}
}
