package config

import (
	"os"
	"testing"

	"github.com/storeedge/storeedge/tools/testenv"
)

// testCertPEM is a CA certificate in PEM (testenv's test CA).
func testCertPEM(t testing.TB) []byte {
	t.Helper()
	_, _, caFile, _ := testenv.TestCertWithCAFile(t)
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzExtraCA reads wan.extra_ca_file's contents as given: never a panic, and an error unless
// every PEM block is a certificate that parses (at least one).
func FuzzExtraCA(f *testing.F) {
	real := testCertPEM(f)
	f.Add(real)
	f.Add(append(append([]byte{}, real...), real...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Add([]byte("not PEM at all"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if certs, err := ParseCAPEM(data); err == nil && len(certs) == 0 {
			t.Fatalf("accepted %q, which holds no certificate", data)
		}
	})
}
