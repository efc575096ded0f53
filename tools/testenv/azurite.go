package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// AzuriteAccount and AzuriteKey are Azurite's well-known development account.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// AzuriteDir is where scripts/install-test-deps.sh installs Azurite (azurite@3.35.0, the last
// that runs on Node 20), relative to the repository root.
const AzuriteDir = ".cache/azurite"

// StartAzurite runs Azurite's Blob service in memory on 127.0.0.1 and returns its account
// endpoint, "http(s)://127.0.0.1:PORT/devstoreaccount1". With certFile and keyFile it serves
// HTTPS. It needs node and Azurite (scripts/install-test-deps.sh): without them the test is
// skipped, or failed under CI=true.
func StartAzurite(t testing.TB, certFile, keyFile string) string {
	t.Helper()
	node := Require(t, "node")
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(root, AzuriteDir, "node_modules", "azurite", "dist", "src", "blob", "main.js")
	if _, err := os.Stat(main); err != nil {
		msg := "testenv: Azurite not installed in " + AzuriteDir + ": run scripts/install-test-deps.sh"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	scheme := "http"
	if certFile != "" {
		scheme = "https"
	}
	addr := startProgram(t, spec{
		name: "azurite",
		bin:  node,
		args: func(dir string, port int) ([]string, error) {
			args := []string{main, "--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port),
				"--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--silent"}
			if certFile != "" {
				args = append(args, "--cert", certFile, "--key", keyFile)
			}
			return args, nil
		},
	})
	return scheme + "://" + addr + "/" + AzuriteAccount
}
