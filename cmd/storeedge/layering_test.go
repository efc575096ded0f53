package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The rooms of the house and which may call which (docs/architecture.md): data flows one way,
// from cmd down to storage and the ground floor, and the simulators and test helpers stay out of
// the product. A rule is a package prefix and the project packages that production code under it
// may import; prefixes are matched longest first.
var layering = []struct {
	room  string
	may   []string
	cause string
}{
	{"internal/", []string{"internal/"}, "internal/ is the ground floor: libraries with no domain"},
	{"sync/cloud/cloudapi", nil, "the cloud's wire format is a leaf that storage and the sync workers share"},
	{"devices/push", nil, "the push wire format is a leaf a device maker can read alone"},
	{"storage/mediacache", nil, "the media files on disk are a leaf"},
	{"storage", []string{"internal/", "storage/", "sync/cloud/cloudapi", "orders"}, "storage keeps the SQL; it calls no service"},
	{"orders", []string{"internal/"}, "the orders domain is pure: types, rules, no I/O"},
	{"discovery", []string{"internal/"}, "discovery is ground floor: it knows no domain"},
	{"sync/cloud/cloudsim", []string{"internal/", "sync/cloud/cloudapi"}, "the reference cloud implements the contract, not the shop"},
	{"sync/", []string{"internal/", "storage", "storage/", "sync/", "orders"}, "the WAN workers talk to storage, never to the LAN side"},
	{"devices/devicesim", []string{"devices/push", "internal/"}, "the reference device speaks the documented protocol only"},
	{"devices", []string{"internal/", "storage", "devices/", "orders"}, "devices talk to storage, never to the HTTP layer"},
	{"backoffice", []string{"internal/", "storage", "orders"}, "the back office talks to storage, never to the HTTP layer"},
	{"ops/doctor", []string{"internal/", "storage", "sync/", "discovery", "server", "ops/"}, "doctor checks what the daemon uses"},
	{"ops/logship/logshiptest", []string{"tools/testenv"}, "a test intake"},
	{"ops/support", []string{"internal/", "storage", "ops/", "sync/servicebus", "sync/cloud/cloudapi"},
		"the support channel shares the Service Bus link of the orders and reads storage"},
	{"ops/", []string{"internal/", "storage", "ops/"}, "the operations workers read storage and the ground floor"},
	{"server", []string{"internal/", "storage", "sync/", "devices", "discovery", "backoffice", "ops/", "orders"}, "the LAN HTTP layer calls the services below it"},
}

// simulators and test helpers: only commands, benchmarks and tests may import them.
var simulators = []string{"sync/cloud/cloudsim", "devices/devicesim", "tools/", "ops/logship/logshiptest"}

// TestLayering reads the imports of every production file of the module and checks them against
// the rooms' rules, so that a shortcut from a low room to a high one fails here rather than
// in a reader's head.
func TestLayering(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	const module = "github.com/storeedge/storeedge/"
	checked := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		pkg := filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			target, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(target, module) {
				continue
			}
			checked++
			if why := forbidden(pkg, strings.TrimPrefix(target, module)); why != "" {
				t.Errorf("%s imports %s: %s", filepath.Join(rel, filepath.Base(p)), target, why)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("only %d project imports found under %s: the walk missed the tree", checked, root)
	}
}

// forbidden says why package pkg may not import target, or "" when it may.
func forbidden(pkg, target string) string {
	if strings.HasPrefix(pkg, "cmd/") || pkg == "bench" || strings.HasPrefix(pkg, "bench/") || strings.HasPrefix(pkg, "tools/") || pkg == "deploy" {
		return "" // commands, benchmarks and test tooling sit above everything
	}
	if slices.ContainsFunc(simulators, func(s string) bool { return inRoom(target, s) }) &&
		!slices.ContainsFunc(simulators, func(s string) bool { return inRoom(pkg, s) }) {
		return "a simulator or test helper is not part of the product"
	}
	rule := -1
	for i, r := range layering {
		if inRoom(pkg, r.room) && (rule < 0 || len(r.room) > len(layering[rule].room)) {
			rule = i
		}
	}
	if rule < 0 {
		return "the package is in no room of docs/architecture.md: add it there and to this test"
	}
	if inRoom(target, layering[rule].room) {
		return "" // within its own room
	}
	for _, m := range layering[rule].may {
		if inRoom(target, m) {
			return ""
		}
	}
	return layering[rule].cause
}

// inRoom reports whether package pkg is in room: room itself, or with a trailing slash any
// package under it ("sync/" holds every sync/… package).
func inRoom(pkg, room string) bool {
	if strings.HasSuffix(room, "/") {
		return strings.HasPrefix(pkg, room)
	}
	return pkg == room
}
