package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeedge/storeedge/internal/config"
)

// Admin reads the configuration the server runs with, secrets hidden; nobody else reads it.
func TestAdminConfigView(t *testing.T) {
	cfg := config.Default()
	cfg.Cloud.StoreKey = "sk_live_do_not_show_0123456789"
	cfg.Shop.Name = "Lyon Part-Dieu"
	f := newFixture(t, func(o *Options) { o.ConfigView = cfg.Redacted() })

	res := f.get(t, "/api/v1/admin/config")
	if res.Code != http.StatusOK || !strings.HasPrefix(res.Header().Get("Content-Type"), "application/yaml") {
		t.Fatalf("GET config: %d %s", res.Code, res.Header().Get("Content-Type"))
	}
	text := res.Body.String()
	if strings.Contains(text, "sk_live_do_not_show") || !strings.Contains(text, `store_key: "xxxxx"`) || !strings.Contains(text, `name: "Lyon Part-Dieu"`) {
		t.Errorf("the view shows a secret or misses a value:\n%s", text)
	}
	// It reads back as a configuration file (Load refuses the placeholder as a store key: that
	// error names the key, and the rest is what the server runs with).
	path := filepath.Join(t.TempDir(), "view.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := config.Load(path, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "cloud.store_key") || back.Shop.Name != cfg.Shop.Name || back.LAN.FrontDoor != cfg.LAN.FrontDoor {
		t.Errorf("the view read back: %v, shop %q", err, back.Shop.Name)
	}

	for _, token := range []string{"", f.device(t, "pos").Token} {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/admin/config", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		f.raw.ServeHTTP(rec, req)
		if code := rec.Code; code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("config view with token %q: %d, want 401 or 403", token, code)
		}
	}

	none := newFixture(t)
	if res := none.get(t, "/api/v1/admin/config"); res.Code != http.StatusNotFound {
		t.Errorf("without a view: %d, want 404", res.Code)
	}
}
