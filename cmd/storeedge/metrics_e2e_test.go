package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeedge/storeedge/tools/testenv"
)

const e2eMetricsToken = "e2e-metrics-token-0123456789"

// TestEndToEndPrometheus has a real Prometheus scrape the daemon's admin port with the metrics
// token, and checks what an operator would query: the requests a device made, the age of the
// catalog, the Go runtime. The exposition also passes promtool's lint.
func TestEndToEndPrometheus(t *testing.T) {
	prometheus := testenv.Require(t, "prometheus")
	promtool := testenv.Require(t, "promtool")
	cloud := startCloud(t, "-products", "50", "-seed", "3")
	s := startShop(t, shopOptions{dataDir: t.TempDir(), cloud: cloud.url, sets: []string{"metrics.token=" + e2eMetricsToken}})
	waitFor(t, s, "first sync", time.Minute, func() bool { return s.caughtUp(t) })

	// A device reads three products, each once.
	var page struct {
		Items []lanItem `json:"items"`
	}
	s.get(t, "/api/v1/catalog/products?limit=3", &page)
	if len(page.Items) != 3 {
		t.Fatalf("%d products, want 3", len(page.Items))
	}
	for _, it := range page.Items {
		if resp := s.get(t, "/api/v1/catalog/products/"+url.PathEscape(it.ID), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("product %s: %s", it.ID, resp.Status)
		}
	}

	exposition := scrapeMetrics(t, s)
	lint := exec.Command(promtool, "check", "metrics")
	lint.Stdin = strings.NewReader(exposition)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	api := startPrometheus(t, prometheus, strings.TrimPrefix(s.admin, "http://"))
	waitQuery(t, api, `up{job="storeedge"}`, "the scrape target up", func(v float64) bool { return v == 1 })
	product := `storeedge_http_requests_total{listener="front_door",route="/api/v1/catalog/products/{id}",code="200"}`
	waitQuery(t, api, product, "three product reads", func(v float64) bool { return v == 3 })
	waitQuery(t, api, `storeedge_sync_data_age_seconds{collection="products"}`, "the products' data age under a minute",
		func(v float64) bool { return v >= 0 && v < 60 })
	waitQuery(t, api, `storeedge_outbox_depth`, "an empty outbox", func(v float64) bool { return v == 0 })
	waitQuery(t, api, `go_goroutines{job="storeedge"}`, "the Go runtime", func(v float64) bool { return v > 5 })
	waitQuery(t, api, `storeedge_build_info{job="storeedge"}`, "the build info", func(v float64) bool { return v == 1 })
}

// scrapeMetrics reads the exposition as Prometheus would; without the token it is refused.
func scrapeMetrics(t *testing.T, s *shop) string {
	t.Helper()
	if resp, err := http.Get(s.admin + "/metrics"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics without a token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodGet, s.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e2eMetricsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %s\n%s", resp.Status, b)
	}
	return string(b)
}

// startPrometheus runs Prometheus from a temp dir, scraping target every second with the
// metrics token, and returns its API's URL once it is ready.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: storeedge
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials: %q
    static_configs:
      - targets: [%q]
`, e2eMetricsToken, target)
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	log := &testenv.Buffer{}
	cmd := exec.Command(bin, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	api := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(api + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return api
			}
		}
		select {
		case <-done:
			t.Fatalf("prometheus exited: %v\n%s", cmd.ProcessState, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitQuery polls an instant query of Prometheus until its single value satisfies ok: each
// scrape is a second apart, so the answer is the signal and the deadline only bounds a failure.
func waitQuery(t *testing.T, api, query, what string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		v, raw, err := instantQuery(api, query)
		if err == nil && ok(v) {
			return
		}
		last = raw
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s did not hold within 30s; last answer %s", what, query, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// instantQuery answers the value of a query that gives one series.
func instantQuery(api, query string) (float64, string, error) {
	resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var ans struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]json.RawMessage `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&ans); err != nil {
		return 0, string(body), err
	}
	if ans.Status != "success" || len(ans.Data.Result) != 1 {
		return 0, string(body), fmt.Errorf("want one series, got %s", body)
	}
	var s string
	if err := json.Unmarshal(ans.Data.Result[0].Value[1], &s); err != nil {
		return 0, string(body), err
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, string(body), err
}
