package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// sealedKeyPEMType armors sealed key bytes so an operator can tell the
// file apart; the bytes inside are KeyProtector output, never a raw key.
const sealedKeyPEMType = "MOAT SEALED PRIVATE KEY"

// writeFileAtomic writes data to a temporary file in path's directory,
// syncs it and renames it over path, so readers see the old or the new
// content, never a mix.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	syncDir(dir)
	return nil
}

// writeFileExclusive writes a new file atomically and fails with
// ErrExists when path exists: the content goes to a temporary file that
// is then hard-linked to path (link never replaces).
func writeFileExclusive(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return err
	}
	syncDir(dir)
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: not every platform can sync a directory
		d.Close()
	}
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// sealKey marshals key as PKCS#8, seals it and armors the result.
func sealKey(key crypto.Signer, prot KeyProtector) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	defer clear(der)
	sealed, err := prot.Seal(der)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: sealedKeyPEMType, Bytes: sealed}), nil
}

// readSealedKey reads, checks the mode of, unseals and parses a key file.
func readSealedKey(path string, prot KeyProtector) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pki: key file %s missing: %w", path, ErrCorrupt)
		}
		return nil, fmt.Errorf("pki: key file: %w", err)
	}
	if err := checkPrivateMode(fi); err != nil {
		return nil, fmt.Errorf("pki: key file %s: mode %04o: %w (chmod 600 it)", path, fi.Mode().Perm(), err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: key file: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != sealedKeyPEMType {
		return nil, fmt.Errorf("pki: key file %s: not a %s: %w", path, sealedKeyPEMType, ErrCorrupt)
	}
	der, err := prot.Open(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: key file %s: %w", path, err)
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("pki: key file %s: unsealed bytes are not a PKCS#8 key: %w", path, ErrCorrupt)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: key file %s: key type %T: %w", path, k, ErrCorrupt)
	}
	return s, nil
}

func readCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pki: %s missing: %w", path, ErrCorrupt)
		}
		return nil, fmt.Errorf("pki: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: %s: no PEM certificate: %w", path, ErrCorrupt)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %v: %w", path, err, ErrCorrupt)
	}
	return c, nil
}

// CertsPEM encodes certificates as concatenated PEM CERTIFICATE blocks.
func CertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as an unencrypted PKCS#8 "PRIVATE KEY" PEM
// block (what tlspolicy, mosquitto and openssl read).
func KeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
