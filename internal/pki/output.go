package pki

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// PEMFiles are the paths WritePEM wrote.
type PEMFiles struct {
	CertFile  string // name.pem: the leaf certificate alone
	ChainFile string // name.chain.pem: the leaf, then intermediates (no root): what a TLS peer presents
	KeyFile   string // name.key: the private key, PKCS#8 PEM, unencrypted, mode 0600
}

// WritePEM writes iss to dir as name.pem (the leaf), name.chain.pem (the
// leaf followed by its intermediates, the file to configure as a server's
// or a device's certificate; the same as name.pem for a one-tier CA) and
// name.key (mode 0600). The root is not included: clients and devices get
// it separately (CA.RootFile) as their trust anchor. Nothing is
// overwritten: an existing file gives ErrExists (files written before it
// are removed again).
func WritePEM(dir, name string, iss *Issued) (PEMFiles, error) {
	if iss == nil || iss.Cert == nil || iss.Key == nil {
		return PEMFiles{}, fmt.Errorf("pki: write PEM: nothing to write: %w", ErrInvalidRequest)
	}
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return PEMFiles{}, fmt.Errorf("pki: write PEM: name %q must be a plain file name: %w", name, ErrInvalidRequest)
	}
	keyPEM, err := KeyPEM(iss.Key)
	if err != nil {
		return PEMFiles{}, err
	}
	defer clear(keyPEM)
	f := PEMFiles{
		CertFile:  filepath.Join(dir, name+".pem"),
		ChainFile: filepath.Join(dir, name+".chain.pem"),
		KeyFile:   filepath.Join(dir, name+".key"),
	}
	inter := iss.Chain
	if n := len(inter); n > 0 && isSelfSigned(inter[n-1]) {
		inter = inter[:n-1]
	}
	files := []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{f.KeyFile, keyPEM, 0o600},
		{f.CertFile, CertsPEM(iss.Cert), 0o644},
		{f.ChainFile, CertsPEM(slices.Concat([]*x509.Certificate{iss.Cert}, inter)...), 0o644},
	}
	var written []string
	for _, w := range files {
		if err := writeFileExclusive(w.path, w.data, w.perm); err != nil {
			for _, p := range written {
				os.Remove(p)
			}
			return PEMFiles{}, fmt.Errorf("pki: write PEM: %w", err)
		}
		written = append(written, w.path)
	}
	return f, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// PKCS12 encodes iss (key, leaf, and the chain up to the root) as a
// PKCS#12 bundle for device tooling, with go-pkcs12's Modern encoder
// (PBES2 AES-256-CBC, PBKDF2-HMAC-SHA-256, SHA-256 MAC), which OpenSSL 3
// reads without -legacy. The password must not be empty.
func PKCS12(iss *Issued, password string) ([]byte, error) {
	if iss == nil || iss.Cert == nil || iss.Key == nil {
		return nil, fmt.Errorf("pki: PKCS#12: nothing to encode: %w", ErrInvalidRequest)
	}
	if password == "" {
		return nil, fmt.Errorf("pki: PKCS#12: a password is required: %w", ErrInvalidRequest)
	}
	b, err := pkcs12.Modern.Encode(iss.Key, iss.Cert, iss.Chain, password)
	if err != nil {
		return nil, fmt.Errorf("pki: PKCS#12: %w", err)
	}
	return b, nil
}
