package doctor

import (
	"slices"
	"testing"
)

func TestParseSystemdSandbox(t *testing.T) {
	show := "LoadState=loaded\nProtectSystem=strict\nReadWritePaths=-/srv/backup /srv/erp/orders/\nStateDirectory=storeedge\n"
	got, ok := parseSandbox(show)
	if want := []string{"/srv/backup", "/srv/erp/orders", "/var/lib/storeedge"}; !ok || !slices.Equal(got, want) {
		t.Errorf("parseSandbox: %q %v, want %q", got, ok, want)
	}
	for _, show := range []string{
		"LoadState=not-found\nProtectSystem=no\nReadWritePaths=\nStateDirectory=\n",
		"LoadState=loaded\nProtectSystem=full\nReadWritePaths=\nStateDirectory=storeedge\n",
	} {
		if got, ok := parseSandbox(show); ok {
			t.Errorf("parseSandbox(%q) = %q, confined", show, got)
		}
	}
}
