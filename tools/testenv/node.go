package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
// there is one that runs here, else the machine's.
func NodeBinary(root string) (string, error) {
	if p, ok := fetchedNode(root); ok {
		return p, nil
	}
	if p, ok := findBin("node"); ok {
		return p, nil
	}
	return "", errors.New("node not found: run scripts/install-test-deps.sh")
}

// fetchedNode is the node in NodeDir under root, if there is one that runs here (not one of
// another architecture, in a checkout copied from another machine) and suits the tools. What it
// found is kept for the test binary's life (a node's start takes tens of milliseconds).
func fetchedNode(root string) (string, bool) {
	if v, ok := fetched.Load(root); ok {
		f := v.(fetchedResult)
		return f.path, f.ok
	}
	p := filepath.Join(root, NodeDir, "bin", "node")
	ok := false
	if isExecutable(p) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, p, "--version").Output()
		cancel()
		ok = err == nil && NodeSuits(strings.TrimSpace(string(out)))
	}
	fetched.Store(root, fetchedResult{p, ok})
	return p, ok
}

type fetchedResult struct {
	path string
	ok   bool
}

var fetched sync.Map // root → fetchedResult

// NodeSuits says whether a Node.js of that version ("v20.20.2") runs the pinned tools (Azurite
// 3.35, @redocly/cli 2.77): 20.19 or later in the 20 line, or 22.12 or later, as
// scripts/install-test-deps.sh requires.
func NodeSuits(version string) bool {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 22 || major == 22 && minor >= 12 || major == 20 && minor >= 19
}

// requireNode is NodeBinary for a test: skipped without one, or failed under CI=true.
func requireNode(t testing.TB) string {
	t.Helper()
	if root, err := repoRoot(); err == nil {
		if p, err := NodeBinary(root); err == nil {
			return p
		}
	}
	return Require(t, "node") // says it is missing
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
