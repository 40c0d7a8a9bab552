// Package testpki generates throw-away X.509 material for moat's tests:
// root and intermediate CAs, server and client certificates with the
// subjects, SANs, EKUs and validity periods the TLS tests need, and PEM
// files written to a directory (plain PKCS#8 keys, or PBES2-encrypted
// PKCS#8). Keys are ECDSA P-256 unless a Spec asks for RSA or Ed25519.
//
// It is imported by tests only; production code never imports it.
package testpki

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// KeyType selects the key algorithm of a certificate.
type KeyType int

// Key types; the zero value is ECDSA P-256.
const (
	ECDSAP256 KeyType = iota
	RSA2048
	Ed25519
)

// OIDUID is the LDAP userid attribute (0.9.2342.19200300.100.1.1).
var OIDUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// Spec describes a certificate to issue. Zero fields take defaults: a
// validity from one hour ago to one day ahead, an ECDSA P-256 key.
type Spec struct {
	Subject pkix.Name // set ExtraNames for attributes pkix.Name lacks (UID)
	UID     string    // convenience: adds a UID attribute to the subject
	DNS     []string
	Emails  []string
	URIs    []string
	IPs     []net.IP
	// EKU is the extended key usage; nil means no EKU extension at all.
	EKU       []x509.ExtKeyUsage
	NotBefore time.Time
	NotAfter  time.Time
	KeyType   KeyType
}

// Cert is an issued certificate with its private key.
type Cert struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // CA certificates above the leaf, nearest first, root excluded
}

// CA is a certificate authority that can issue certificates.
type CA struct {
	Cert
	root *x509.Certificate
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 127)

func newKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}

// NewRoot makes a self-signed root CA named cn.
func NewRoot(cn string) (*CA, error) {
	key, err := newKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	tmpl := caTemplate(cn)
	c, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: Cert{Cert: c, Key: key}, root: c}, nil
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"moat test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("testpki: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// Root returns the root certificate at the top of ca's chain.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Intermediate issues an intermediate CA named cn under ca.
func (ca *CA) Intermediate(cn string) (*CA, error) {
	key, err := newKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	c, err := sign(caTemplate(cn), ca.Cert.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: Cert{Cert: c, Key: key, Chain: ca.issuerChain()}, root: ca.root}, nil
}

// issuerChain is the chain a certificate issued by ca carries: ca itself
// and its own chain, without the root.
func (ca *CA) issuerChain() []*x509.Certificate {
	if ca.Cert.Cert == ca.root {
		return nil
	}
	return append([]*x509.Certificate{ca.Cert.Cert}, ca.Chain...)
}

// Issue signs an end-entity certificate described by spec.
func (ca *CA) Issue(spec Spec) (*Cert, error) {
	key, err := newKey(spec.KeyType)
	if err != nil {
		return nil, err
	}
	nb, na := spec.NotBefore, spec.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(24 * time.Hour)
	}
	subject := spec.Subject
	if spec.UID != "" {
		subject.ExtraNames = append(subject.ExtraNames, pkix.AttributeTypeAndValue{Type: OIDUID, Value: spec.UID})
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		Subject:               subject,
		NotBefore:             nb,
		NotAfter:              na,
		DNSNames:              spec.DNS,
		EmailAddresses:        spec.Emails,
		IPAddresses:           spec.IPs,
		ExtKeyUsage:           spec.EKU,
		KeyUsage:              ku,
		BasicConstraintsValid: true,
	}
	for _, u := range spec.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("testpki: uri %q: %w", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	c, err := sign(tmpl, ca.Cert.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	return &Cert{Cert: c, Key: key, Chain: ca.issuerChain()}, nil
}

// CertPEM is the leaf followed by its chain (root excluded).
func (c *Cert) CertPEM() []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
	for _, ch := range c.Chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ch.Raw})...)
	}
	return out
}

// KeyPEM is the private key as an unencrypted PKCS#8 "PRIVATE KEY" block.
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic("testpki: " + err.Error()) // only for key types newKey makes
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// EncryptedKeyPEM is the private key as an "ENCRYPTED PRIVATE KEY" block:
// PKCS#8 EncryptedPrivateKeyInfo with PBES2, PBKDF2-HMAC-SHA256 (iter
// iterations; 0 means 2048, OpenSSL's default) and AES-256-CBC, as
// `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256` writes it.
func (c *Cert) EncryptedKeyPEM(password []byte, iter int) ([]byte, error) {
	if iter <= 0 {
		iter = 2048
	}
	plain, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	dk, err := pbkdf2.Key(sha256.New, string(password), salt, iter, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(dk)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := make([]byte, len(plain)+pad)
	copy(buf, plain)
	for i := len(plain); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)

	type algID struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	raw := func(v any) (asn1.RawValue, error) {
		b, err := asn1.Marshal(v)
		return asn1.RawValue{FullBytes: b}, err
	}
	prf, err := raw(algID{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}, Parameters: asn1.NullRawValue})
	if err != nil {
		return nil, err
	}
	kdfParams, err := raw(struct {
		Salt       []byte
		Iterations int
		KeyLength  int
		PRF        asn1.RawValue
	}{salt, iter, 32, prf})
	if err != nil {
		return nil, err
	}
	ivRaw, err := raw(iv)
	if err != nil {
		return nil, err
	}
	pbes2, err := raw(struct {
		KDF algID
		Enc algID
	}{
		KDF: algID{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}, Parameters: kdfParams},
		Enc: algID{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, Parameters: ivRaw},
	})
	if err != nil {
		return nil, err
	}
	der, err := asn1.Marshal(struct {
		Alg  algID
		Data []byte
	}{algID{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, Parameters: pbes2}, buf})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// TLSCertificate returns the certificate, its chain and key for a
// tls.Config.
func (c *Cert) TLSCertificate() tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
	for _, ch := range c.Chain {
		tc.Certificate = append(tc.Certificate, ch.Raw)
	}
	return tc
}

// Write writes name.pem (leaf and chain) and name.key (PKCS#8) to dir and
// returns their paths.
func (c *Cert) Write(dir, name string) (certFile, keyFile string, err error) {
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+".key")
	if err := WriteFile(certFile, c.CertPEM()); err != nil {
		return "", "", err
	}
	if err := WriteFile(keyFile, c.KeyPEM()); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// CertsPEM encodes certificates as consecutive PEM blocks (a CA bundle).
func CertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// WriteFile replaces path atomically (write to a temporary file in the same
// directory, then rename), with mode 0600, so a concurrent reader sees the
// old or the new content, never half of it.
func WriteFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
