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
	// One that does not run here (another architecture's) is passed over.
	if err := os.WriteFile(fetched, []byte("#!/bin/sh\nexit 126\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := NodeBinary(root); err == nil && got == fetched {
		t.Errorf("NodeBinary took a node that does not run: %q", got)
	}
	if got, err := NodeBinary(t.TempDir()); err == nil && got == fetched {
		t.Errorf("without tools/nodejs, NodeBinary = %q", got)
	}
}
