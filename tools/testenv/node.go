package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// NodeTool finds tools/<name>, a Node program of this repository, with the npm packages it
// needs installed in its node_modules (scripts/install-test-deps.sh), and returns the path of
// node and the tool's directory. When node or a package is missing the test is skipped, or
// failed under CI=true.
func NodeTool(t testing.TB, name string, packages ...string) (node, dir string) {
	t.Helper()
	node = Require(t, "node")
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	dir = filepath.Join(root, "tools", name)
	for _, pkg := range packages {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			msg := fmt.Sprintf("testenv: %s: npm package %s missing in %s: run scripts/install-test-deps.sh", name, pkg, filepath.Join(dir, "node_modules"))
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return node, dir
}
