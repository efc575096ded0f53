package syncbench

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReplaceDirRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "precious.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceDir(src, dst); err == nil {
		t.Fatal("replaced a directory that holds no storeedge database")
	}
	if _, err := os.Stat(filepath.Join(dst, "precious.txt")); err != nil {
		t.Fatal("the foreign directory was touched")
	}
	if err := writeMeta(dst, Meta{Products: 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := replaceDir(src, dst); err != nil {
		t.Fatalf("a directory of ours was not replaced: %v", err)
	}
}
