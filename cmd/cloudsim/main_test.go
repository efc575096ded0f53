package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/storeedge/storeedge/sync/cloud/cloudapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs the command in-process and returns the address it announced, and a stop function
// that ends it and returns run's error.
func start(t *testing.T, args ...string) (string, *bytes.Buffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, pw, &stderr)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("no announcement: %v (run: %v)", err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return line, &stderr, stop
}

func TestRunServesAndStops(t *testing.T) {
	t.Setenv(envStoreKey, "env-key")
	line, stderr, stop := start(t, "-listen", "127.0.0.1:0", "-products", "25", "-store-id", "shop-9", "-error-rate", "0")
	const prefix = "cloudsim listening on http://127.0.0.1:"
	if !strings.HasPrefix(line, prefix) || strings.Count(line, "\n") != 1 {
		t.Fatalf("announcement %q", line)
	}
	base := strings.TrimSpace(strings.TrimPrefix(line, "cloudsim listening on "))

	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	get := func(key string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/config", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get("env-key")
	var cfg cloudapi.RemoteConfig
	err := json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || cloudapi.Text(cfg.StoreID, 128) != "shop-9" || cfg.ServiceBus.Queue != "orders-shop-9" {
		t.Errorf("config: %d %+v %v", resp.StatusCode, cfg, err)
	}
	resp = get(" wrong")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: %d", resp.StatusCode)
	}

	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	if strings.Contains(stderr.String(), "env-key") {
		t.Errorf("the store key reached the log:\n%s", stderr.String())
	}
}

func TestRunServesTLS(t *testing.T) {
	cert, key := writeSelfSigned(t)
	line, _, stop := start(t, "-listen", "127.0.0.1:0", "-products", "5", "-tls-cert", cert, "-tls-key", key, "-store-key", "k")
	if !strings.HasPrefix(line, "cloudsim listening on https://127.0.0.1:") {
		t.Fatalf("announcement %q", line)
	}
	base := strings.TrimSpace(strings.TrimPrefix(line, "cloudsim listening on "))
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // self-signed test cert
	hc := &http.Client{Transport: tr}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/feed/settings", nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"end"`)) {
		t.Errorf("feed over TLS: %d %s", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-help"}, io.Discard, &out)
	if !errors.Is(err, flag.ErrHelp) || exitCode(err, io.Discard) != 0 {
		t.Errorf("-help: %v", err)
	}
	for _, want := range []string{"cloudsim listening on", "-malformed-rate", "-change-every", "CLOUDSIM_STORE_KEY", "/_sim/mutate"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	bad := [][]string{
		{"-products", "0"},
		{"-products", "9000000"},
		{"-error-rate", "1.5"},
		{"-cut-rate", "-0.1"},
		{"-latency", "-1s"},
		{"-page-delay", "-1ms"},
		{"-tls-cert", "x.pem"},
		{"-seed", "0"},
		{"-nosuchflag"},
		{"extra"},
	}
	for _, args := range bad {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if code := exitCode(err, io.Discard); code != 2 {
			t.Errorf("%v: exit %d (%v)", args, code, err)
		}
	}
	// A taken port is a runtime failure, not a usage error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), []string{"-listen", ln.Addr().String(), "-products", "1"}, io.Discard, io.Discard)
	if code := exitCode(err, io.Discard); code != 1 {
		t.Errorf("busy port: exit %d (%v)", code, err)
	}
}

func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cloudsim test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
