package disk

import "testing"

func TestFree(t *testing.T) {
	n, err := Free(t.TempDir())
	if err != nil || n == 0 {
		t.Errorf("Free = %d, %v; want some free space", n, err)
	}
	if _, err := Free(t.TempDir() + "/missing"); err == nil {
		t.Error("a missing folder has free space")
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 KiB", 12 << 10: "12 KiB", 300 << 20: "300.0 MiB", 3 << 29: "1.5 GiB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}
