package config

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/storeedge/storeedge/internal/clip"
)

// MaxExtraCABytes bounds wan.extra_ca_file: a whole public CA bundle is about 200 KiB, and a
// file far larger is not a CA file (a disk image named by mistake, say), which would be read whole.
const MaxExtraCABytes = 4 << 20

// ReadCAFile reads wan.extra_ca_file: PEM certificates only, at least one, at most
// MaxExtraCABytes. Its errors say what is wrong without naming the file (the caller does); an
// error opening it is the *fs.PathError, which does.
func ReadCAFile(file string) ([]*x509.Certificate, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxExtraCABytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxExtraCABytes {
		return nil, fmt.Errorf("larger than %d MiB: not a file of CA certificates", MaxExtraCABytes>>20)
	}
	return ParseCAPEM(data)
}

// ParseCAPEM parses a file of PEM certificates: every block a certificate, at least one.
func ParseCAPEM(data []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("is empty")
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n := len(certs) + 1
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %s, want CERTIFICATE", n, clip.Quoted(block.Type, 64))
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificates found")
	}
	return certs, nil
}
