package tlspolicy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"
)

// maxFileSize bounds every file this package reads (CA bundles included).
const maxFileSize = 4 << 20

const minRSABits = 2048

// fileReader reads files for one load and remembers what it read, so that
// the watcher compares against exactly the bytes that were loaded.
type fileReader struct {
	seen map[string][32]byte
	list []string
}

func newFileReader() *fileReader { return &fileReader{seen: make(map[string][32]byte)} }

func (r *fileReader) read(path string) ([]byte, os.FileInfo, error) {
	if _, ok := r.seen[path]; !ok {
		r.list = append(r.list, path)
		r.seen[path] = [32]byte{} // recorded even if unreadable, so it is watched
	}
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, nil, fmt.Errorf("tlspolicy: %s: %v: %w", path, err, ErrReadFile)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("tlspolicy: %s: %v: %w", path, err, ErrReadFile)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("tlspolicy: %s: not a regular file: %w", path, ErrReadFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("tlspolicy: %s: %v: %w", path, err, ErrReadFile)
	}
	if len(data) > maxFileSize {
		return nil, nil, fmt.Errorf("tlspolicy: %s: larger than %d bytes: %w", path, maxFileSize, ErrReadFile)
	}
	r.seen[path] = sha256.Sum256(data)
	return data, fi, nil
}

// loadedCert is one server certificate with its SNI names.
type loadedCert struct {
	cert  tls.Certificate
	names []string // lower-case exact names and "*.suffix" wildcards
	file  string
}

// loadCertSource reads, decrypts and checks one certificate chain and key.
func loadCertSource(cs CertSource, fr *fileReader, log *slog.Logger, now time.Time) (*loadedCert, error) {
	certPEM, _, err := fr.read(cs.CertFile)
	if err != nil {
		return nil, err
	}
	chain, err := parseCertChain(certPEM, cs.CertFile)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]

	keyPEM := certPEM
	keyFile := cs.KeyFile
	if keyFile == "" {
		keyFile = cs.CertFile
	}
	var keyInfo os.FileInfo
	if keyFile != cs.CertFile {
		keyPEM, keyInfo, err = fr.read(keyFile)
		if err != nil {
			return nil, err
		}
	} else if fi, err := os.Stat(keyFile); err == nil {
		keyInfo = fi
	}

	pw, err := readKeyPassword(cs, fr, log)
	if err != nil {
		return nil, err
	}
	key, encrypted, err := parsePrivateKeyPEM(keyPEM, pw)
	clear(pw)
	if err != nil {
		return nil, fmt.Errorf("tlspolicy: %s: %w", keyFile, err)
	}
	if !encrypted && pw != nil {
		log.Warn("tls key password configured but the key is not encrypted", "key_file", keyFile)
	}
	if !encrypted && keyInfo != nil && keyInfo.Mode().Perm()&0o004 != 0 {
		log.Warn("unencrypted tls private key is world-readable", "key_file", keyFile, "mode", keyInfo.Mode().Perm().String())
	}
	if err := checkKeyStrength(key); err != nil {
		return nil, fmt.Errorf("tlspolicy: %s: %w", keyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("tlspolicy: %s does not hold the key of the certificate in %s (subject %q): %w",
			keyFile, cs.CertFile, leaf.Subject.String(), ErrKeyMismatch)
	}

	if now.After(leaf.NotAfter) {
		log.Warn("tls server certificate has expired", "cert_file", cs.CertFile, "not_after", leaf.NotAfter)
	} else if now.Before(leaf.NotBefore) {
		log.Warn("tls server certificate is not yet valid", "cert_file", cs.CertFile, "not_before", leaf.NotBefore)
	}
	if len(leaf.ExtKeyUsage) > 0 && !hasEKU(leaf, x509.ExtKeyUsageServerAuth) && !hasEKU(leaf, x509.ExtKeyUsageAny) {
		log.Warn("tls server certificate lacks the serverAuth extended key usage; clients will refuse it", "cert_file", cs.CertFile)
	}

	lc := &loadedCert{file: cs.CertFile}
	for _, c := range chain {
		lc.cert.Certificate = append(lc.cert.Certificate, c.Raw)
	}
	lc.cert.PrivateKey = key
	lc.cert.Leaf = leaf
	if len(cs.Names) > 0 {
		lc.names = cs.Names
	} else {
		for _, n := range leaf.DNSNames {
			if norm, err := normalizeSNIName(n); err == nil {
				lc.names = append(lc.names, norm)
			}
		}
	}
	return lc, nil
}

// parseCertChain returns every CERTIFICATE block in order (other blocks,
// such as a key in a combined file, are skipped).
func parseCertChain(data []byte, file string) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlspolicy: %s: certificate %d: %v: %w", file, len(chain)+1, err, ErrBadCertificate)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("tlspolicy: %s: no PEM CERTIFICATE block: %w", file, ErrNoCertificate)
	}
	return chain, nil
}

// readKeyPassword returns the configured password (nil when none is
// configured). The caller clears it after use.
func readKeyPassword(cs CertSource, fr *fileReader, log *slog.Logger) ([]byte, error) {
	switch {
	case cs.KeyPasswordFile != "":
		data, fi, err := fr.read(cs.KeyPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, ErrKeyPasswordSource)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			log.Warn("tls key password file is readable by group or others; restrict it to the owner (chmod 600)",
				"password_file", cs.KeyPasswordFile, "mode", fi.Mode().Perm().String())
		}
		pw := trimOneNewline(data)
		if len(pw) == 0 {
			clear(data)
			return nil, fmt.Errorf("tlspolicy: %s: password file is empty: %w", cs.KeyPasswordFile, ErrKeyPasswordSource)
		}
		out := bytes.Clone(pw)
		clear(data)
		return out, nil
	case cs.KeyPasswordEnv != "":
		v, ok := os.LookupEnv(cs.KeyPasswordEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("tlspolicy: environment variable %s (key password for %s) is not set or empty: %w",
				cs.KeyPasswordEnv, cs.KeyFile, ErrKeyPasswordSource)
		}
		return []byte(v), nil
	}
	return nil, nil
}

func trimOneNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// parsePrivateKeyPEM finds the first private key block and parses it. It
// reports whether the key was encrypted.
func parsePrivateKeyPEM(data, password []byte) (crypto.Signer, bool, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, false, ErrNoPrivateKey
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue // CERTIFICATE, EC PARAMETERS, ...
		}
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, false, fmt.Errorf("legacy PEM encryption (Proc-Type: ENCRYPTED) is not supported; convert with: openssl pkcs8 -topk8 -v2 aes256 -v2prf hmacWithSHA256: %w", ErrUnsupportedKey)
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, false, fmt.Errorf("PKCS#1 key: %v: %w", err, ErrUnsupportedKey)
			}
			return k, false, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, false, fmt.Errorf("SEC1 key: %v: %w", err, ErrUnsupportedKey)
			}
			return k, false, nil
		case "PRIVATE KEY":
			k, err := parsePKCS8Signer(block.Bytes)
			return k, false, err
		case "ENCRYPTED PRIVATE KEY":
			if len(password) == 0 {
				return nil, true, ErrKeyPasswordRequired
			}
			der, err := decryptPKCS8(block.Bytes, password)
			if err != nil {
				return nil, true, err
			}
			k, err := parsePKCS8Signer(der)
			clear(der)
			if err != nil {
				// Valid padding but garbage inside: almost always a wrong password.
				return nil, true, ErrKeyPasswordIncorrect
			}
			return k, true, nil
		default:
			return nil, false, fmt.Errorf("PEM block %q: %w", block.Type, ErrUnsupportedKey)
		}
	}
}

func parsePKCS8Signer(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("PKCS#8 key: %v: %w", err, ErrUnsupportedKey)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("PKCS#8 key of type %T cannot sign TLS handshakes: %w", k, ErrUnsupportedKey)
}

func checkKeyStrength(k crypto.Signer) error {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("RSA key of %d bits, at least %d required: %w", bits, minRSABits, ErrWeakKey)
		}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("ECDSA curve %s not supported by TLS: %w", k.Curve.Params().Name, ErrUnsupportedKey)
		}
	}
	return nil
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want {
			return true
		}
	}
	return false
}

// loadCAFiles reads PEM CA bundles into a pool. It returns the pool, a
// digest of all bundles (to tag session tickets) and the earliest NotAfter
// of each file.
func loadCAFiles(files []string, fr *fileReader, log *slog.Logger, now time.Time) (*x509.CertPool, []byte, map[string]time.Time, error) {
	if len(files) == 0 {
		return nil, nil, nil, nil
	}
	pool := x509.NewCertPool()
	h := sha256.New()
	notAfter := make(map[string]time.Time)
	for _, f := range files {
		data, _, err := fr.read(f)
		if err != nil {
			return nil, nil, nil, err
		}
		n := 0
		for rest := data; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("tlspolicy: %s: CA certificate %d: %v: %w", f, n+1, err, ErrBadCertificate)
			}
			if !c.IsCA {
				log.Warn("client CA bundle holds a certificate that is not a CA", "ca_file", f, "subject", c.Subject.String())
			}
			if now.After(c.NotAfter) {
				log.Warn("client CA certificate has expired", "ca_file", f, "subject", c.Subject.String(), "not_after", c.NotAfter)
			}
			if t, ok := notAfter[f]; !ok || c.NotAfter.Before(t) {
				notAfter[f] = c.NotAfter
			}
			pool.AddCert(c)
			h.Write(c.Raw)
			n++
		}
		if n == 0 {
			return nil, nil, nil, fmt.Errorf("tlspolicy: %s: no PEM CERTIFICATE block: %w", f, ErrNoClientCAs)
		}
	}
	return pool, h.Sum(nil), notAfter, nil
}
