package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// AzuriteDir is where scripts/install-test-deps.sh installs the Azure Blob emulator (npm
// azurite, pinned to AzuriteVersion with its dependencies in the folder's package-lock.json:
// later versions need a newer Node), relative to the repository root. Its node_modules is
// gitignored.
const AzuriteDir = "tools/azurite"

// AzuriteVersion is the pinned version of npm's azurite.
const AzuriteVersion = "3.35.0"

// Azurite's well-known development account, the same in every installation.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// AzuriteOptions configure StartAzurite.
type AzuriteOptions struct {
	// TLSCert and TLSKey are PEM files; set, Azurite serves HTTPS (TestCert makes a pair for
	// 127.0.0.1).
	TLSCert, TLSKey string
}

// Azurite is a running Blob emulator.
type Azurite struct {
	Addr string // 127.0.0.1:port
	// BlobURL is the account's endpoint, http(s)://127.0.0.1:port/devstoreaccount1.
	BlobURL string
	// ConnectionString names the account with its key and endpoint.
	ConnectionString string
}

// AzuriteMain returns the emulator's entry point under the repository root, or an error saying
// how to install it.
func AzuriteMain(root string) (string, error) {
	main := filepath.Join(root, AzuriteDir, "node_modules", "azurite", "dist", "src", "blob", "main.js")
	if _, err := os.Stat(main); err != nil {
		return "", fmt.Errorf("azurite %s missing in %s: run scripts/install-test-deps.sh", AzuriteVersion, filepath.Join(root, AzuriteDir))
	}
	return main, nil
}

// AzuriteArgs is the node command line that runs the emulator's Blob service on port, in
// memory, with TLS when cert and key are set.
func AzuriteArgs(main string, port int, cert, key string) []string {
	args := []string{main, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--inMemoryPersistence",
		// The SDK sends an API version newer than 3.35 knows; and no telemetry leaves the machine.
		"--skipApiVersionCheck", "--disableTelemetry", "--silent", "--loose"}
	if cert != "" {
		args = append(args, "--cert", cert, "--key", key)
	}
	return args
}

// StartAzurite runs Azurite's Blob service on a free port of 127.0.0.1 until the test ends. It
// needs node and the npm package (scripts/install-test-deps.sh): without them the test is
// skipped, or failed under CI=true.
func StartAzurite(t testing.TB, o AzuriteOptions) *Azurite {
	t.Helper()
	node := requireNode(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: azurite: %v", err)
	}
	main, err := AzuriteMain(root)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testenv: %v", err)
		}
		t.Skipf("testenv: %v", err)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		t.Fatal(errors.New("testenv: azurite: TLSCert and TLSKey go together"))
	}
	addr := startProgram(t, spec{
		name: "azurite",
		bin:  node,
		args: func(dir string, port int) ([]string, error) {
			return AzuriteArgs(main, port, o.TLSCert, o.TLSKey), nil
		},
	})
	scheme := "http"
	if o.TLSCert != "" {
		scheme = "https"
	}
	a := &Azurite{Addr: addr, BlobURL: scheme + "://" + addr + "/" + AzuriteAccount}
	a.ConnectionString = AzuriteConnectionString(a.BlobURL)
	return a
}

// AzuriteConnectionString is the development account's connection string for an endpoint.
func AzuriteConnectionString(blobURL string) string {
	return "DefaultEndpointsProtocol=http;AccountName=" + AzuriteAccount + ";AccountKey=" + AzuriteKey + ";BlobEndpoint=" + blobURL + ";"
}
