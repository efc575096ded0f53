package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// testCertPEM is a self-signed CA certificate in PEM.
func testCertPEM(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Shop proxy CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
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
