package config

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// diffDefaults compares c with Default key by key and describes each key, other than those
// in skip, whose value differs: "cloud.page_size is 500, but its default is 1000".
func diffDefaults(c Config, skip ...string) []string {
	got, want := reflect.ValueOf(c), reflect.ValueOf(Default())
	var diffs []string
	for _, l := range leaves {
		if slices.Contains(skip, l.key) {
			continue
		}
		g, w := got.FieldByIndex(l.index), want.FieldByIndex(l.index)
		if !reflect.DeepEqual(g.Interface(), w.Interface()) {
			diffs = append(diffs, fmt.Sprintf("%s is %s, but its default is %s", l.key, display(g), display(w)))
		}
	}
	return diffs
}

// Each default is written once: Default itself is made of the Default… constants of
// defaults.go and of no literal value, and each of those constants is the default of a key. (The
// sections Default takes from defaultLAN, defaultAlerts, defaultSMTP and defaultLogs are held to
// docs/configuration.md and the example by the tests that compare those with Default, not by
// this one.) A default written
// as a literal in Default would be a second place to change it, beside the package that falls
// back to it.
func TestDefaultIsMadeOfConstants(t *testing.T) {
	fset := token.NewFileSet()
	consts, err := parser.ParseFile(fset, "defaults.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	code, err := parser.ParseFile(fset, "config.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]token.Pos{}
	for _, decl := range consts.Decls {
		d, ok := decl.(*ast.GenDecl)
		if ok && d.Tok == token.IMPORT {
			continue
		}
		if !ok || d.Tok != token.CONST {
			t.Errorf("%s: defaults.go holds the Default… constants only", fset.Position(decl.Pos()))
			continue
		}
		for _, spec := range d.Specs {
			for _, name := range spec.(*ast.ValueSpec).Names {
				declared[name.Name] = name.Pos()
			}
		}
	}
	used := map[string]bool{}
	for _, decl := range code.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "Default" && !strings.HasPrefix(fn.Name.Name, "default") {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			literal := ""
			switch x := n.(type) {
			case *ast.BasicLit:
				literal = x.Value
			case *ast.Ident:
				used[x.Name] = true
				if x.Name == "true" || x.Name == "false" {
					literal = x.Name
				}
			}
			if literal != "" && fn.Name.Name == "Default" {
				t.Errorf("%s: Default holds the literal %s; name it with a Default… constant in defaults.go", fset.Position(n.Pos()), literal)
			}
			return true
		})
	}
	for name, pos := range declared {
		if !strings.HasPrefix(name, "Default") {
			t.Errorf("%s: constant %s: defaults.go holds the Default… constants only", fset.Position(pos), name)
		}
		if !used[name] {
			t.Errorf("%s: constant %s is no key's default: Default does not use it", fset.Position(pos), name)
		}
	}
}

// With lan.bind an IPv6 address, mDNS stays off: its A records would name IPv4 addresses the
// server does not listen on (discovery.md); the daemon, storeedge discovery and the firewall's
// rules follow MDNSOff.
func TestMDNSOffWhenBoundToIPv6(t *testing.T) {
	for bind, off := range map[string]bool{"": false, "0.0.0.0": false, "::": false, "192.168.1.10": false,
		"::ffff:192.168.1.10": false, "fd00::10": true, "2001:db8::1": true} {
		cfg := Default()
		cfg.LAN.Bind = bind
		if why := cfg.MDNSOff(); (why != "") != off {
			t.Errorf("lan.bind %q: mDNS off for %q, want off %v", bind, why, off)
		}
	}
	cfg := Default()
	cfg.Discovery.MDNS.Enabled = false
	if cfg.MDNSOff() == "" {
		t.Error("mDNS on with discovery.mdns.enabled false")
	}
}
