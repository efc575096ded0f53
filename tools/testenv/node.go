package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// NodeTool finds tools/<name>, a Node program of this repository, with the npm packages it
// needs installed in its node_modules (scripts/install-test-deps.sh), and returns the path of
// node and the tool's directory. When node or a package is missing the test is skipped, or
// failed under CI=true.
func NodeTool(t testing.TB, name string, packages ...string) (node, dir string) {
	t.Helper()
	node = requireNode(t)
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

// NodeDir is where scripts/install-test-deps.sh puts the Node.js it fetches when the machine's
// own is missing or too old for the tools, relative to the repository's root.
const NodeDir = "tools/nodejs"

// NodeBinary is the node the tools run on, for the repository at root: the one in NodeDir when
// there is one, else the machine's.
func NodeBinary(root string) (string, error) {
	if p := filepath.Join(root, NodeDir, "bin", "node"); isExecutable(p) {
		return p, nil
	}
	p, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("node not found: run scripts/install-test-deps.sh")
	}
	return p, nil
}

// requireNode is NodeBinary for a test: skipped without one, or failed under CI=true.
func requireNode(t testing.TB) string {
	t.Helper()
	if root, err := repoRoot(); err == nil {
		if p := filepath.Join(root, NodeDir, "bin", "node"); isExecutable(p) {
			return p
		}
	}
	return Require(t, "node")
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
