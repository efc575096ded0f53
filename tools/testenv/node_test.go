package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// The Node.js that scripts/install-test-deps.sh fetched into tools/nodejs (the machine's own
// being too old) is the one the tools run on; without it, the machine's.
func TestNodeBinaryPrefersTheFetchedOne(t *testing.T) {
	root := t.TempDir()
	fetched := filepath.Join(root, NodeDir, "bin", "node")
	if err := os.MkdirAll(filepath.Dir(fetched), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fetched, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := NodeBinary(root); err != nil || got != fetched {
		t.Errorf("NodeBinary = %q, %v; want %s", got, err, fetched)
	}
	if got, err := NodeBinary(t.TempDir()); err == nil && got == fetched {
		t.Errorf("without tools/nodejs, NodeBinary = %q", got)
	}
}
