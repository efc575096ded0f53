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
	if err := os.WriteFile(fetched, []byte("#!/bin/sh\necho v20.20.2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := NodeBinary(root); err != nil || got != fetched {
		t.Errorf("NodeBinary = %q, %v; want %s", got, err, fetched)
	}
	// One that does not run here (another architecture's), or too old, is passed over.
	for _, script := range []string{"#!/bin/sh\nexit 126\n", "#!/bin/sh\necho v18.20.4\n"} {
		other := t.TempDir()
		p := filepath.Join(other, NodeDir, "bin", "node")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if got, err := NodeBinary(other); err == nil && got == p {
			t.Errorf("NodeBinary took %q (%q)", got, script)
		}
	}
	for v, want := range map[string]bool{"v20.19.0": true, "v20.18.9": false, "v22.11.0": false, "v22.12.0": true, "v24.1.0": true, "v21.7.0": false, "": false, "vx.y": false} {
		if NodeSuits(v) != want {
			t.Errorf("NodeSuits(%q) = %v", v, !want)
		}
	}
	if got, err := NodeBinary(t.TempDir()); err == nil && got == fetched {
		t.Errorf("without tools/nodejs, NodeBinary = %q", got)
	}
}
